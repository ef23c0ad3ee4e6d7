"""Where leaderboards read RunRecords from: a records directory (or one file), or an MLflow experiment.

MLflow runs carry the record as their `record.json` artifact (bench/tracking.py); runs without the
`bench.cell_id` tag are someone else's and are left out. A cell logged more than once (a `--force`
rerun) counts once: its latest run wins, so a table never shows the same cell twice.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from bench.core.errors import BenchError
from bench.core.mlflow_store import open_client, results_store_uri
from bench.core.records import RunRecord, read_record


def load_records(path: str | Path) -> list[RunRecord]:
    """Records from a RunRecord file, a records directory, or a results directory holding `records/`."""
    path = Path(path)
    if path.is_file():
        return [read_record(path)]
    if not path.is_dir():
        raise BenchError(f"{path}: no such records file or directory")
    directory = path / "records" if (path / "records").is_dir() else path
    files = sorted(p for p in directory.glob("*.json") if not p.name.endswith(".tracking.json"))
    if not files:
        raise BenchError(f"{directory}: no RunRecords (*.json) here; point --records at a results "
                         "directory of `bench run` or its records/ folder")
    return [read_record(p) for p in files]


def default_experiment_uri(experiment: str) -> str:
    """$MLFLOW_TRACKING_URI, else the sqlite store `bench run` writes for a suite of that name."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return results_store_uri(Path("bench-results") / experiment)


def load_mlflow_records(experiment: str, tracking_uri: str | None = None) -> list[RunRecord]:
    """The latest record of every cell logged to an MLflow experiment, by cell id (as load_records)."""
    uri = tracking_uri or default_experiment_uri(experiment)
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).is_file():
        raise BenchError(f"MLflow store {uri} does not exist; give --tracking-uri (or --records DIR)")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per record is noise
    try:
        client = open_client(uri)
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            names = sorted(e.name for e in client.search_experiments())
            raise BenchError(f"no MLflow experiment {experiment!r} at {uri}; experiments there: "
                             f"{', '.join(names) or 'none'}")
        runs, token = [], None
        while True:
            page = client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"],
                                      max_results=1000, page_token=token)
            runs += page
            token = page.token
            if not token:
                break
        latest: dict[str, object] = {}
        for run in runs:
            cell = run.data.tags.get("bench.cell_id")
            if cell is not None:
                latest.setdefault(cell, run)
                if run.info.start_time >= latest[cell].info.start_time:
                    latest[cell] = run
        records = []
        with tempfile.TemporaryDirectory() as tmp:
            for cell, run in latest.items():
                try:
                    local = client.download_artifacts(run.info.run_id, "record.json", tmp)
                except Exception as exc:  # MLflow raises many types; all mean "no record here"
                    raise BenchError(f"MLflow run {run.info.run_id} (cell {cell}) at {uri} has no readable "
                                     f"record.json artifact: {exc}") from exc
                records.append(read_record(Path(local)))
                os.remove(local)
    except BenchError:
        raise
    except Exception as exc:  # connection, SQL and REST errors alike
        raise BenchError(f"could not read MLflow experiment {experiment!r} at {uri}: "
                         f"{type(exc).__name__}: {exc}") from exc
    if not records:
        raise BenchError(f"MLflow experiment {experiment!r} at {uri} has no bench runs")
    return sorted(records, key=lambda r: r.cell_id)  # the order of load_records (file names = cell ids)
