"""Bootstrap confidence intervals over clips for set metrics (FAD, FD, KAD, IS, KL, CLAP, ...).

Method: the basic (bias-corrected, "reverse percentile") bootstrap. With estimate t and resampled
values t*_r, the interval is [2t - q(1 - a/2), 2t - q(a/2)] of the t*: it targets the POPULATION value
of the statistic (the distance between the two distributions), not the value another draw of this size
would get. The plain or bias-shifted percentile interval is centred on t itself; for an upward-biased
statistic such as FD (biased by ~c/n) it then lies above the population value and covered it in 0-70%
of trials (python -m bench.benchmarks.ci_coverage). The basic bootstrap reflects the resampling
distribution around t, which moves the interval down by the bootstrap bias (mean t* - t).
`bias_corrected` = t - bias is recorded next to every interval; the reported point value stays the
usual (biased) estimate, for comparability with papers.

Draws are keyed to content: each set's clips are put in a canonical order (sha256 of what the metric
reads for the clip) before the multinomial counts are drawn, so renaming or reordering files leaves the
interval unchanged.
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np


METHOD = ("basic (bias-corrected) bootstrap: [2 t - q(1 - a/2), 2 t - q(a/2)] over the resampled values, "
          "floored at the metric's lower bound; each set's clips resampled independently with replacement")
DRAWS = "keyed to clip content (sha256 of each clip's backbone outputs): independent of file names and order"


@dataclass(frozen=True)
class Interval:
    low: float
    high: float
    level: float
    n_resamples: int
    seed: int
    bias: float  # mean of the resampled values minus the full-set value
    estimate: float  # the value the interval is reflected around (the reported point value)
    bias_corrected: float  # estimate - bias: the bootstrap's bias-corrected point estimate
    covers: str  # what the interval is meant to contain, in words
    # The spread of the estimator itself: [q(a/2) - bias, q(1 - a/2) - bias], where another draw of this size
    # would score. For comparing point values of equally sized sets (bench sanity), not the population value.
    draw_low: float | None = None
    draw_high: float | None = None
    method: str = METHOD
    draws: str = DRAWS

    def to_dict(self) -> dict:
        return asdict(self)


def content_order(items: Sequence[np.ndarray]) -> np.ndarray:
    """Indices that sort `items` by the sha256 of their float64 content (and shape): the canonical order.

    Items with equal content are interchangeable for any statistic of the set, so ties do not matter.
    """
    digests = []
    for item in items:
        a = np.ascontiguousarray(item, np.float64)
        digests.append(hashlib.sha256(repr(a.shape).encode() + a.tobytes()).hexdigest())
    return np.argsort(np.array(digests, dtype=object), kind="stable")


def basic_interval(estimate: float, resampled: np.ndarray, level: float) -> tuple[float, float, float, tuple]:
    """The basic (bias-corrected) bootstrap interval of `estimate` from its resampled values: (low, high,
    bias, (q_low, q_high)) with [2 t - q(1 - a/2), 2 t - q(a/2)]; it covers the population value."""
    resampled = np.asarray(resampled, np.float64)
    bias = float(resampled.mean() - estimate)
    tail = (1.0 - level) / 2.0
    q_low, q_high = np.quantile(resampled, [tail, 1.0 - tail])
    return float(2.0 * estimate - q_high), float(2.0 * estimate - q_low), bias, (float(q_low), float(q_high))


def bootstrap_interval(statistic: Callable[[list[np.ndarray]], float], orders: list[np.ndarray],
                       n_resamples: int, seed: int, covers: str, level: float = 0.95,
                       estimate: float | None = None, floor: float | None = None) -> Interval:
    """Resample each set's clips (multinomial counts), apply `statistic(counts_per_set)`, reflect quantiles.

    `orders[s]` is set s's canonical order (content_order of its clips); counts are drawn in that order
    and handed to `statistic` in the set's own order. Deterministic given `seed` and the clips' content.
    """
    if n_resamples < 2:
        raise ValueError(f"n_resamples must be >= 2, got {n_resamples}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    orders = [np.asarray(o, np.int64) for o in orders]
    rng = np.random.default_rng(seed)
    values = np.empty(n_resamples)
    for r in range(n_resamples):
        counts = []
        for order in orders:
            n = len(order)
            drawn = np.empty(n, np.int64)
            drawn[order] = rng.multinomial(n, np.full(n, 1.0 / n))
            counts.append(drawn)
        values[r] = statistic(counts)
    if estimate is None:
        estimate = statistic([np.ones(len(o), dtype=np.int64) for o in orders])
    estimate = float(estimate)
    low, high, bias, (q_low, q_high) = basic_interval(estimate, values, level)
    draw_low, draw_high = q_low - bias, q_high - bias
    if floor is not None:
        low, high = max(low, floor), max(high, floor)
        draw_low, draw_high = max(draw_low, floor), max(draw_high, floor)
    return Interval(float(low), float(high), level, n_resamples, seed, bias, estimate, estimate - bias, covers,
                    float(draw_low), float(draw_high))


def mean_interval(values: np.ndarray, n_resamples: int, seed: int, covers: str, level: float = 0.95,
                  weights: np.ndarray | None = None) -> Interval:
    """Interval of the (weighted) mean of per-item values, items resampled; keyed to (value, weight)."""
    values = np.asarray(values, np.float64)
    weights = np.ones_like(values) if weights is None else np.asarray(weights, np.float64)
    order = content_order(np.stack([values, weights], axis=1))
    return bootstrap_interval(lambda counts: float(counts[0] @ (values * weights) / (counts[0] @ weights)), [order],
                              n_resamples, seed, covers, level)
