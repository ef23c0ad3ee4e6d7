"""The hostile-but-fair input matrix (issue 17), one case per row: what the CLI exits with, that the message
names the file / row / field at fault, and that results computed before are still on disk."""
import json
import os
import socket
import time

import numpy as np
import pytest
import soundfile as sf
import torch

from bench.cli import main
from bench.core.errors import EXIT_INTERNAL_ERROR

SR = 16000


def _tone(seconds=1.0, rate=SR, channels=1):
    t = np.arange(int(seconds * rate)) / rate
    return np.stack([0.3 * np.sin(2 * np.pi * (300 + 50 * c) * t) for c in range(channels)]).astype(np.float32)


@pytest.fixture
def env(tmp_path, cache_dir):
    """A good reference folder, and one `bench score` result already computed into results/."""
    ref = tmp_path / "ref"
    ref.mkdir()
    for i in range(2):
        sf.write(ref / f"r{i}.wav", _tone(1.0 + i / 4).T, SR)
    results = tmp_path / "results"
    assert _score(ref, ref, results / "good.json") == 0
    return {"tmp": tmp_path, "ref": ref, "results": results, "good": (results / "good.json").read_bytes()}


def _score(generated, reference, out, *extra, metric="fad-vggish@audioldm"):
    return main(["score", "--metric", metric, "--generated", str(generated), "--reference", str(reference),
                 "--weights", "untrained", "--bootstrap", "0", "--quiet", "--out", str(out), *extra])


def _gen_dir(env, name="gen"):
    d = env["tmp"] / name
    d.mkdir()
    sf.write(d / "ok.wav", _tone(1.2).T, SR)
    return d


# ------------------------------------------------------------------ rows: generated folder -> file at fault

def _truncated_wav(d):
    sf.write(d / "cut.wav", _tone(2.0, channels=2).T, SR, subtype="PCM_16")
    data = (d / "cut.wav").read_bytes()
    (d / "cut.wav").write_bytes(data[:len(data) // 2])
    return "cut.wav", "truncated"


def _dangling_link(d):
    os.symlink(d / "gone.wav", d / "dangling.wav")
    return "dangling.wav", "dangling symbolic link"


def _fifo(d):
    os.mkfifo(d / "pipe.wav")
    return "pipe.wav", "FIFO"


def _folder_loop(d):
    (d / "sub").mkdir()
    os.symlink(d, d / "sub" / "back")
    return "back", "loop"


def _nan_samples(d):
    x = _tone(1.0)
    x[0, 100] = np.nan
    sf.write(d / "nan.wav", x.T, SR, subtype="FLOAT")
    return "nan.wav", "non-finite"


def _empty_wav(d):
    sf.write(d / "empty.wav", np.zeros((0, 1), np.float32), SR)
    return "empty.wav", "empty"


def _garbage_bytes(d):
    (d / "noise.flac").write_bytes(np.random.default_rng(0).bytes(3000))
    return "noise.flac", "cannot decode"


def _too_long_for_whole_clip_protocol(d):  # vggish@google has no streaming path: duration policy
    sf.write(d / "long.wav", np.zeros((601 * 1000, 1), np.int16), 1000, subtype="PCM_16")
    return "long.wav", "takes at most 600 s"


FOLDER_ROWS = [_truncated_wav, _dangling_link, _fifo, _folder_loop, _nan_samples, _empty_wav, _garbage_bytes,
               _too_long_for_whole_clip_protocol]


@pytest.mark.parametrize("make", FOLDER_ROWS, ids=[f.__name__.strip("_") for f in FOLDER_ROWS])
def test_bad_audio_is_named(env, capsys, make):
    d = _gen_dir(env)
    name, what = make(d)
    metric = "fad-vggish@google" if "long" in make.__name__ else "fad-vggish@audioldm"
    assert _score(d, env["ref"], env["results"] / "bad.json", metric=metric) == 2
    err = capsys.readouterr().err
    assert name in err and what in err, err
    assert (env["results"] / "good.json").read_bytes() == env["good"]
    assert not (env["results"] / "bad.json").exists()


# ------------------------------------------------------------------ rows: manifests -> row and field

def _misspelt_column(tmp):
    return ('{"id": "a", "path": "ok.wav", "captoin": "a dog"}\n', "row 1", "did you mean 'caption'")


def _missing_path(tmp):
    return ('{"id": "a", "path": "ok.wav"}\n{"id": "b"}\n', "row 2", "'path'")


def _traversal_to_nothing(tmp):
    return ('{"id": "a", "path": "../../nowhere/x.wav"}\n', "row 1", "does not exist")


def _bad_json(tmp):
    return ('{"id": "a", "path": "ok.wav"}\n{"id": \n', "row 2", "invalid JSON")


MANIFEST_ROWS = [_misspelt_column, _missing_path, _traversal_to_nothing, _bad_json]


@pytest.mark.parametrize("make", MANIFEST_ROWS, ids=[f.__name__.strip("_") for f in MANIFEST_ROWS])
def test_bad_manifest_rows_are_named(env, capsys, make):
    d = _gen_dir(env)
    text, row, what = make(d)
    (d / "gen.jsonl").write_text(text)
    assert _score(d / "gen.jsonl", env["ref"], env["results"] / "bad.json") == 2
    err = capsys.readouterr().err
    assert "gen.jsonl" in err and row in err and what in err, err
    assert (env["results"] / "good.json").read_bytes() == env["good"]


def test_other_manifest_columns_are_a_recorded_note(env):
    d = _gen_dir(env)
    (d / "gen.jsonl").write_text('{"id": "a", "path": "ok.wav", "speaker": "x", "mood": 3}\n'
                                 '{"id": "b", "path": "ok.wav"}\n')
    assert _score(d / "gen.jsonl", env["ref"], env["results"] / "noted.json") == 0
    record = json.loads((env["results"] / "noted.json").read_text())
    assert record["generation"]["source"]["notes"] == ["columns kept but not interpreted: mood, speaker"]


# ------------------------------------------------------------------ rows: checkpoints and names

class _Payload:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def _typo_backbone(tmp):
    return ["--checkpoint", f"vgish={tmp / 'x.pth'}"], "vgish", "did you mean 'vggish'"


def _garbage_checkpoint(tmp):
    (tmp / "garbage.pth").write_bytes(b"not a checkpoint" * 10)
    return ["--checkpoint", f"vggish={tmp / 'garbage.pth'}"], "garbage.pth", "cannot read VGGish checkpoint"


def _empty_checkpoint(tmp):
    (tmp / "empty.pth").write_bytes(b"")
    return ["--checkpoint", f"vggish={tmp / 'empty.pth'}"], "empty.pth", "empty"


def _malicious_checkpoint(tmp):
    torch.save({"x": _Payload()}, tmp / "evil.pth")
    return ["--checkpoint", f"vggish={tmp / 'evil.pth'}"], "evil.pth", "tensors-only loading refuses"


CHECKPOINT_ROWS = [_typo_backbone, _garbage_checkpoint, _empty_checkpoint, _malicious_checkpoint]


@pytest.mark.parametrize("make", CHECKPOINT_ROWS, ids=[f.__name__.strip("_") for f in CHECKPOINT_ROWS])
def test_bad_checkpoints_are_named(env, capsys, monkeypatch, make):
    monkeypatch.chdir(env["tmp"])
    args, name, what = make(env["tmp"])
    code = main(["score", "--metric", "fad-vggish@audioldm", "--generated", str(env["ref"]), "--reference",
                 str(env["ref"]), "--bootstrap", "0", "--quiet", "--offline",
                 "--out", str(env["results"] / "bad.json"), *args])
    assert code == 2
    err = capsys.readouterr().err
    assert name in err and what in err, err
    assert not (env["tmp"] / "PWNED").exists()  # the pickle never ran
    assert (env["results"] / "good.json").read_bytes() == env["good"]


def test_cache_root_under_a_file_is_named(env, capsys):
    (env["tmp"] / "afile").write_text("x")
    code = main(["--cache-dir", str(env["tmp"] / "afile" / "cache"), "score", "--metric", "fad-vggish@audioldm",
                 "--generated", str(_gen_dir(env)), "--reference", str(env["ref"]), "--weights", "untrained",
                 "--bootstrap", "0", "--quiet", "--out", str(env["results"] / "bad.json")])
    assert code == 2
    assert "afile" in capsys.readouterr().err
    assert (env["results"] / "good.json").read_bytes() == env["good"]


def test_unexpected_exception_is_an_internal_error_naming_the_step(env, capsys, monkeypatch):
    monkeypatch.setattr("bench.scoring.run_batches", lambda *a, **k: 1 / 0)
    assert _score(_gen_dir(env), env["ref"], env["results"] / "bad.json") == EXIT_INTERNAL_ERROR
    err = capsys.readouterr().err
    assert "internal error while embedding generated set" in err and "vggish@audioldm" in err
    assert "ZeroDivisionError" in err and "--debug" in err and "Traceback" not in err
    assert (env["results"] / "good.json").read_bytes() == env["good"]


# ------------------------------------------------------------------ rows: suites and runs

SUITE = """
name = "tiny"
metrics = ["fad-vggish@audioldm"]
[reference]
builtin = "synthetic"
n_clips = 3
duration_s = 1.0
[generation]
duration_s = 1.0
[[generators]]
name = "reference"
[[generators]]
name = "noise"
{extra}
[weights]
mode = "untrained"
{weights}
[scoring]
bootstrap = 0
"""


def _suite(tmp, extra="", weights=""):
    path = tmp / "suite.toml"
    path.write_text(SUITE.format(extra=extra, weights=weights))
    return path


SUITE_ROWS = [("steps = 0", "", "steps must be > 0"),
              ("duration_s = -1.0", "", "duration_s must be > 0"),
              ('resampler = "soxr-best"', "", "unknown resampler 'soxr-best'"),
              ("", 'checkpoints = { vgish = "v.pth" }', "did you mean 'vggish'")]


@pytest.mark.parametrize("extra,weights,what", SUITE_ROWS, ids=["steps", "duration", "resampler", "backbone"])
def test_bad_suite_values_fail_at_load(tmp_path, cache_dir, capsys, extra, weights, what):
    out = tmp_path / "out"
    assert main(["run", str(_suite(tmp_path, extra, weights)), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "suite.toml" in err and what in err, err
    assert not out.exists()  # refused before any work


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_run_end_to_end_rows(tmp_path, cache_dir, capsys, monkeypatch):
    """One computed run, then: tracking refused (exit 3, quickly), a second run into the same folder (refused
    while the first holds it), an internal error mid-run (exit 5): the records stay on disk throughout."""
    suite, out = _suite(tmp_path), tmp_path / "out"
    t0 = time.perf_counter()
    code = main(["run", str(suite), "--out", str(out), "--quiet",
                 "--tracking-uri", f"http://127.0.0.1:{_closed_port()}"])
    assert code == 3 and time.perf_counter() - t0 < 60
    err = capsys.readouterr().err
    assert "not reachable" in err and "bench sync" in err
    records = sorted((out / "records").glob("*_????????.json"))
    assert len(records) == 2
    saved = {p: p.read_bytes() for p in records}

    from bench.core.folder_lock import folder_lock

    with folder_lock(out, "a test holding the folder"):
        assert main(["run", str(suite), "--out", str(out), "--quiet", "--no-tracking"]) == 2
    err = capsys.readouterr().err
    assert str(out) in err and "in use by another bench command" in err and "a test holding the folder" in err
    assert {p: p.read_bytes() for p in records} == saved

    calls = []

    def score_then_break(*args, **kwargs):
        calls.append(1)
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("bench.runner.score", score_then_break)
    assert main(["run", str(suite), "--out", str(out), "--quiet", "--no-tracking", "--force"]) == EXIT_INTERNAL_ERROR
    err = capsys.readouterr().err
    assert "internal error while computing cell" in err and "RuntimeError: disk on fire" in err
    assert {p: p.read_bytes() for p in records} == saved
