"""Log RunRecords to MLflow: params, metrics, tags, and the record itself as `record.json`.

The record on disk is the source of truth; MLflow gets a copy. Metric keys are the record's keys with
'@' and '[untrained]' spelled so MLflow accepts them (it allows letters, digits, _ - . / : and space);
the exact ids travel as tags and inside record.json.
"""
from __future__ import annotations

import json
from pathlib import Path

from bench.core.errors import BenchError
from bench.core.mlflow_store import experiment_id, open_client
from bench.core.records import RunRecord


class TrackingError(BenchError):
    """MLflow could not take the results (they are safe on disk)."""


def mlflow_key(metric_key: str) -> str:
    return metric_key.replace("@", ".").replace("[untrained]", ".untrained")


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
            out[f"{key}.ci_low"] = result["ci"]["low"]
            out[f"{key}.ci_high"] = result["ci"]["high"]
    return out


def _tags(record: RunRecord) -> dict[str, str]:
    tags = {
        "bench.cell_id": record.cell_id,
        "bench.untrained": "true" if record.untrained else "false",
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
                                      f"{backbone['backbone']} {backbone['file']} sha256={backbone['sha256']}")
    return tags


def log_record(record: RunRecord, tracking_uri: str, experiment: str, artifact_dir: Path | None = None,
               extra_tags: dict[str, str] | None = None) -> str:
    """Create one MLflow run for a cell's record; return its run id."""
    try:
        from mlflow.entities import Metric, Param, RunTag

        client = open_client(tracking_uri)
        exp_id = experiment_id(client, experiment, artifact_dir)
        # Identity tags go on at creation, so a run cut off before its data is logged is still findable.
        run = client.create_run(exp_id, run_name=record.cell_id, tags=extra_tags or None)
        run_id = run.info.run_id
        client.log_batch(
            run_id,
            metrics=[Metric(k, float(v), 0, 0) for k, v in _metrics(record).items()],
            params=[Param(k, v) for k, v in _params(record).items()],
            tags=[RunTag(k, v) for k, v in {**_tags(record), **(extra_tags or {})}.items()])
        client.log_dict(run_id, record.to_dict(), "record.json")
        client.set_terminated(run_id)
        return run_id
    except Exception as exc:  # MLflow raises many types (HTTP, SQL, REST); all mean "not logged"
        raise TrackingError(f"could not log cell {record.cell_id} to MLflow at {tracking_uri}: "
                            f"{type(exc).__name__}: {exc}") from exc
