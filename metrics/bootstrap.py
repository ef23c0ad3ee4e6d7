"""Percentile bootstrap over clips for set metrics (FAD, FD, ...)."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np


METHOD = ("bias-shifted percentile bootstrap: quantiles of the resampled values minus the bootstrap bias "
          "(their mean minus the full-set value), floored at the metric's lower bound; clips of every set "
          "resampled independently with replacement")


@dataclass(frozen=True)
class Interval:
    low: float
    high: float
    level: float
    n_resamples: int
    seed: int
    bias: float  # mean of the resampled values minus the full-set value
    method: str = METHOD

    def to_dict(self) -> dict:
        return asdict(self)


def bootstrap_interval(statistic: Callable[[list[np.ndarray]], float], set_sizes: list[int],
                       n_resamples: int, seed: int, level: float = 0.95, estimate: float | None = None,
                       floor: float | None = None) -> Interval:
    """Resample each set's clips (multinomial counts), apply `statistic(counts_per_set)`, take quantiles.

    Distances such as FD are biased upwards on resamples (duplicated clips), so plain percentiles can
    exclude the full-set value (FD of a set against itself is 0, every resample gives > 0). The interval
    is therefore shifted by the bootstrap bias estimate. Deterministic given `seed`.
    """
    if n_resamples < 2:
        raise ValueError(f"n_resamples must be >= 2, got {n_resamples}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    rng = np.random.default_rng(seed)
    values = np.empty(n_resamples)
    for r in range(n_resamples):
        counts = [rng.multinomial(n, np.full(n, 1.0 / n)) for n in set_sizes]
        values[r] = statistic(counts)
    if estimate is None:
        estimate = statistic([np.ones(n, dtype=np.int64) for n in set_sizes])
    bias = float(values.mean() - estimate)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(values, [tail, 1.0 - tail]) - bias
    if floor is not None:
        low, high = max(low, floor), max(high, floor)
    return Interval(float(low), float(high), level, n_resamples, seed, bias)
