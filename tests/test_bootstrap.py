import numpy as np
import pytest

from metrics.bootstrap import bootstrap_interval
from metrics.frechet import StackedClips, frechet_from_stats


def _mean_statistic(values):
    return lambda counts: float(np.average(values, weights=counts[0]))


def test_deterministic_given_seed_and_sensitive_to_it():
    values = np.random.default_rng(0).standard_normal(50)
    a = bootstrap_interval(_mean_statistic(values), [50], 100, seed=7)
    b = bootstrap_interval(_mean_statistic(values), [50], 100, seed=7)
    c = bootstrap_interval(_mean_statistic(values), [50], 100, seed=8)
    assert a == b
    assert (a.low, a.high) != (c.low, c.high)


def test_mean_interval_has_the_textbook_width():
    # The bootstrap standard error of a mean is ~ sigma / sqrt(n): 95% half-width ~ 1.96 sigma / sqrt(n).
    values = np.random.default_rng(1).standard_normal(400)
    ci = bootstrap_interval(_mean_statistic(values), [400], 1000, seed=0)
    half = (ci.high - ci.low) / 2
    assert half == pytest.approx(1.96 * values.std() / np.sqrt(400), rel=0.15)
    assert ci.low < values.mean() < ci.high


def test_distance_of_a_set_to_itself_is_inside_its_interval():
    # Plain percentiles would exclude 0 here (every resample has duplicated clips); the bias shift fixes it.
    clips = list(np.random.default_rng(2).standard_normal((30, 1, 4)))
    stacked = StackedClips(clips)
    statistic = lambda counts: frechet_from_stats(stacked.stats(counts[0]), stacked.stats(counts[1]))  # noqa: E731
    ci = bootstrap_interval(statistic, [30, 30], 100, seed=0, estimate=0.0, floor=0.0)
    assert ci.low == 0.0 <= ci.high
    assert ci.bias > 0


def test_bad_arguments():
    with pytest.raises(ValueError):
        bootstrap_interval(lambda c: 0.0, [3], 1, seed=0)
    with pytest.raises(ValueError):
        bootstrap_interval(lambda c: 0.0, [3], 10, seed=0, level=1.5)
