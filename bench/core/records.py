"""RunRecords: one JSON document per suite cell, the single source for MLflow and leaderboards."""
from __future__ import annotations

import json
from pathlib import Path

from bench.core.cache import atomic_write_json
from bench.core.errors import BenchError

SCHEMA = "bench.run-record/1"
# Parts of a record that legitimately differ between identical runs (wall-clock measurements).
NONDETERMINISTIC_FIELDS = ("timing",)


def write_record(path: Path, record: dict) -> None:
    atomic_write_json(path, record)


def read_record(path: Path) -> dict:
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise BenchError(f"{path}: not a readable RunRecord JSON file ({exc})") from exc
    if not isinstance(record, dict) or record.get("schema") != SCHEMA:
        raise BenchError(f"{path}: not a RunRecord (expected schema {SCHEMA!r})")
    return record


def comparable(record: dict) -> dict:
    """The record without its wall-clock fields: equal for identical runs on the same machine."""
    return {k: v for k, v in record.items() if k not in NONDETERMINISTIC_FIELDS}
