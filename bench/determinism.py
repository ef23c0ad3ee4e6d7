"""`bench run --check-determinism`: recompute each cell from scratch and diff it against its record.

The second computation regenerates and re-embeds everything into an empty scratch cache (weights and
trained evaluators are reused: they are inputs, not results) and writes into a scratch results
directory whose path is then mapped back, so only real differences remain. Wall-clock fields
(bench.core.records.NONDETERMINISTIC_FIELDS) are not compared.
"""
from __future__ import annotations

import json
from pathlib import Path

from bench.core.records import RunRecord


def diff(a, b, path: str = "") -> list[str]:
    """Every leaf where a and b differ, as 'path: a != b' (paths like metrics[0].value)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b), key=str):
            where = f"{path}.{key}" if path else str(key)
            if key not in a or key not in b:
                out.append(f"{where}: {'missing' if key not in a else _short(a[key])} != "
                           f"{'missing' if key not in b else _short(b[key])}")
            else:
                out.extend(diff(a[key], b[key], where))
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} items != {len(b)} items"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in diff(x, y, f"{path}[{i}]")]
    return [] if a == b and type(a) is type(b) else [f"{path}: {_short(a)} != {_short(b)}"]


def _short(value) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 80 else text[:77] + "..."


def relocate(record: RunRecord, scratch_dir: Path, results_dir: Path) -> RunRecord:
    """The record with the scratch results directory's path replaced by the real one."""
    text = json.dumps(record.to_dict())
    moved = text.replace(json.dumps(str(scratch_dir))[1:-1], json.dumps(str(results_dir))[1:-1])
    return RunRecord.from_dict(json.loads(moved))


def record_differences(first: RunRecord, second: RunRecord) -> list[str]:
    return diff(first.comparable(), second.comparable())
