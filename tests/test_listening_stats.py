"""Listening-test statistics against known answers: simulated raters with known per-system means."""
import math

import numpy as np
import pytest

from metrics.listening import (attention_screening, crossed_bootstrap, krippendorff_alpha,
                               mushra_post_screening)

TRUE_MEANS = np.array([2.0, 3.0, 3.6])


def simulate(rng, n_raters=10, n_items=12, rater_sd=0.5, item_sd=0.5, noise_sd=0.7, means=TRUE_MEANS):
    """Fully crossed design: every rater rates every item under every system (score = mean + rater
    effect + item effect + noise)."""
    a = rng.normal(0, rater_sd, n_raters)
    b = rng.normal(0, item_sd, n_items)
    r, i, c = (g.ravel() for g in np.meshgrid(np.arange(n_raters), np.arange(n_items), np.arange(len(means)),
                                              indexing="ij"))
    score = means[c] + a[r] + b[i] + rng.normal(0, noise_sd, r.size)
    return r, i, c, score


def test_crossed_bootstrap_covers_true_means_near_nominal_rate():
    """200 simulated studies: the two-way interval covers each system's true mean close to 95% of the
    time; a naive per-rating t-interval (raters and items as if independent) does not."""
    rng = np.random.default_rng(0)
    covered = naive_covered = total = 0
    for study in range(200):
        r, i, c, s = simulate(rng)
        summaries = crossed_bootstrap(r, i, c, s, n_conditions=3, n_resamples=200, seed=study)
        for k, summary in enumerate(summaries):
            covered += summary.low <= TRUE_MEANS[k] <= summary.high
            x = s[c == k]
            half = 1.96 * x.std(ddof=1) / math.sqrt(x.size)
            naive_covered += abs(x.mean() - TRUE_MEANS[k]) <= half
            total += 1
    coverage, naive = covered / total, naive_covered / total
    assert 0.88 <= coverage <= 0.99, coverage
    assert naive < 0.75, naive


def test_crossed_bootstrap_values_and_determinism():
    rng = np.random.default_rng(1)
    r, i, c, s = simulate(rng, n_raters=6, n_items=5)
    a = crossed_bootstrap(r, i, c, s, 3, n_resamples=300, seed=7)
    b = crossed_bootstrap(r, i, c, s, 3, n_resamples=300, seed=7)
    assert a == b
    for k, summary in enumerate(a):
        assert summary.mean == pytest.approx(s[c == k].mean())
        assert summary.low < summary.mean < summary.high
        assert (summary.n_ratings, summary.n_raters, summary.n_items, summary.n_resamples) == (30, 6, 5, 300)
    # A condition nobody rated has no summary; constant scores give a zero-width interval.
    out = crossed_bootstrap([0, 1, 0, 1], [0, 0, 1, 1], [0, 0, 0, 0], [3, 3, 3, 3], 2, n_resamples=50)
    assert out[1] is None and (out[0].low, out[0].mean, out[0].high) == (3, 3, 3)
    with pytest.raises(ValueError, match="finite"):
        crossed_bootstrap([0], [0], [0], [float("nan")], 1)


def test_attention_screening_removes_inattentive_raters():
    """Attentive raters rate the noise trap 1 or 2; inattentive ones click at random (1-5). With six
    checks each, nearly every inattentive rater is excluded and no attentive one is."""
    rng = np.random.default_rng(2)
    checks = {}
    for rater in range(40):
        inattentive = rater % 2 == 1
        scores = rng.integers(1, 6, 6) if inattentive else rng.integers(1, 3, 6)
        checks[f"r{rater}"] = [(float(x), 1, 2) for x in scores]
    excluded = attention_screening(checks, max_fail_fraction=0.25)
    inattentive = {f"r{k}" for k in range(1, 40, 2)}
    assert set(excluded) <= inattentive
    assert len(excluded) >= 17
    reason = excluded[sorted(excluded)[0]]
    assert "attention-check answers" in reason and "of 6" in reason


def test_screening_restores_means_of_attentive_raters():
    """Random clickers pull every mean towards 3; after attention screening the intervals cover the
    true means again."""
    rng = np.random.default_rng(3)
    r, i, c, s = simulate(rng, n_raters=16, n_items=10, rater_sd=0.2, item_sd=0.2, noise_sd=0.4,
                          means=np.array([1.5, 4.5]))
    inattentive = r >= 10  # raters 10..15 answer at random
    s = np.where(inattentive, rng.integers(1, 6, r.size), s)
    checks = {k: [(float(rng.integers(1, 6)) if k >= 10 else 1.0, 1, 2) for _ in range(6)] for k in range(16)}
    excluded = attention_screening(checks)
    keep = ~np.isin(r, list(excluded))
    before = crossed_bootstrap(r, i, c, s, 2, n_resamples=300, seed=0)
    after = crossed_bootstrap(r[keep], i[keep], c[keep], s[keep], 2, n_resamples=300, seed=0)
    assert not before[0].low <= 1.5 <= before[0].high
    assert all(summary.low <= m <= summary.high for summary, m in zip(after, (1.5, 4.5)))
    assert after[0].n_raters <= 11


def test_mushra_post_screening_bs1534():
    rng = np.random.default_rng(4)
    reference = {f"good{k}": list(rng.uniform(92, 100, 20)) for k in range(5)}
    reference["random"] = list(rng.uniform(0, 100, 20))
    reference["one-slip"] = [100] * 17 + [80] * 3          # 15%: not more than 15%, kept
    reference["two-slips"] = [100] * 16 + [80] * 4         # 20%: excluded
    anchor = {name: [30] * 20 for name in reference}
    anchor["good0"] = [95] * 5 + [30] * 15                 # mid anchor above 90 in 25% of items
    excluded = mushra_post_screening(reference, anchor)
    assert set(excluded) == {"random", "two-slips", "good0"}
    assert "hidden reference below 90 in 4 of 20" in excluded["two-slips"]
    assert "mid-range anchor above 90" in excluded["good0"]


def test_krippendorff_alpha_known_values():
    """Krippendorff (2011), 'Computing Krippendorff's alpha-reliability': 4 observers, 12 units, missing
    values; alpha = 0.743 nominal, 0.849 interval."""
    nan = None
    data = [[1, 2, 3, 3, 2, 1, 4, 1, 2, nan, nan, nan],
            [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, nan, 3],
            [nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, nan],
            [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, nan]]
    units = [[row[u] for row in data if row[u] is not None] for u in range(12)]
    assert krippendorff_alpha(units, "nominal") == pytest.approx(0.743, abs=5e-4)
    assert krippendorff_alpha(units, "interval") == pytest.approx(0.849, abs=5e-4)
    assert krippendorff_alpha([[1, 1], [2, 2], [5, 5]]) == 1.0
    assert math.isnan(krippendorff_alpha([[3, 3], [3]]))
