"""Log RunRecords to MLflow: runs people want to open.

Each cell's run carries params (its configuration), metrics, tags (exact metric ids, protocols,
backbones), and artifacts: `record.json` (the record itself), `suite.toml` (the suite as it ran), a few
generated clips under `audio/` (MLflow's UI plays them; `[tracking] audio_clips`, default 4, spread evenly
over the prompts), the per-clip scores as an MLflow table `per_clip_scores.json` (clip id, prompt, audio
artifact, each metric with per-clip values) and the figures under `plots/`.

The record on disk is the source of truth; MLflow gets a copy. Metric keys read as the ids do, with what
MLflow does not allow spelled differently: `fad-vggish@audioldm[untrained]` -> `fad-vggish:audioldm untrained`;
the CI bounds live under `ci_low/` and `ci_high/`, which the UI shows as sections of their own. The exact
ids travel as tags and inside record.json. Run names say generator/label/checkpoint/seed.
"""
from __future__ import annotations

import json
import tempfile
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from bench.core.errors import BenchError
from bench.core.mlflow_store import experiment_id, open_client
from bench.core.records import RunRecord
from bench.suite import TrackingSpec

AUDIO_CLIPS = TrackingSpec.audio_clips  # generated clips logged per cell: [tracking] audio_clips
SUITE_FILE = "suite.toml"  # the suite as it ran, written by the runner into the results directory


class TrackingError(BenchError):
    """MLflow could not take the results (they are safe on disk)."""


def mlflow_key(metric_key: str) -> str:
    return metric_key.replace("@", ":").replace("[untrained]", " untrained").replace("[unverified]", " unverified")


def run_name(record: RunRecord) -> str:
    """generator/label/checkpoint/seed, leaving out a label equal to the generator and an absent checkpoint."""
    cell = record.cell
    parts = [cell["generator"]]
    if cell.get("label") and cell["label"] != cell["generator"]:
        parts.append(cell["label"])
    if cell.get("checkpoint"):
        parts.append(Path(str(cell["checkpoint"])).name)
    elif record.generator_untrained:
        parts.append("untrained")
    parts.append(f"seed{cell.get('seed')}")
    return "/".join(parts)


CHECK_TIMEOUT_S = 5.0  # one short look at the server before any work, instead of MLflow's minutes of retries


def check_tracking(uri: str, timeout_s: float = CHECK_TIMEOUT_S) -> str | None:
    """Why MLflow at `uri` cannot take records (None: it can). An http(s) server is asked for /health
    once, with a short timeout; a local store (sqlite, file) is opened, which creates it, once."""
    scheme = urllib.parse.urlsplit(uri).scheme
    if scheme in ("http", "https"):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout_s) as response:
                response.read(64)
        except urllib.error.HTTPError as exc:  # it answers: auth or a proxy in front; let MLflow decide
            if exc.code >= 500:
                return f"MLflow server at {uri} answers /health with HTTP {exc.code}"
        except (OSError, ValueError) as exc:  # refused, unresolvable, timed out
            reason = getattr(exc, "reason", exc)
            return f"MLflow server at {uri} is not reachable ({reason}; checked once with a {timeout_s:g} s timeout)"
        return None
    try:
        open_client(uri).search_experiments(max_results=1)
    except Exception as exc:  # MLflow raises many types (SQL, file store, bad URI); all mean "cannot log"
        return f"MLflow store at {uri} cannot be opened ({type(exc).__name__}: {(str(exc).splitlines() or [''])[0]})"
    return None


def _params(record: RunRecord) -> dict[str, str]:
    cell = record.cell
    params = {k: "none" if v is None else str(v) for k, v in cell.items()}
    params["reference_set"] = record.reference["name"]
    params["reference_fingerprint"] = record.reference["fingerprint"]
    params["suite"] = record.suite["name"]
    return params


def _metrics(record: RunRecord) -> dict[str, float]:
    out = {}
    for result in record.metrics:
        key = mlflow_key(result["key"])
        out[key] = result["value"]
        if result.get("ci"):
            out[f"ci_low/{key}"] = result["ci"]["low"]
            out[f"ci_high/{key}"] = result["ci"]["high"]
            if result["ci"].get("bias_corrected") is not None:
                out[f"bias_corrected/{key}"] = result["ci"]["bias_corrected"]
        if (result.get("noise_floor") or {}).get("mean") is not None:
            out[f"noise_floor/{key}"] = result["noise_floor"]["mean"]
    return out


def audio_clips_setting(results_dir: Path | None) -> int:
    """`[tracking] audio_clips` of the suite the results came from (its copy in the results directory)."""
    path = Path(results_dir) / SUITE_FILE if results_dir is not None else None
    if path is None or not path.is_file():
        return AUDIO_CLIPS
    return int(tomllib.loads(path.read_text()).get("tracking", {}).get("audio_clips", AUDIO_CLIPS))


def generated_rows(record: RunRecord) -> list[dict]:
    """The cell's generated clips (its manifest: id, path relative to the manifest, caption); [] if gone."""
    manifest = record.generation.get("manifest")
    if not manifest or not Path(manifest).is_file():
        return []
    rows = [json.loads(line) for line in Path(manifest).read_text().splitlines() if line.strip()]
    return [{**r, "file": Path(manifest).parent / r["path"]} for r in rows]


def pick_clips(rows: list[dict], n: int) -> list[dict]:
    """n clips spread evenly over the manifest's order (the prompts' order): the same ones every time."""
    n = min(n, len(rows))
    return [rows[(i * len(rows)) // n] for i in range(n)]


def clip_table(record: RunRecord, rows: list[dict], audio: dict[str, str]) -> dict[str, list]:
    """Columns of the per-clip table: clip id, prompt, audio artifact (if logged), each per-clip metric."""
    per_metric = {mlflow_key(r["key"]): {c["id"]: c["value"] for c in r["per_clip"]}
                  for r in record.metrics if r.get("per_clip")}
    ids = [r["id"] for r in rows] or list(dict.fromkeys(i for values in per_metric.values() for i in values))
    prompts = {r["id"]: r.get("caption", "") for r in rows}
    table = {"clip_id": ids, "prompt": [prompts.get(i, "") for i in ids], "audio": [audio.get(i, "") for i in ids]}
    for key, values in per_metric.items():
        table[key] = [values.get(i) for i in ids]
    return table


def _tags(record: RunRecord) -> dict[str, str]:
    tags = {
        "bench.cell_id": record.cell_id,
        "bench.untrained": "true" if record.untrained else "false",
        "bench.unverified_checkpoint": "true" if any(r.get("unverified") for r in record.metrics) else "false",
        "bench.generator_untrained": "true" if record.generator_untrained else "false",
        "bench.metrics": json.dumps([r["key"] for r in record.metrics]),
        "bench.suite_hash": record.suite["hash"],
        "bench.git_revision": record.git_revision or "unknown",
        "bench.versions": json.dumps(record.versions, sort_keys=True),
    }
    for result in record.metrics:
        prefix = f"bench.metric.{mlflow_key(result['key'])}"
        tags[f"{prefix}.protocol"] = f"{result['protocol']['id']} v{result['protocol']['version']}"
        backbone = result["backbone"]
        tags[f"{prefix}.backbone"] = (f"{backbone['backbone']} untrained seed={backbone['seed']}"
                                      if result["untrained"] else
                                      f"{backbone['backbone']} {backbone['file']} sha256={backbone['sha256']}"
                                      + (" LOCAL UNVERIFIED (does not match the published sha256)"
                                         if result.get("unverified") else ""))
        if result.get("ci"):
            tags[f"{prefix}.ci_covers"] = result["ci"].get("covers", "")[:5000]
        floor = result.get("noise_floor") or {}
        if floor.get("mean") is not None:
            out_floor = f"{floor['mean']:.6g} +- {floor['std']:.3g} ({floor['set_sizes'][0]} vs {floor['set_sizes'][1]} clips)"
            tags[f"{prefix}.noise_floor"] = out_floor
    return tags


def _log_artifacts(client, run_id: str, record: RunRecord, results_dir: Path | None) -> dict[str, str]:
    """suite.toml, audio clips, the per-clip table and the plots; returns tags saying what was logged."""
    from leaderboards.plots import leaderboard_plots

    suite_file = Path(results_dir) / SUITE_FILE if results_dir is not None else None
    if suite_file is not None and suite_file.is_file():
        client.log_artifact(run_id, str(suite_file))
    rows = generated_rows(record)
    chosen = pick_clips(rows, audio_clips_setting(results_dir))
    audio = {}
    for row in chosen:
        client.log_artifact(run_id, str(row["file"]), "audio")
        audio[row["id"]] = f"audio/{row['file'].name}"
    table = clip_table(record, rows, audio)
    if table["clip_id"]:
        client.log_table(run_id, table, "per_clip_scores.json")
    with tempfile.TemporaryDirectory() as tmp:
        for path in leaderboard_plots([record], Path(tmp), formats=("png",)):
            client.log_artifact(run_id, str(path), "plots")
    return {"bench.audio_artifacts": (f"{len(chosen)} of {len(rows)} generated clips" if rows else
                                      "none: the generated audio is no longer at the manifest's path")}


def log_record(record: RunRecord, tracking_uri: str, experiment: str, artifact_dir: Path | None = None,
               extra_tags: dict[str, str] | None = None, results_dir: Path | None = None) -> str:
    """Create one MLflow run for a cell's record; return its run id."""
    try:
        from mlflow.entities import Metric, Param, RunTag

        client = open_client(tracking_uri)
        exp_id = experiment_id(client, experiment, artifact_dir)
        # Identity tags go on at creation, so a run cut off before its data is logged is still findable.
        run = client.create_run(exp_id, run_name=run_name(record), tags=extra_tags or None)
        run_id = run.info.run_id
        client.log_batch(
            run_id,
            metrics=[Metric(k, float(v), 0, 0) for k, v in _metrics(record).items()],
            params=[Param(k, v) for k, v in _params(record).items()],
            tags=[RunTag(k, v) for k, v in {**_tags(record), **(extra_tags or {})}.items()])
        client.log_dict(run_id, record.to_dict(), "record.json")
        notes = _log_artifacts(client, run_id, record, results_dir)
        client.log_batch(run_id, tags=[RunTag(k, v) for k, v in notes.items()])
        client.set_terminated(run_id)
        return run_id
    except Exception as exc:  # MLflow raises many types (HTTP, SQL, REST); all mean "not logged"
        raise TrackingError(f"could not log cell {record.cell_id} to MLflow at {tracking_uri}: "
                            f"{type(exc).__name__}: {exc}") from exc
