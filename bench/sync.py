"""Get RunRecords into MLflow exactly once, now or later (`bench sync`).

Records on disk are the source of truth. Next to each record RESULTS/records/CELL.json a sidecar
CELL.tracking.json says whether it reached MLflow: {"synced": true, uri, experiment, run_id,
record_sha256} or {"synced": false, uri, experiment, error, record_sha256} when the tracking server
could not take it. Every MLflow run carries the tag bench.record_sha256 (sha256 of the record), and a
record is only logged after checking the experiment for a finished run with that tag; runs with the
tag that never finished (a process killed mid-logging) are deleted first. So a killed run, a rerun and
any number of `bench sync` calls leave exactly one MLflow run per record.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from bench.core.cache import atomic_write_json, stable_hash
from bench.core.crashpoints import crash_point
from bench.core.errors import BenchError
from bench.core.folder_lock import folder_lock
from bench.core.mlflow_store import open_client
from bench.core.records import RunRecord, read_record
from bench.core.mlflow_store import results_store_uri
from bench.tracking import TrackingError, check_tracking, log_record

DIGEST_TAG = "bench.record_sha256"


def sidecar_path(results_dir: Path, cell_id: str) -> Path:
    return Path(results_dir) / "records" / f"{cell_id}.tracking.json"


def artifact_dir_for(uri: str, results_dir: Path) -> Path | None:
    """A local sqlite store keeps artifacts next to the results; a server decides for itself."""
    return Path(results_dir) / "mlartifacts" if uri.startswith("sqlite") else None


def _read_sidecar(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def is_synced(record: RunRecord, uri: str, results_dir: Path) -> bool:
    done = _read_sidecar(sidecar_path(results_dir, record.cell_id))
    return (done.get("synced", "run_id" in done) is True and done.get("uri") == uri
            and done.get("record_sha256") == stable_hash(record.to_dict()))


def log_once(record: RunRecord, uri: str, experiment: str, artifact_dir: Path | None,
             results_dir: Path | None = None) -> str:
    """The id of the one finished MLflow run of this record, logging it only if there is none."""
    digest = stable_hash(record.to_dict())
    try:
        client = open_client(uri)
        exp = client.get_experiment_by_name(experiment)
        if exp is not None:
            runs = client.search_runs([exp.experiment_id], f"tags.`{DIGEST_TAG}` = '{digest}'")
            finished = [r for r in runs if r.info.status == "FINISHED"]
            if finished:
                return finished[0].info.run_id
            for r in runs:  # cut off mid-logging: incomplete, replaced below
                client.delete_run(r.info.run_id)
    except Exception as exc:  # MLflow raises many types (HTTP, SQL, REST); all mean "not reachable"
        raise TrackingError(f"could not reach MLflow at {uri} for cell {record.cell_id}: "
                            f"{type(exc).__name__}: {exc}") from exc
    return log_record(record, uri, experiment, artifact_dir, extra_tags={DIGEST_TAG: digest}, results_dir=results_dir)


def track(record: RunRecord, uri: str, experiment: str, results_dir: Path) -> str:
    """Log a record once per tracking target; on failure mark it unsynced (and raise TrackingError)."""
    if is_synced(record, uri, results_dir):
        return _read_sidecar(sidecar_path(results_dir, record.cell_id))["run_id"]
    try:
        run_id = log_once(record, uri, experiment, artifact_dir_for(uri, results_dir), results_dir)
    except TrackingError as exc:
        mark_unsynced(record, uri, experiment, results_dir, str(exc))
        raise
    crash_point("track")
    atomic_write_json(sidecar_path(results_dir, record.cell_id),
                      {"synced": True, "uri": uri, "experiment": experiment, "run_id": run_id,
                       "record_sha256": stable_hash(record.to_dict())})
    return run_id


def mark_unsynced(record: RunRecord, uri: str, experiment: str, results_dir: Path, reason: str) -> None:
    atomic_write_json(sidecar_path(results_dir, record.cell_id),
                      {"synced": False, "uri": uri, "experiment": experiment, "error": reason,
                       "record_sha256": stable_hash(record.to_dict())})


@dataclass
class SyncOutcome:
    pushed: list[str] = field(default_factory=list)  # cell ids logged now
    already: list[str] = field(default_factory=list)  # already in MLflow
    failed: list[str] = field(default_factory=list)  # "cell: error"


def record_paths(results_dir: Path) -> list[Path]:
    records = Path(results_dir) / "records"
    if not records.is_dir():
        raise BenchError(f"{results_dir}: no records/ directory here; give the results directory of a "
                         "`bench run` (its --out, or the suite's results_dir)")
    return sorted(p for p in records.glob("*.json") if not p.name.endswith(".tracking.json"))


def sync_results(results_dir: Path, uri: str | None = None, experiment: str | None = None,
                 log=print) -> SyncOutcome:
    """Push every record of RESULTS_DIR that is not yet in MLflow at its target."""
    results_dir = Path(results_dir)
    outcome = SyncOutcome()
    try:
        summary = json.loads((results_dir / "summary.json").read_text())
    except (OSError, ValueError):
        summary = {}
    paths = record_paths(results_dir)
    with folder_lock(results_dir, "bench sync"):
        return _sync_locked(results_dir, paths, summary, uri, experiment, outcome, log)


def _sync_locked(results_dir: Path, paths: list[Path], summary: dict, uri, experiment, outcome: SyncOutcome,
                 log) -> SyncOutcome:
    if not paths:
        log(f"{results_dir / 'records'}: no records to sync")
    down: dict[str, str | None] = {}  # target -> why it cannot take records, checked once per target
    for path in paths:
        record = read_record(path)
        side = _read_sidecar(sidecar_path(results_dir, record.cell_id))
        target = uri or side.get("uri") or summary.get("tracking_uri") or results_store_uri(results_dir)
        exp = experiment or side.get("experiment") or record.suite["name"]
        if is_synced(record, target, results_dir):
            outcome.already.append(record.cell_id)
            continue
        if target not in down:
            down[target] = check_tracking(target)
        if down[target]:
            outcome.failed.append(f"{record.cell_id}: not tried: {down[target]}")
            log(f"not synced: {record.cell_id}: {down[target]}")
            continue
        try:
            run_id = track(record, target, exp, results_dir)
        except TrackingError as exc:
            outcome.failed.append(f"{record.cell_id}: {exc}")
            log(f"not synced: {exc}")
            continue
        outcome.pushed.append(record.cell_id)
        log(f"synced {record.cell_id} -> {target} (experiment {exp}, run {run_id})")
    return outcome


def cmd_sync(args) -> int:
    outcome = sync_results(Path(args.results_dir), args.tracking_uri, args.experiment)
    print(f"{len(outcome.pushed)} record(s) pushed, {len(outcome.already)} already tracked, "
          f"{len(outcome.failed)} failed")
    return 3 if outcome.failed else 0


def add_parser(sub) -> None:
    p = sub.add_parser("sync", help="push records that are not yet in MLflow (e.g. the server was down)",
                       description="Log to MLflow every RunRecord in RESULTS_DIR/records that is not there yet. "
                       "Idempotent: a record already logged (tag bench.record_sha256) is not logged again. "
                       "Exit 0 when all are tracked, 3 when some still could not be logged.")
    p.add_argument("results_dir", help="results directory of a `bench run` (holds records/)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: where each record was meant to go, "
                   "else sqlite in the results dir)")
    p.add_argument("--experiment", help="MLflow experiment (default: the one the run used, else the suite name)")
    p.set_defaults(func=cmd_sync)
