"""RunRecord: one JSON document per scored cell, the single source for MLflow, gates, comparisons and tables.

Written and read here only. The JSON keeps the field order below; older schema versions are upgraded on
read (`_upgrade`), so records written by earlier releases stay readable.
"""
from __future__ import annotations

import json
from dataclasses import MISSING, dataclass, fields
from pathlib import Path

from bench.core.cache import atomic_write_json, stable_hash
from bench.core.errors import BenchError

SCHEMA = "bench.run-record/2"
# Parts of a record that legitimately differ between identical runs (wall-clock measurements).
NONDETERMINISTIC_FIELDS = ("timing",)
# Decimals a version-1 record's metrics were shown with (v2 records carry each metric's own).
_V1_PRECISION = {"text-audio": 4, "caption": 4}


@dataclass(frozen=True)
class RunRecord:
    schema: str
    suite: dict  # name, path, hash
    cell_id: str
    cell_hash: str
    cell: dict  # the cell's parameters: generator, label, checkpoint, seed, steps, guidance, sample_rate, ...
    generation: dict  # what generation produced: versions, checkpoint hash, rates, untrained, generated_dir
    reference: dict  # the reference set's description and fingerprint
    metrics: tuple  # one result dict per metric (metric, key, value, ci, protocol, backbone, ...)
    untrained: bool  # any metric computed with untrained backbone weights
    git_revision: str | None
    versions: dict
    timing: dict
    # Listening-test records only (bench listen score): the study's fingerprint and protocol, n_raters,
    # n_ratings, excluded raters, and `rates_cell`: the suite cell whose row these human ratings join.
    listening: dict | None = None
    # Metrics that failed in this cell ({"metric", "error"}); the others' results are kept in `metrics`, and
    # the cell is recomputed on the next run.
    failed_metrics: tuple = ()

    @property
    def label(self) -> str:
        return self.cell["label"]

    @property
    def generator(self) -> str:
        return self.cell["generator"]

    @property
    def generator_untrained(self) -> bool:
        return bool(self.generation.get("untrained"))

    @property
    def scored_cell(self) -> str:
        """The suite cell this record scores: its own, or the one a listening test rated."""
        return self.listening["rates_cell"] if self.listening else self.cell_id

    def result(self, metric_id: str) -> dict | None:
        """The result of a metric by id (`fad-vggish@audioldm`) or key (`...[untrained]`), if present."""
        return next((r for r in self.metrics if metric_id in (r["metric"], r["key"])), None)

    def to_dict(self) -> dict:
        out = {f.name: list(getattr(self, f.name)) if f.name in ("metrics", "failed_metrics")
               else getattr(self, f.name) for f in fields(self)}
        if self.listening is None:
            del out["listening"]
        if not self.failed_metrics:  # the usual case: no key, so complete records read as before
            del out["failed_metrics"]
        return out

    def comparable(self) -> dict:
        """The record without its wall-clock fields: equal for identical runs on the same machine."""
        return {k: v for k, v in self.to_dict().items() if k not in NONDETERMINISTIC_FIELDS}

    @classmethod
    def from_dict(cls, data, source: str = "record") -> "RunRecord":
        if not isinstance(data, dict) or data.get("schema") not in _UPGRADES:
            raise BenchError(f"{source}: not a RunRecord (expected schema {SCHEMA!r})")
        data = _UPGRADES[data["schema"]](data)
        names = [f.name for f in fields(cls)]
        missing = [f.name for f in fields(cls) if f.name not in data and f.default is MISSING]
        if missing:
            raise BenchError(f"{source}: RunRecord lacks field(s) {', '.join(missing)}")
        return cls(**{n: tuple(data[n]) if n in ("metrics", "failed_metrics") else data[n] for n in names if n in data})


def _upgrade_v1(data: dict) -> dict:
    """v1 results lacked unit and precision: v1 showed every metric unitless, 3 decimals (4 for CLAP/captions)."""
    metrics = [{**r, "unit": r.get("unit", ""), "precision": r.get("precision", _V1_PRECISION.get(r.get("kind"), 3))}
               for r in data.get("metrics", [])]
    return {**data, "schema": SCHEMA, "metrics": metrics}


def _upgrade_score_v1(data: dict) -> dict:
    """A `bench score` record from before score results were RunRecords: its generated set becomes the
    cell of a `files` generator with no suite, as `bench score` writes it now."""
    generated = data.get("generated") or {}
    reference = data.get("reference") or {"name": "none", "kind": "none", "source": "none", "n_clips": 0,
                                          "fingerprint": "none"}
    digest = stable_hash({"generated": generated.get("fingerprint"), "reference": reference.get("fingerprint"),
                          "metrics": [r.get("key") for r in data.get("metrics", [])]})
    label = generated.get("name") or "generated"
    cell = {"generator": "files", "label": label, "checkpoint": generated.get("source"), "seed": None,
            "steps": None, "guidance": None, "sample_rate": None, "duration_s": None, "samples_per_prompt": 1,
            "resampler": "soxr-vhq"}
    upgraded = _upgrade_v1({**data, "metrics": data.get("metrics", [])})
    return {**upgraded, "suite": {"name": "bench score", "path": None, "hash": digest},
            "cell_id": f"{label}_{digest[:8]}", "cell_hash": digest, "cell": cell,
            "generation": {"checkpoint_sha256": generated.get("fingerprint"), "untrained": False,
                           "source": generated, "generated_dir": generated.get("source")},
            "reference": reference, "untrained": any(r.get("untrained") for r in upgraded["metrics"]),
            "git_revision": None, "versions": {}, "timing": {}}


_UPGRADES = {"bench.run-record/1": _upgrade_v1, "bench.score-record/1": _upgrade_score_v1,
             SCHEMA: lambda data: data}


def write_record(path: Path, record: RunRecord) -> None:
    atomic_write_json(path, record.to_dict())


def read_record(path: Path) -> RunRecord:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise BenchError(f"{path}: not a readable RunRecord JSON file ({exc})") from exc
    return RunRecord.from_dict(data, str(path))
