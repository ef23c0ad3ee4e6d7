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
