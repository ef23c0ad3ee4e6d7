"""`bench score` and `bench list` as a user calls them."""
import json

import numpy as np
import pytest

from bench.cli import main
from bench.core.synthetic import synthetic_dataset
from tests.conftest import write_clips


@pytest.fixture
def dirs(tmp_path):
    ds = synthetic_dataset(n_clips=5, sample_rate=16000, duration_s=1.2, seed=0)
    ref = write_clips(tmp_path / "ref", {c.id: ds.load(c) for c in ds.clips})
    rng = np.random.default_rng(0)
    gen = write_clips(tmp_path / "gen", {c.id: ((0.1 * rng.standard_normal((1, 19200))).astype(np.float32), 16000)
                                         for c in ds.clips})
    return gen, ref


def test_score_text_output_and_record(dirs, tmp_path, cache_dir, capsys):
    gen, ref = dirs
    out = tmp_path / "rec.json"
    code = main(["score", "--metric", "fad-vggish@audioldm", "--metric", "fad-vggish@google", "--generated",
                 str(gen), "--reference", str(ref), "--weights", "untrained", "--weights-seed", "3",
                 "--bootstrap", "10", "--out", str(out), "--quiet"])
    assert code == 0
    text = capsys.readouterr().out
    assert "fad-vggish@audioldm[untrained]:" in text and "UNTRAINED vggish (seed 3)" in text
    record = json.loads(out.read_text())
    assert [m["key"] for m in record["metrics"]] == ["fad-vggish@audioldm[untrained]",
                                                     "fad-vggish@google[untrained]"]
    assert record["metrics"][0]["backbone"]["seed"] == 3
    assert record["reference"]["kind"] == "directory" and record["generation"]["n_clips"] == 5
    assert record["schema"] == "bench.run-record/2" and record["cell"]["generator"] == "files"


def test_score_json_format_is_machine_readable(dirs, tmp_path, cache_dir, capsys):
    gen, ref = dirs
    assert main(["score", "--metric", "fad-vggish@audioldm", "--generated", str(gen), "--reference", str(ref),
                 "--weights", "untrained", "--bootstrap", "0", "--format", "json",
                 "--out", str(tmp_path / "r.json")]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((tmp_path / "r.json").read_text())
    assert printed["metrics"][0]["ci"] is None and printed["metrics"][0]["value"] > 0


def test_score_against_manifest_and_builtin(dirs, tmp_path, cache_dir):
    gen, ref = dirs
    manifest = tmp_path / "refs.jsonl"
    manifest.write_text("".join(json.dumps({"id": p.stem, "path": f"ref/{p.name}", "caption": "x"}) + "\n"
                                for p in sorted(ref.glob("*.wav"))))
    args = ["--generated", str(gen), "--weights", "untrained", "--bootstrap", "0", "--quiet"]
    assert main(["score", "--metric", "fad-vggish@audioldm", "--reference", str(manifest),
                 "--out", str(tmp_path / "a.json"), *args]) == 0
    assert main(["score", "--metric", "fad-vggish@audioldm", "--reference", "builtin:synthetic",
                 "--out", str(tmp_path / "b.json"), *args]) == 0
    a, b = (json.loads((tmp_path / n).read_text()) for n in ("a.json", "b.json"))
    assert a["reference"]["kind"] == "manifest" and b["reference"]["kind"] == "synthetic"


def test_unknown_metric_is_exit_2_with_suggestion(dirs, capsys):
    gen, ref = dirs
    assert main(["score", "--metric", "fad-vgish@audioldm", "--generated", str(gen), "--reference", str(ref),
                 "--weights", "untrained"]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'fad-vggish@audioldm'" in err and "Traceback" not in err


def test_missing_pretrained_weights_offline_is_one_clear_message(dirs, cache_dir, capsys):
    gen, ref = dirs
    assert main(["score", "--metric", "fad-vggish@audioldm", "--generated", str(gen), "--reference", str(ref),
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "vggish-10086976.pth" in err and "https://github.com/harritaylor/torchvggish" in err
    assert str(cache_dir / "weights") in err


def test_bad_checkpoint_argument(dirs, capsys):
    gen, ref = dirs
    assert main(["score", "--metric", "fad-vggish@audioldm", "--generated", str(gen), "--reference", str(ref),
                 "--checkpoint", "vggish"]) == 2
    assert "expected BACKBONE=PATH" in capsys.readouterr().err


def test_missing_directory_is_named(tmp_path, capsys):
    assert main(["score", "--metric", "fad-vggish@audioldm", "--generated", str(tmp_path / "nope"),
                 "--reference", "builtin:synthetic", "--weights", "untrained"]) == 2
    assert "nope" in capsys.readouterr().err


def test_list_shows_generators_and_metric_presets(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("reference", "noise", "silence", "fad-vggish@audioldm", "fad-vggish@google", "MusicGen"):
        assert name in out


def test_text_output_says_what_the_interval_covers_and_shows_the_floor(dirs, tmp_path, cache_dir, capsys):
    gen, ref = dirs
    assert main(["score", "--metric", "fad-vggish@audioldm", "--generated", str(gen), "--reference", str(ref),
                 "--weights", "untrained", "--bootstrap", "10", "--out", str(tmp_path / "r.json"), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "the interval covers the population Fréchet distance" in text and "bias-corrected estimate" in text
    assert "noise floor" in text and "2 vs 2 clips" in text
    assert "warning: generated set:" in text  # 5 clips x 2 embeddings of 128 dimensions


def test_one_failing_metric_keeps_the_other_in_the_record(tmp_path, cache_dir, capsys):
    ds = synthetic_dataset(n_clips=4, sample_rate=16000, duration_s=0.8, seed=0)
    short = write_clips(tmp_path / "short", {c.id: ds.load(c) for c in ds.clips})
    out = tmp_path / "r.json"
    code = main(["score", "--metric", "fad-vggish@audioldm", "--metric", "fad-vggish@google", "--generated",
                 str(short), "--reference", str(short), "--weights", "untrained", "--bootstrap", "0",
                 "--out", str(out), "--quiet"])
    captured = capsys.readouterr()
    assert code == 2
    assert "fad-vggish@audioldm[untrained]: 0.0000" in captured.out and "DEGENERATE" in captured.out
    assert "error: fad-vggish@google" in captured.err
    record = json.loads(out.read_text())
    assert [m["metric"] for m in record["metrics"]] == ["fad-vggish@audioldm"]
    assert record["failed_metrics"][0]["metric"] == "fad-vggish@google"


def test_hash_in_file_names_pairs(tmp_path, cache_dir):
    # `take#2.wav` on both sides is clip "take#2" on both sides (not a sample of "take").
    ds = synthetic_dataset(n_clips=3, sample_rate=16000, duration_s=1.2, seed=0)
    clips = {n: ds.load(c) for n, c in zip(["take#2", "take#10", "plain"], ds.clips)}
    gen, ref = write_clips(tmp_path / "gen", clips), write_clips(tmp_path / "ref", clips)
    out = tmp_path / "r.json"
    assert main(["score", "--metric", "fd-panns@audioldm", "--metric", "kl-panns@audioldm", "--generated", str(gen),
                 "--reference", str(ref), "--weights", "untrained", "--bootstrap", "0", "--out", str(out),
                 "--quiet"]) == 0
    fd, kl = json.loads(out.read_text())["metrics"]
    assert kl["details"]["pairing"]["pairs"] == 3
    assert sorted((p["id"], p["reference_id"]) for p in kl["per_clip"]) == sorted((n, n) for n in clips)
    assert kl["value"] == pytest.approx(0.0, abs=1e-3) and fd["degenerate"] and kl["degenerate"]


# ------------------------------------------------------------------------------ precomputed embeddings

@pytest.fixture
def embedding_files(tmp_path):
    rng = np.random.default_rng(0)
    gen, ref = tmp_path / "gen.npy", tmp_path / "ref.npz"
    np.save(gen, rng.standard_normal((60, 4)) + 0.5)
    np.savez(ref, embeddings=rng.standard_normal((50, 4)))
    return gen, ref


def test_score_on_precomputed_embeddings(embedding_files, tmp_path, cache_dir):
    from metrics.frechet import frechet_distance
    from metrics.kad import kernel_audio_distance

    gen, ref = embedding_files
    out = tmp_path / "r.json"
    assert main(["score", "--metric", "fd", "--metric", "kad", "--metric", "fd-inf", "--generated", str(gen),
                 "--reference", str(ref), "--bootstrap", "20", "--out", str(out), "--quiet"]) == 0
    record = json.loads(out.read_text())
    fd, kad, inf = record["metrics"]
    g, r = np.load(gen), np.load(ref)["embeddings"]
    assert fd["key"] == "fd@embeddings" and fd["value"] == pytest.approx(
        frechet_distance(g.mean(0), np.cov(g.T), r.mean(0), np.cov(r.T)), rel=1e-9)
    assert kad["value"] == pytest.approx(kernel_audio_distance(g, r), rel=1e-9)
    for m in (fd, kad, inf):
        assert m["ci"]["covers"] and m["noise_floor"]["set_sizes"] == [25, 25]
        assert m["backbone"]["weights"] == "none" and m["generated"]["n_clips"] == 60
    assert record["reference"]["kind"] == "embeddings" and record["reference"]["dim"] == 4


@pytest.mark.parametrize("problem, message", [
    ("nan", r"row 3 \(0-based\) has NaN"), ("dims", "dimensions differ"), ("rows", "at least 2"),
    ("metric", "takes fd, kad, fd-inf"), ("audio", "give --reference as a .npy")])
def test_precomputed_embedding_errors(embedding_files, tmp_path, cache_dir, capsys, problem, message):
    gen, ref = embedding_files
    bad = tmp_path / "bad.npy"
    metric = "fd"
    if problem == "nan":
        a = np.load(gen)
        a[3, 1] = np.nan
        np.save(bad, a)
    elif problem == "dims":
        np.save(bad, np.zeros((10, 5)))
    elif problem == "rows":
        np.save(bad, np.zeros((1, 4)))
    else:
        bad = gen
        metric = "fad-vggish@audioldm" if problem == "metric" else "fd"
    reference = "builtin:synthetic" if problem == "audio" else str(ref)
    assert main(["score", "--metric", metric, "--generated", str(bad), "--reference", reference,
                 "--out", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err
    assert __import__("re").search(message, err) and "Traceback" not in err
