"""Metric definitions and their registry: `name@preset` ids, looked up with a did-you-mean."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from bench.errors import ConfigError
from generators.base import unknown_name_message
from metrics.protocols import EmbeddingProtocol


@dataclass(frozen=True)
class MetricDef:
    name: str  # e.g. "fad-vggish"
    preset: str  # e.g. "audioldm"
    version: int
    direction: str  # "lower" or "higher" is better
    protocol: EmbeddingProtocol
    summary: str  # one line for `bench list`
    lineage: str  # which papers / toolkits this preset reproduces
    compute: Callable  # (generated: SetEmbeddings, reference: SetEmbeddings, options) -> dict

    @property
    def id(self) -> str:
        return f"{self.name}@{self.preset}"

    def describe(self) -> dict:
        return {"metric": self.id, "metric_version": self.version, "direction": self.direction,
                "lineage": self.lineage}


METRICS: dict[str, MetricDef] = {}


def register_metric(metric: MetricDef) -> MetricDef:
    if metric.id in METRICS:
        raise ValueError(f"metric {metric.id!r} registered twice")
    METRICS[metric.id] = metric
    return metric


def _load_builtin() -> None:
    import metrics.fad  # noqa: F401  (registers the FAD presets)


def all_metrics() -> dict[str, MetricDef]:
    _load_builtin()
    return METRICS


def get_metric(metric_id: str) -> MetricDef:
    known = all_metrics()
    if metric_id not in known:
        if "@" not in metric_id:
            presets = sorted(m for m in known if m.startswith(metric_id + "@"))
            if presets:
                raise ConfigError(f"metric {metric_id!r} needs a protocol preset: one of {', '.join(presets)}")
        raise ConfigError(unknown_name_message("metric", metric_id, known))
    return known[metric_id]


def metric_key(metric_id: str, untrained: bool) -> str:
    """The name a value is reported under: `untrained` is part of it wherever the number goes."""
    return f"{metric_id}[untrained]" if untrained else metric_id
