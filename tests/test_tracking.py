"""MLflow logging of RunRecords: a local sqlite store, a dead server, and a real `mlflow server`.

Everything stays on 127.0.0.1 / tmp_path.
"""
from __future__ import annotations

import copy
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from bench.core.records import SCHEMA, RunRecord
from bench.core.mlflow_store import results_store_uri
from bench.tracking import TrackingError, log_record, mlflow_key

UNTRAINED_KEY = "fad-vggish@audioldm[untrained]"
PRETRAINED_KEY = "fad-vggish@google"
SHA = "10086976" + "ab" * 28


@pytest.fixture(autouse=True)
def _fast_loopback_http(monkeypatch):
    """No proxies; MLflow's HTTP client fails fast instead of retrying with backoff."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY",
                "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    # A refused connection fails at once whatever the timeout; a live but busy server needs time.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _set_summary(n_clips: int) -> dict:
    return {"name": "gen", "kind": "manifest", "source": "/tmp/gen.jsonl", "n_clips": n_clips,
            "n_embeddings": 10 * n_clips, "total_duration_s": 5.0 * n_clips,
            "silent_clips": {"count": 0, "ids": []}, "clips_without_embeddings": {"count": 0, "ids": []}}


def _protocol(pid: str) -> dict:
    return {"id": pid, "version": 1, "backbone": "vggish", "sample_rate": 16000,
            "resampler": {"name": "sinc-hann"}, "channels": "first channel only",
            "steps": ["resample to 16 kHz", "first channel"]}


def make_record(untrained_value: float = 12.5, pretrained_value: float = 3.25) -> dict:
    """A small record shaped like bench.runner._run_cell's output."""
    versions = {"python": "3.11.9", "bench-harness": "0.1.0", "numpy": "1.26.4", "torch": "2.3.0"}
    untrained = {
        "key": UNTRAINED_KEY, "metric": "fad-vggish@audioldm", "metric_version": 1, "direction": "lower",
        "lineage": "audioldm_eval's FAD code", "untrained": True,
        "value": untrained_value,
        "ci": {"low": untrained_value - 1.5, "high": untrained_value + 2.0, "level": 0.95, "n_resamples": 50,
               "seed": 0, "bias": 0.125, "method": "basic bootstrap", "bias_corrected": 1.1,
               "covers": "the population FD"},
        "details": {"n_embeddings": {"generated": 40, "reference": 40}},
        "protocol": _protocol("vggish@audioldm"),
        "backbone": {"backbone": "vggish", "weights": "untrained", "seed": 7, "init": "torch default"},
        "device": "cpu", "generated": _set_summary(4), "reference": _set_summary(4),
        "bootstrap": {"resamples": 50, "seed": 0, "level": 0.95}, "versions": versions,
    }
    pretrained = {
        "key": PRETRAINED_KEY, "metric": "fad-vggish@google", "metric_version": 1, "direction": "lower",
        "lineage": "google-research frechet_audio_distance", "untrained": False,
        "value": pretrained_value, "ci": None,
        "details": {"n_embeddings": {"generated": 36, "reference": 36}},
        "protocol": _protocol("vggish@google"),
        "backbone": {"backbone": "vggish", "weights": "pretrained", "name": "vggish",
                     "file": "vggish-10086976.pth", "sha256": SHA, "source": "cache",
                     "url": "https://example.invalid/vggish-10086976.pth", "hash_published": True},
        "device": "cpu", "generated": _set_summary(4), "reference": _set_summary(4),
        "bootstrap": {"resamples": 0, "seed": 0, "level": 0.95}, "versions": versions,
    }
    cell = {"generator": "noise", "label": "noise", "checkpoint": None, "seed": 0, "steps": None,
            "guidance": None, "sample_rate": 16000, "duration_s": 5.0, "samples_per_prompt": 1,
            "resampler": "soxr-hq"}
    return {
        "schema": SCHEMA,
        "suite": {"name": "tiny", "path": "built-in quickstart", "hash": "c0ffee" * 10 + "beef"},
        "cell_id": "noise_seed0_sr16000",
        "cell_hash": "ab" * 32,
        "cell": cell,
        "generation": {"generator_version": "1", "checkpoint_sha256": None, "n_prompts": 4, "n_clips": 4,
                       "native_sample_rates": [16000], "resampled_with": [], "manifest": "/tmp/gen.jsonl",
                       "generated_dir": "/tmp/cells/noise_seed0_sr16000"},
        "reference": {"name": "synthetic", "kind": "builtin", "source": "builtin:synthetic", "n_clips": 4,
                      "fingerprint": "f" * 64},
        "metrics": [untrained, pretrained],
        "untrained": True,
        "git_revision": "0123456789abcdef0123456789abcdef01234567-dirty",
        "versions": versions,
        "timing": {"generation_seconds": 0.01, "fresh_samples": 4, "real_time_factor": 0.0005,
                   "scoring_seconds": 0.5},
    }


def _download_record(client: MlflowClient, run_id: str, dst: Path) -> dict:
    dst.mkdir(parents=True, exist_ok=True)
    local = client.download_artifacts(run_id, "record.json", str(dst))
    return json.loads(Path(local).read_text())


def _check_logged_run(client: MlflowClient, run_id: str, record: dict, experiment: str, dst: Path) -> None:
    """Everything log_record promises, read back through `client`."""
    run = client.get_run(run_id)
    assert run.info.run_name == "noise/seed0"
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == experiment

    m = run.data.metrics
    assert m["fad-vggish:audioldm untrained"] == pytest.approx(12.5)
    assert m["ci_low/fad-vggish:audioldm untrained"] == pytest.approx(11.0)
    assert m["ci_high/fad-vggish:audioldm untrained"] == pytest.approx(14.5)
    assert m["fad-vggish:google"] == pytest.approx(3.25)
    assert "ci_low/fad-vggish:google" not in m  # no CI, no made-up bounds
    assert m["bias_corrected/fad-vggish:audioldm untrained"] == pytest.approx(1.1)
    assert set(m) == {"fad-vggish:audioldm untrained", "ci_low/fad-vggish:audioldm untrained",
                      "ci_high/fad-vggish:audioldm untrained", "bias_corrected/fad-vggish:audioldm untrained",
                      "fad-vggish:google"}

    p = run.data.params
    assert p["generator"] == "noise" and p["seed"] == "0" and p["sample_rate"] == "16000"
    assert p["checkpoint"] == "none" and p["steps"] == "none" and p["guidance"] == "none"
    assert p["duration_s"] == "5.0"
    assert p["reference_set"] == "synthetic" and p["reference_fingerprint"] == "f" * 64
    assert p["suite"] == "tiny"

    t = run.data.tags
    assert t["bench.untrained"] == "true"
    assert t["bench.cell_id"] == record["cell_id"]
    assert json.loads(t["bench.metrics"]) == [UNTRAINED_KEY, PRETRAINED_KEY]
    assert t["bench.suite_hash"] == record["suite"]["hash"]
    assert t["bench.git_revision"] == record["git_revision"]
    assert json.loads(t["bench.versions"]) == record["versions"]
    assert t["bench.metric.fad-vggish:audioldm untrained.protocol"] == "vggish@audioldm v1"
    assert t["bench.metric.fad-vggish:audioldm untrained.backbone"] == "vggish untrained seed=7"
    assert t["bench.metric.fad-vggish:google.protocol"] == "vggish@google v1"
    assert t["bench.metric.fad-vggish:google.backbone"] == f"vggish vggish-10086976.pth sha256={SHA}"
    assert t["bench.audio_artifacts"] == "none: the generated audio is no longer at the manifest's path"

    assert _download_record(client, run_id, dst) == record


# ------------------------------------------------------------------------------ keys

@pytest.mark.parametrize("key, expected", [
    ("fad-vggish@audioldm", "fad-vggish:audioldm"),
    ("fad-vggish@audioldm[untrained]", "fad-vggish:audioldm untrained"),
    ("fad-vggish@google[untrained]", "fad-vggish:google untrained"),
    ("plain_metric", "plain_metric"),
])
def test_mlflow_key(key, expected):
    assert mlflow_key(key) == expected


def test_mlflow_keys_are_distinct_and_mlflow_valid():
    from mlflow.utils.validation import _validate_metric_name

    keys = [mlflow_key(k) for k in ("fad-vggish@audioldm", "fad-vggish@audioldm[untrained]",
                                    "fad-vggish@google", "fad-vggish@google[untrained]")]
    assert len(set(keys)) == 4, "trained and untrained values must never share an MLflow key"
    for key in keys + [f"ci_low/{k}" for k in keys]:
        _validate_metric_name(key)


def test_default_tracking_uri(tmp_path):
    assert results_store_uri(tmp_path) == f"sqlite:///{(tmp_path / 'mlflow.db').resolve()}"


# ------------------------------------------------------------------------------ sqlite store

def test_log_record_to_sqlite(tmp_path):
    record = make_record()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    artifacts = tmp_path / "mlartifacts"
    run_id = log_record(RunRecord.from_dict(copy.deepcopy(record)), uri, "exp", artifacts)

    client = MlflowClient(tracking_uri=uri)
    _check_logged_run(client, run_id, record, "exp", tmp_path / "download")
    # The experiment's artifacts live in the directory we asked for.
    assert list(artifacts.rglob("record.json")), "record.json was not written under artifact_dir"

    # A second cell goes into the same experiment as a new run.
    other = make_record()
    other["cell_id"] = "silence_seed0_sr16000"
    other["untrained"] = False
    other["metrics"] = [other["metrics"][1]]
    run2 = log_record(RunRecord.from_dict(other), uri, "exp", artifacts)
    assert run2 != run_id
    exp = client.get_experiment_by_name("exp")
    runs = client.search_runs([exp.experiment_id])
    assert {r.data.tags["bench.cell_id"] for r in runs} == {record["cell_id"], other["cell_id"]}
    assert client.get_run(run2).data.tags["bench.untrained"] == "false"


def test_run_carries_audio_per_clip_table_suite_and_plots(tmp_path):
    """What a person opening the run in the MLflow UI sees, read back through the client."""
    import numpy as np
    import soundfile as sf

    results = tmp_path / "results"
    cell_dir = results / "cells" / "archisound_seed3"
    (cell_dir / "audio").mkdir(parents=True)
    rows = []
    for i in range(5):
        name = f"{i:05d}_clip{i}.wav"
        sf.write(cell_dir / "audio" / name, np.full(800, 0.01 * (i + 1), np.float32), 16000)
        rows.append({"id": f"clip{i}", "path": f"audio/{name}", "caption": f"prompt number {i}"})
    (cell_dir / "generated.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    suite_toml = 'name = "tiny"\n[tracking]\naudio_clips = 2\n'
    (results / "suite.toml").write_text(suite_toml)

    record = make_record()
    record["cell"].update(generator="archisound", label="archisound-tiny", checkpoint="/ckpts/step-200.pt", seed=3)
    record["generation"]["manifest"] = str(cell_dir / "generated.jsonl")
    record["metrics"].append({**record["metrics"][1], "key": "kl-mel@diffsound", "metric": "kl-mel@diffsound",
                              "value": 0.5, "per_clip": [{"id": f"clip{i}", "reference_id": f"clip{i}",
                                                          "value": i / 10} for i in range(5)]})
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id = log_record(RunRecord.from_dict(record), uri, "exp", tmp_path / "art", results_dir=results)

    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    assert run.info.run_name == "archisound/archisound-tiny/step-200.pt/seed3"
    assert run.data.tags["bench.audio_artifacts"] == "2 of 5 generated clips"
    audio = sorted(a.path for a in client.list_artifacts(run_id, "audio"))
    assert audio == ["audio/00000_clip0.wav", "audio/00002_clip2.wav"]  # spread evenly, the same every time
    wave, rate = sf.read(client.download_artifacts(run_id, audio[1], str(tmp_path / "dl")))
    assert rate == 16000 and np.allclose(wave, 0.03, atol=1e-4)

    table = json.loads(Path(client.download_artifacts(run_id, "per_clip_scores.json", str(tmp_path / "dl")))
                       .read_text())
    assert table["columns"] == ["clip_id", "prompt", "audio", "kl-mel:diffsound"]
    assert table["data"][2] == ["clip2", "prompt number 2", "audio/00002_clip2.wav", pytest.approx(0.2)]
    assert table["data"][1][2] == ""  # not logged as audio
    assert Path(client.download_artifacts(run_id, "suite.toml", str(tmp_path / "dl"))).read_text() == suite_toml
    plots = [a.path for a in client.list_artifacts(run_id, "plots")]
    assert plots and all(p.endswith(".png") for p in plots)
    assert _download_record(client, run_id, tmp_path / "dl2") == record


def test_log_record_to_unreachable_server_is_a_tracking_error(monkeypatch):
    uri = f"http://127.0.0.1:{_free_port()}"
    record = make_record()
    t0 = time.monotonic()
    with pytest.raises(TrackingError) as err:
        log_record(RunRecord.from_dict(record), uri, "exp")
    assert record["cell_id"] in str(err.value)
    assert uri in str(err.value)
    assert time.monotonic() - t0 < 30, "MLflow retried a dead server for too long"


def test_log_record_with_unusable_sqlite_path_is_a_tracking_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    uri = f"sqlite:///{blocker / 'sub' / 'mlflow.db'}"  # parent is a file: cannot be created
    record = make_record()
    with pytest.raises(TrackingError) as err:
        log_record(RunRecord.from_dict(record), uri, "exp", tmp_path / "art")
    assert uri in str(err.value) and record["cell_id"] in str(err.value)


# ------------------------------------------------------------------------------ real server

@pytest.fixture
def mlflow_server(tmp_path):
    """A real `mlflow server` on a free loopback port; yields its URI; always stopped by PID."""
    port = _free_port()
    mlflow_exe = Path(sys.executable).parent / "mlflow"
    log_path = tmp_path / "server.log"
    cmd = [str(mlflow_exe), "server",
           "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
           "--artifacts-destination", str(tmp_path / "server-artifacts"),
           "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    with open(log_path, "wb") as log:
        # Its own session: `mlflow server` starts uvicorn, a job runner and huey consumers, and stopping
        # only the parent leaves those running for a while; the group is stopped as a whole.
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                state = f"exited with {proc.returncode}" if proc.poll() is not None else "no /health in 90 s"
                pytest.fail(f"mlflow server did not come up ({state}): {' '.join(cmd)}\n"
                            f"{log_path.read_text(errors='replace')[-4000:]}")
            time.sleep(0.5)
        yield uri
    finally:
        _stop_server(proc)


def _signal_group(pgid: int, sig: int) -> bool:
    """Send `sig` to the process group; False when no process is left in it."""
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False


def _stop_server(proc: subprocess.Popen) -> None:
    """Terminate the server (PID = its process group id), wait 10 s, then kill whatever is left."""
    pgid = proc.pid  # start_new_session=True made the server the leader of its own group
    _signal_group(pgid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        _signal_group(pgid, signal.SIGKILL)
        proc.wait(timeout=10)
    deadline = time.monotonic() + 10
    while _signal_group(pgid, 0) and time.monotonic() < deadline:  # helpers exit shortly after
        time.sleep(0.2)
    _signal_group(pgid, signal.SIGKILL)


@pytest.mark.slow
def test_log_record_through_mlflow_server(mlflow_server, tmp_path):
    record = make_record()
    run_id = log_record(RunRecord.from_dict(copy.deepcopy(record)), mlflow_server, "server-exp")

    client = MlflowClient(tracking_uri=mlflow_server)
    _check_logged_run(client, run_id, record, "server-exp", tmp_path / "download")
    # The artifact went through the server's proxy into --artifacts-destination.
    stored = list((tmp_path / "server-artifacts").rglob("record.json"))
    assert len(stored) == 1 and json.loads(stored[0].read_text()) == record


def test_weights_labels_are_spelled_for_mlflow():
    from bench.tracking import mlflow_key

    assert mlflow_key("fad-vggish@audioldm[unverified]") == "fad-vggish:audioldm unverified"
    assert mlflow_key("fad-vggish@audioldm[untrained]") == "fad-vggish:audioldm untrained"
