"""Metric definitions and their registry: `name@preset` ids, looked up with a did-you-mean."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from bench.core.errors import ConfigError
from bench.core.registry import Registry
from metrics.protocols import EmbeddingProtocol


METRIC_KINDS = ("set", "paired", "generated", "text-audio", "caption")


@dataclass(frozen=True)
class MetricDef:
    name: str  # e.g. "fad-vggish"
    preset: str  # e.g. "audioldm"
    version: int
    direction: str  # "lower" or "higher" is better
    protocol: EmbeddingProtocol
    summary: str  # one line for `bench list`
    lineage: str  # which papers / toolkits this preset reproduces
    compute: Callable  # (generated: SetEmbeddings, reference: SetEmbeddings | None, options) -> dict
    # "set": generated vs reference distributions; "paired": clip-by-clip by id; "generated": no
    # reference (IS); "text-audio": generated audio vs its captions (CLAP score); "caption": a captioner's
    # caption of each clip vs the clip's prompt and reference captions (CIDEr-D, SPICE).
    kind: str = "set"
    output: str = "embedding"  # which backbone output the kernel reads
    min_items: int = 2  # fewest outputs per set the kernel can use
    # Leaderboard display: every value (and CI bound) of the metric's column gets `precision` decimals.
    unit: str = ""
    precision: int = 3
    # Sanity checks (bench sanity): (perturbation, "degrade" | "invariant" | "any") pairs overriding the
    # perturbation's default expectation; "degrade" means rise if lower is better, fall if higher.
    expected_sensitivity: tuple[tuple[str, str], ...] = ()
    # Kernel family, for metrics derived from others (metrics.distance_variants): "frechet" means the value
    # is the Fréchet distance between Gaussian fits of all `output` rows of each set (FAD, FD).
    family: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in METRIC_KINDS:
            raise ValueError(f"metric kind must be one of {METRIC_KINDS}, got {self.kind!r}")
        for perturbation, expect in self.expected_sensitivity:
            if expect not in ("degrade", "invariant", "any"):
                raise ValueError(f"{self.id}: expected_sensitivity[{perturbation!r}] must be 'degrade', "
                                 f"'invariant' or 'any', got {expect!r}")

    @property
    def id(self) -> str:
        return f"{self.name}@{self.preset}"

    @property
    def needs_reference(self) -> bool:
        return self.kind in ("set", "paired")

    def describe(self) -> dict:
        return {"metric": self.id, "metric_version": self.version, "direction": self.direction,
                "kind": self.kind, "lineage": self.lineage, "unit": self.unit, "precision": self.precision}


# id -> MetricDef; plugins: entry-point group "bench.metrics".
# metrics.distance_variants stays last: it derives FAD-inf and KAD from every Fréchet metric (its deriver
# hook also catches metrics registered after it, e.g. by plugins).
METRICS = Registry("metric", ("metrics.vggish_metrics", "metrics.panns_metrics", "metrics.passt_metrics",
                              "metrics.avbench_metrics", "metrics.openl3_metrics", "metrics.clap_metrics",
                              "metrics.mel_metrics", "metrics.caption_metrics", "metrics.fadtk_metrics",
                              "metrics.aesthetics_metrics", "metrics.distance_variants"),
                   "bench.metrics")


def register_metric(metric: MetricDef) -> MetricDef:
    METRICS.add(metric.id, metric)
    for derive in list(_DERIVERS):
        derive(metric)
    return metric


# Hooks that register metrics derived from others (FAD-inf and KAD from every Fréchet metric). Each sees
# every metric, registered before or after it, so the order modules are imported in does not matter.
_DERIVERS: list[Callable[[MetricDef], None]] = []


def add_metric_deriver(derive: Callable[[MetricDef], None]) -> None:
    """Call `derive(metric)` for every metric registered so far and for every one registered later."""
    _DERIVERS.append(derive)
    for metric in list(METRICS.values()):
        derive(metric)


def all_metrics() -> dict[str, MetricDef]:
    return METRICS.load()


def get_metric(metric_id: str) -> MetricDef:
    presets = sorted(m for m in all_metrics() if m.startswith(metric_id + "@"))
    if "@" not in metric_id and presets:
        raise ConfigError(f"metric {metric_id!r} needs a protocol preset: one of {', '.join(presets)}")
    return METRICS.lookup(metric_id)


WEIGHTS_LABELS = ("untrained", "unverified")


def metric_key(metric_id: str, weights_label: str | None) -> str:
    """The name a value is reported under: a weights label ("untrained": seeded random weights;
    "unverified": a local checkpoint not matching the published hash) is part of it wherever the number goes."""
    if weights_label is None:
        return metric_id
    if weights_label not in WEIGHTS_LABELS:
        raise ValueError(f"weights label must be one of {WEIGHTS_LABELS}, got {weights_label!r}")
    return f"{metric_id}[{weights_label}]"
