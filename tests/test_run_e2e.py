"""`bench run` end to end on a tiny suite: records, MLflow, leaderboard, gates, determinism, resume."""
import json

import numpy as np
import pytest

from bench.cli import main
from bench.core.records import read_record

SUITE = """
name = "tiny"
metrics = ["fad-vggish@audioldm"]
[reference]
builtin = "synthetic"
n_clips = 6
duration_s = 1.5
[generation]
duration_s = 1.5
[[generators]]
name = "reference"
[[generators]]
name = "noise"
seeds = [0, 1]
[weights]
mode = "untrained"
[scoring]
bootstrap = 20
[[gates]]
check = "fad-vggish@audioldm <= 0.001"
generator = "reference"
"""


def _run(tmp_path, out, suite_text=SUITE, extra=()):
    path = tmp_path / "suite.toml"
    path.write_text(suite_text)
    return main(["run", str(path), "--out", str(out), "--quiet", *extra])


def _records(out):
    return {p.name: read_record(p) for p in sorted((out / "records").glob("*.json"))
            if not p.name.endswith(".tracking.json")}


def test_run_writes_records_mlflow_and_leaderboard(tmp_path, cache_dir, capsys):
    out = tmp_path / "out"
    assert _run(tmp_path, out) == 0
    records = _records(out)
    assert len(records) == 3
    for record in records.values():
        assert record.untrained is True
        assert record.metrics[0]["key"] == "fad-vggish@audioldm[untrained]"
        assert record.reference["n_clips"] == 6
    oracle = next(r for r in records.values() if r.generator == "reference")
    # the oracle is the reference audio as it is: its own rate and duration, not the suite's
    assert oracle.cell["duration_s"] is None and oracle.cell["sample_rate"] is None
    assert oracle.generation["output_sample_rates"] == [16000]
    assert all(r.cell["duration_s"] == 1.5 for r in records.values() if r is not oracle)
    noise = [r for r in records.values() if r.generator == "noise"]
    assert oracle.metrics[0]["value"] == pytest.approx(0.0, abs=1e-6)
    assert all(r.metrics[0]["value"] > 1.0 for r in noise)
    assert noise[0].metrics[0]["value"] != noise[1].metrics[0]["value"]  # seeds differ

    board = (out / "leaderboard.md").read_text()
    assert "fad-vggish@audioldm[untrained] ↓" in board and "UNTRAINED" in board and "| seed |" in board
    assert "PASS" in capsys.readouterr().out

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    assert len(runs) == 3
    assert {r.data.tags["bench.untrained"] for r in runs} == {"true"}
    assert all("fad-vggish:audioldm untrained" in r.data.metrics for r in runs)
    assert {r.data.params["generator"] for r in runs} == {"reference", "noise"}

    # Running again resumes: nothing is recomputed or logged twice.
    mtimes = {p: p.stat().st_mtime_ns for p in (out / "records").glob("*.json")}
    assert _run(tmp_path, out) == 0
    assert {p: p.stat().st_mtime_ns for p in (out / "records").glob("*.json")} == mtimes
    assert len(client.search_runs([client.get_experiment_by_name("tiny").experiment_id])) == 3


def _without_paths(record):
    """A record minus the fields that name its results directory."""
    record = record.comparable()
    for key in ("generated_dir", "manifest"):
        record["generation"].pop(key)
    for result in record["metrics"]:
        result["generated"].pop("source")
    return record


def test_same_suite_twice_gives_identical_records(tmp_path, monkeypatch):
    # Separate caches: identity must come from determinism, not from reading the first run's cache.
    outs = []
    for name in ("a", "b"):
        monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / f"cache-{name}"))
        out = tmp_path / f"out-{name}"
        assert _run(tmp_path, out, extra=("--no-tracking",)) == 0
        outs.append({k: _without_paths(v) for k, v in _records(out).items()})
    assert outs[0].keys() == outs[1].keys() and len(outs[0]) == 3
    for key in outs[0]:
        assert outs[0][key] == outs[1][key]


def test_interrupted_run_resumes_without_losing_records(tmp_path, cache_dir):
    out = tmp_path / "out"
    assert _run(tmp_path, out, extra=("--no-tracking",)) == 0
    before = _records(out)
    victim = sorted(before)[0]
    (out / "records" / victim).unlink()  # as if killed before this cell's record was written
    keep = {p: p.stat().st_mtime_ns for p in (out / "records").glob("*.json")}
    assert _run(tmp_path, out, extra=("--no-tracking",)) == 0
    after = _records(out)
    assert {p: p.stat().st_mtime_ns for p in keep} == keep  # finished cells untouched
    assert after[victim].timing["fresh_samples"] == 0  # generation came from the cache
    assert after[victim].comparable() == before[victim].comparable()


def test_failing_gate_exits_1_with_summary(tmp_path, cache_dir, capsys):
    suite = SUITE + '[[gates]]\ncheck = "fad-vggish@audioldm <= 0.5"\ngenerator = "noise"\n'
    assert _run(tmp_path, tmp_path / "out", suite, ("--no-tracking",)) == 1
    captured = capsys.readouterr()
    assert "FAIL  fad-vggish@audioldm <= 0.5 [generator=noise]" in captured.out
    assert "(untrained backbone)" in captured.out
    assert "2 of 3 gate checks FAILED" in captured.err
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["exit_code"] == 1


def test_failing_cell_keeps_other_records_and_exits_2(tmp_path, cache_dir, capsys):
    # 0.6 s clips give google-preset VGGish no full 1 s window: that cell cannot be scored.
    suite = SUITE.replace('metrics = ["fad-vggish@audioldm"]', 'metrics = ["fad-vggish@google"]')
    suite = suite.replace("duration_s = 1.5\n[[generators]]", "duration_s = 0.6\n[[generators]]", 1)
    suite = suite.replace('check = "fad-vggish@audioldm <= 0.001"', 'check = "fad-vggish@google <= 0.001"')
    assert _run(tmp_path, tmp_path / "out", suite, ("--no-tracking",)) == 2
    assert "produced 0 output" in capsys.readouterr().err


def test_unknown_key_is_a_clean_error(tmp_path, capsys):
    assert _run(tmp_path, tmp_path / "out", SUITE.replace("[scoring]", "[scoring]\nbootstrapp = 3")) == 2
    err = capsys.readouterr().err
    assert "suite.toml: [scoring]: unknown key 'bootstrapp'" in err and "Traceback" not in err


def test_reference_captions_reach_the_generated_set(tmp_path, cache_dir):
    """Caption metrics score against the prompt plus the reference manifest's extra captions."""
    from bench.core.clipsets import load_manifest
    from tests.conftest import write_clips

    tone = (0.3 * np.sin(np.arange(16000) * 0.1)[None]).astype(np.float32)
    write_clips(tmp_path / "ref", {"a": (tone, 16000), "b": (tone[:, ::-1].copy(), 16000)})
    (tmp_path / "ref.jsonl").write_text(
        json.dumps({"id": "a", "path": "ref/a.wav", "caption": "a tone", "references": ["a steady hum"]}) + "\n"
        + json.dumps({"id": "b", "path": "ref/b.wav", "caption": "a tone backwards"}) + "\n")
    suite = SUITE.split("[reference]")[0] + ('[reference]\nmanifest = "ref.jsonl"\n[[generators]]\nname = "reference"\n'
                                             '[weights]\nmode = "untrained"\n[scoring]\nbootstrap = 0\n')
    assert _run(tmp_path, tmp_path / "out", suite, ("--no-tracking",)) == 0
    (record,) = _records(tmp_path / "out").values()
    generated = {c.id: c for c in load_manifest(record.generation["manifest"]).clips}
    assert generated["a"].references == ("a steady hum",) and generated["b"].references == ()
    assert generated["a"].caption == "a tone"
