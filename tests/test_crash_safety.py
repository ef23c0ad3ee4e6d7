"""kill -9 in the middle of `bench run` (generation, embedding, tracking), then rerun: the run resumes,
redoes at most the batch in flight, and ends with the records and MLflow runs of an uninterrupted run."""
import json
import os
import signal
import subprocess
import sys
import threading

from bench.cli import main
from bench.core.records import read_record

# One cell, 6 prompts in generation batches of 2 and embedding chunks of 2 clips: 3 of each.
SUITE = """
name = "crash"
metrics = ["fad-vggish@audioldm"]
[reference]
builtin = "synthetic"
n_clips = 6
duration_s = 1.0
[generation]
duration_s = 1.0
batch_size = 2
[[generators]]
name = "noise"
[weights]
mode = "untrained"
[scoring]
bootstrap = 10
batch_size = 2
"""


def _files(root):
    return {p: p.stat().st_mtime_ns for p in root.rglob("*.npz")} if root.exists() else {}


def _killed_run(suite, out, cache, kill_at):
    env = {**os.environ, "BENCH_CACHE_DIR": str(cache), "BENCH_TEST_KILL_AT": kill_at}
    done = subprocess.run([sys.executable, "-m", "bench.cli", "run", str(suite), "--out", str(out), "--quiet"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]


def _records(out):
    return {p.name: read_record(p) for p in (out / "records").glob("*.json")
            if not p.name.endswith(".tracking.json")}


def _portable(record):
    record = record.comparable()
    record["generation"].pop("generated_dir"), record["generation"].pop("manifest")
    for result in record["metrics"]:
        result["generated"].pop("source")
    return record


def _mlflow_runs(out, search=True):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    if not search:
        return client.search_experiments()
    return client.search_runs([client.get_experiment_by_name("crash").experiment_id])


def test_kill_in_each_phase_then_resume_equals_uninterrupted_run(tmp_path, monkeypatch):
    suite = tmp_path / "suite.toml"
    suite.write_text(SUITE)
    out, cache = tmp_path / "out", tmp_path / "cache"
    # Creating a new MLflow sqlite store (schema migrations) is the slowest single step here: do it in
    # this idle process while the first two runs work, so the third finds it ready.
    out.mkdir()
    warm = threading.Thread(target=_mlflow_runs, args=(out, False))
    warm.start()

    # 1. Killed after the 2nd of 3 generation batches: exactly those 4 samples are cached.
    _killed_run(suite, out, cache, "generate:2")
    generated = _files(cache / "generated")
    assert len(generated) == 4 and not (out / "records").exists()

    # 2. Rerun killed after the 2nd embedding chunk: generation resumed (cached samples not redone).
    _killed_run(suite, out, cache, "embed:2")
    after = _files(cache / "generated")
    assert len(after) == 6 and all(after[p] == t for p, t in generated.items())
    embedded = _files(cache / "embeddings")
    assert len(embedded) == 4 and not _records(out)

    # 3. Rerun killed after the record reached MLflow but before its sidecar was written.
    warm.join()
    _killed_run(suite, out, cache, "track:1")
    assert all(_files(cache / "embeddings")[p] == t for p, t in embedded.items())  # not recomputed
    (record_file,) = _records(out)
    record_mtime = (out / "records" / record_file).stat().st_mtime_ns
    assert not (out / "records" / record_file.replace(".json", ".tracking.json")).exists()
    assert len(_mlflow_runs(out)) == 1

    # 4. Final rerun: nothing recomputed, no duplicate MLflow run, sidecar now written.
    monkeypatch.setenv("BENCH_CACHE_DIR", str(cache))
    assert main(["run", str(suite), "--out", str(out), "--quiet"]) == 0
    assert (out / "records" / record_file).stat().st_mtime_ns == record_mtime
    runs = _mlflow_runs(out)
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    side = json.loads((out / "records" / record_file.replace(".json", ".tracking.json")).read_text())
    assert side["synced"] is True and side["run_id"] == runs[0].info.run_id

    # The same suite uninterrupted, from an empty cache: the same record.
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache-clean"))
    clean = tmp_path / "clean"
    assert main(["run", str(suite), "--out", str(clean), "--quiet", "--no-tracking"]) == 0
    resumed, fresh = _records(out)[record_file], _records(clean)[record_file]
    assert resumed.timing["fresh_samples"] == 0  # run 3 wrote it: every sample came from the cache
    assert _portable(resumed) == _portable(fresh)
