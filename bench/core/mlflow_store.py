"""MLflow access shared by tracking, sync, sanity reports and leaderboards: one way to open a store."""
from __future__ import annotations

import logging
from pathlib import Path


def results_store_uri(results_dir: Path) -> str:
    """The local sqlite store a results directory keeps its MLflow runs in."""
    return f"sqlite:///{(Path(results_dir) / 'mlflow.db').resolve()}"


def open_client(uri: str):
    """An MlflowClient for `uri`, with MLflow's INFO chatter (database migrations on every new store) muted."""
    from mlflow.tracking import MlflowClient

    # After the import: MLflow sets its own logger to INFO when it is imported.
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    return MlflowClient(tracking_uri=uri)


def experiment_id(client, name: str, artifact_dir: Path | None = None) -> str:
    """The id of experiment `name`, created (with its artifacts under `artifact_dir`, if given) if missing."""
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = Path(artifact_dir).resolve().as_uri() if artifact_dir is not None else None
    return client.create_experiment(name, artifact_location=location)
