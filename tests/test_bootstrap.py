import numpy as np
import pytest

from bench.benchmarks.ci_coverage import Cell, coverage
from metrics.bootstrap import bootstrap_interval, content_order, mean_interval
from metrics.frechet import StackedClips


def _fd_interval(gen_clips, ref_clips, seed=0, resamples=100):
    gen, ref = StackedClips(gen_clips), StackedClips(ref_clips)
    return bootstrap_interval(lambda counts: gen.frechet(ref, counts[0], counts[1]),
                              [content_order(gen_clips), content_order(ref_clips)], resamples, seed,
                              "population FD", estimate=gen.frechet(ref), floor=0.0)


def test_deterministic_given_seed_and_sensitive_to_it():
    values = np.random.default_rng(0).standard_normal(50)
    a = mean_interval(values, 100, seed=7, covers="mean")
    b = mean_interval(values, 100, seed=7, covers="mean")
    c = mean_interval(values, 100, seed=8, covers="mean")
    assert a == b
    assert (a.low, a.high) != (c.low, c.high)


def test_mean_interval_has_the_textbook_width():
    # The bootstrap standard error of a mean is ~ sigma / sqrt(n): 95% half-width ~ 1.96 sigma / sqrt(n).
    values = np.random.default_rng(1).standard_normal(400)
    ci = mean_interval(values, 1000, seed=0, covers="mean")
    half = (ci.high - ci.low) / 2
    assert half == pytest.approx(1.96 * values.std() / np.sqrt(400), rel=0.15)
    assert ci.low < values.mean() < ci.high
    assert ci.estimate == pytest.approx(values.mean()) and abs(ci.bias) < 0.2 * half  # a mean is unbiased


def test_interval_is_the_basic_bootstrap_and_records_what_it_covers():
    rng = np.random.default_rng(3)
    gen = list(rng.standard_normal((60, 1, 3)) + 0.5)
    ref = list(rng.standard_normal((60, 1, 3)))
    ci = _fd_interval(gen, ref)
    # Reflected around the estimate: the interval's centre lies below it by about the bootstrap bias.
    assert ci.bias > 0 and ci.bias_corrected == pytest.approx(ci.estimate - ci.bias)
    assert (ci.low + ci.high) / 2 < ci.estimate
    d = ci.to_dict()
    assert d["covers"] == "population FD" and "basic" in d["method"] and "content" in d["draws"]


def test_distance_of_a_set_to_itself_is_inside_its_interval():
    clips = list(np.random.default_rng(2).standard_normal((30, 1, 4)))
    ci = _fd_interval(clips, clips)
    assert ci.estimate == 0.0 and ci.low == 0.0 <= ci.high
    assert ci.bias > 0


def test_interval_does_not_depend_on_clip_order():
    # Renaming files reorders clips; draws keyed to content give the same interval.
    rng = np.random.default_rng(5)
    gen = list(rng.standard_normal((40, 2, 3)))
    ref = list(rng.standard_normal((35, 1, 3)) + 0.3)
    perm_g, perm_r = rng.permutation(40), rng.permutation(35)
    a = _fd_interval(gen, ref)
    b = _fd_interval([gen[i] for i in perm_g], [ref[i] for i in perm_r])
    assert (a.low, a.high, a.bias) == pytest.approx((b.low, b.high, b.bias), rel=1e-9)
    values = rng.standard_normal(30)
    c, d = mean_interval(values, 50, 0, "m"), mean_interval(values[::-1].copy(), 50, 0, "m")
    assert (c.low, c.high) == pytest.approx((d.low, d.high), rel=1e-12)


@pytest.mark.parametrize("distance", ["identical", "close"])
def test_fd_interval_covers_the_population_value(distance):
    # The full grid is `python -m bench.benchmarks.ci_coverage`; this is one small cell of it. The previous
    # (bias-shifted percentile) interval covered the population FD in 0% (identical) and 40% (close) here.
    row = coverage(Cell(8, 100, distance), trials=40, resamples=100)
    assert row["basic"] >= 0.85
    assert row["shifted_percentile"] < 0.6


def test_bad_arguments():
    with pytest.raises(ValueError):
        bootstrap_interval(lambda c: 0.0, [np.arange(3)], 1, seed=0, covers="x")
    with pytest.raises(ValueError):
        bootstrap_interval(lambda c: 0.0, [np.arange(3)], 10, seed=0, covers="x", level=1.5)
