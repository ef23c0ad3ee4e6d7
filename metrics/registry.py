"""Metric definitions and their registry: `name@preset` ids, looked up with a did-you-mean."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from bench.errors import ConfigError
from bench.registry import Registry
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


# id -> MetricDef; plugins: entry-point group "bench.metrics".
METRICS = Registry("metric", ("metrics.fad",), "bench.metrics")


def register_metric(metric: MetricDef) -> MetricDef:
    return METRICS.add(metric.id, metric)


def all_metrics() -> dict[str, MetricDef]:
    return METRICS.load()


def get_metric(metric_id: str) -> MetricDef:
    presets = sorted(m for m in all_metrics() if m.startswith(metric_id + "@"))
    if "@" not in metric_id and presets:
        raise ConfigError(f"metric {metric_id!r} needs a protocol preset: one of {', '.join(presets)}")
    return METRICS.lookup(metric_id)


def metric_key(metric_id: str, untrained: bool) -> str:
    """The name a value is reported under: `untrained` is part of it wherever the number goes."""
    return f"{metric_id}[untrained]" if untrained else metric_id
