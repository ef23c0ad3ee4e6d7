"""KAD kernel (metrics.kad) and the FAD-inf / KAD variants registered for every Fréchet metric."""
import dataclasses
import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import pdist

from metrics.inputs import ScoreOptions, SetEmbeddings
from metrics import kad
from metrics.registry import METRICS, MetricDef, all_metrics, get_metric, register_metric


def direct_kad(gen, ref, bandwidth):
    """kadtk's estimator written out pair by pair, as plainly as possible."""
    gamma = 1.0 / (2 * bandwidth ** 2 + 1e-8)
    k = lambda a, b: math.exp(-gamma * float(((a - b) ** 2).sum()))  # noqa: E731
    m, n = len(ref), len(gen)
    xx = sum(k(ref[i], ref[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(gen[i], gen[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(ref[i], gen[j]) for i in range(m) for j in range(n)) / (m * n)
    return 100 * (xx + yy - 2 * xy)


def lower_median_pdist(x):
    d = np.sort(pdist(x))
    return d[(len(d) - 1) // 2]


def test_matches_a_direct_pairwise_loop():
    rng = np.random.default_rng(0)
    ref, gen = rng.standard_normal((14, 3)), rng.standard_normal((11, 3)) * 1.5 + 0.3
    sigma = lower_median_pdist(ref)
    assert kad.kernel_audio_distance(gen, ref) == pytest.approx(direct_kad(gen, ref, sigma), rel=1e-12)
    assert kad.kernel_audio_distance(gen, ref, bandwidth=0.7) == pytest.approx(direct_kad(gen, ref, 0.7), rel=1e-12)


def test_bandwidth_is_the_lower_median_of_reference_distances_like_torch():
    rng = np.random.default_rng(1)
    ref = rng.standard_normal((40, 6))  # 780 pairs: an even count, so lower median != midpoint
    sigma = kad.median_pairwise_distance(kad.ClipRows([ref]))
    assert sigma == pytest.approx(lower_median_pdist(ref), rel=1e-12)
    assert sigma == pytest.approx(torch.median(torch.pdist(torch.tensor(ref))).item(), rel=1e-12)  # kadtk's call


def test_bandwidth_comes_from_the_reference_only():
    rng = np.random.default_rng(2)
    ref = [rng.standard_normal((3, 4)) for _ in range(10)]
    a = kad.KADStats.from_clips([rng.standard_normal((3, 4)) for _ in range(8)], ref)
    b = kad.KADStats.from_clips([5 * rng.standard_normal((2, 4)) + 3 for _ in range(20)], ref)
    assert a.bandwidth == b.bandwidth == pytest.approx(lower_median_pdist(np.concatenate(ref)), rel=1e-12)
    assert a.value() != b.value()
    # Swapping the roles changes the bandwidth: KAD is not symmetric, by design.
    swapped = kad.KADStats.from_clips(ref, [rng.standard_normal((3, 4)) for _ in range(8)])
    assert swapped.bandwidth != a.bandwidth


def test_blockwise_equals_one_block_for_sums_and_median():
    rng = np.random.default_rng(3)
    gen = [rng.standard_normal((int(k), 5)) for k in rng.integers(0, 6, 30)]  # some clips without rows
    ref = [rng.standard_normal((int(k), 5)) + 0.2 for k in rng.integers(1, 6, 25)]
    whole = kad.KADStats.from_clips(gen, ref, block=10_000)
    small = kad.KADStats.from_clips(gen, ref, block=7)
    np.testing.assert_allclose(small.s_xx, whole.s_xx, rtol=1e-12)
    np.testing.assert_allclose(small.s_yy, whole.s_yy, rtol=1e-12)
    np.testing.assert_allclose(small.s_xy, whole.s_xy, rtol=1e-12)
    assert small.value() == pytest.approx(whole.value(), rel=1e-12)
    rows = kad.ClipRows(ref)
    # Few candidates allowed: forces extra narrowing passes.
    assert kad.median_pairwise_distance(rows, block=9, max_candidates=3) == kad.median_pairwise_distance(rows)
    totals = kad.KADStats.from_clips(gen, ref, per_clip=False, block=11)
    assert totals.s_xx.shape == (1, 1) and totals.value() == pytest.approx(whole.value(), rel=1e-12)


def test_median_with_ties_and_duplicates():
    x = np.array([[0.0], [1.0], [1.0], [1.0], [3.0]])
    assert kad.median_pairwise_distance(kad.ClipRows([x]), max_candidates=1) == lower_median_pdist(x)
    with pytest.raises(ArithmeticError, match="bandwidth is undefined"):
        kad.KADStats.from_clips([np.ones((3, 2))], [np.zeros((4, 2)), np.zeros((2, 2))])


def _kad_without_copy_pairs(gen, ref, cg, cr, bandwidth):
    """KAD of the repeated clips by brute force, leaving out pairs between copies of the same clip."""
    def side(clips, counts):
        rows = [(a, c, r) for a, clip in enumerate(clips) for c in range(counts[a]) for r in clip]
        return np.array([r for _, _, r in rows]), np.array([a for a, _, _ in rows]), np.array([c for _, c, _ in rows])

    x, xa, xc = side(ref, cr)
    y, ya, yc = side(gen, cg)
    k = lambda a, b: np.exp(-((a[:, None] - b[None]) ** 2).sum(-1) / (2 * bandwidth ** 2 + 1e-8))  # noqa: E731

    def within(rows, owner, copy):
        keep = (owner[:, None] != owner[None]) | (copy[:, None] == copy[None])
        np.fill_diagonal(keep, False)
        return k(rows, rows)[keep].mean()

    return 100 * (within(x, xa, xc) + within(y, ya, yc) - 2 * k(x, y).mean())


def test_resampled_value_is_kad_of_the_repeated_clips_without_copy_pairs():
    rng = np.random.default_rng(4)
    gen = [rng.standard_normal((int(k), 3)) for k in rng.integers(1, 4, 9)]
    ref = [rng.standard_normal((int(k), 3)) for k in rng.integers(1, 4, 7)]
    stats = kad.KADStats.from_clips(gen, ref)
    cg, cr = rng.multinomial(9, np.full(9, 1 / 9)), rng.multinomial(7, np.full(7, 1 / 7))
    expected = _kad_without_copy_pairs(gen, ref, cg, cr, stats.bandwidth)
    assert stats.value(cg, cr) == pytest.approx(expected, rel=1e-10)
    # All counts 1: the plain unbiased KAD.
    ones = _kad_without_copy_pairs(gen, ref, np.ones(9, int), np.ones(7, int), stats.bandwidth)
    assert stats.value() == pytest.approx(ones, rel=1e-10)


def test_same_distribution_is_near_zero_and_may_be_negative():
    rng = np.random.default_rng(5)
    ref = rng.standard_normal((300, 8))
    same = [kad.kernel_audio_distance(rng.standard_normal((300, 8)), ref) for _ in range(6)]
    shifted = kad.kernel_audio_distance(rng.standard_normal((300, 8)) + 0.5, ref)
    assert max(abs(v) for v in same) < 0.05 * shifted
    assert min(same) < 0 < max(same)  # unbiased: scatters around 0, reported as is (never clipped)


def _embeddings(per_clip, prefix):
    ids = [f"{prefix}{i}" for i in range(len(per_clip))]
    return SetEmbeddings({"source": prefix}, ids, [None] * len(ids), {"embedding": per_clip},
                         [1.0] * len(ids), [False] * len(ids))


def test_kad_metric_reports_negative_values_and_a_bootstrap_ci():
    rng = np.random.default_rng(6)
    ref = _embeddings([rng.standard_normal((4, 5)) for _ in range(30)], "r")
    gen = _embeddings([rng.standard_normal((4, 5)) for _ in range(30)], "g")
    metric = get_metric("kad-vggish@audioldm")
    result = metric.compute(gen, ref, ScoreOptions(bootstrap=50, bootstrap_seed=1))
    assert result["value"] == pytest.approx(kad.kernel_audio_distance(np.concatenate(gen.per_clip()),
                                                                      np.concatenate(ref.per_clip())), rel=1e-12)
    ci = result["ci"]
    assert ci["n_resamples"] == 50 and ci["low"] <= result["value"] <= ci["high"]
    assert result["details"]["bandwidth"] == pytest.approx(lower_median_pdist(np.concatenate(ref.per_clip())))
    assert result["details"]["n_reference_embeddings"] == 120
    again = metric.compute(gen, ref, ScoreOptions(bootstrap=50, bootstrap_seed=1))
    assert again == result  # seeded
    assert metric.compute(gen, ref, ScoreOptions(bootstrap=0))["ci"] is None


def test_variants_exist_for_every_frechet_metric_on_the_same_protocol():
    metrics = all_metrics()
    frechet = [m for m in metrics.values() if m.family == "frechet"]
    assert {"fad-vggish@audioldm", "fad-vggish@google"} <= {m.id for m in frechet}
    for base in frechet:
        head, _, backbone = base.name.partition("-")
        for vid, family in ((f"{head}-inf-{backbone}@{base.preset}", "frechet-inf"),
                            (f"kad-{backbone}@{base.preset}", "kad")):
            variant = metrics[vid]
            assert variant.protocol is base.protocol and variant.output == base.output  # same cached embeddings
            assert variant.family == family and variant.direction == "lower" and variant.kind == "set"


def test_frechet_metrics_registered_later_still_get_variants():
    all_metrics()
    base = dataclasses.replace(get_metric("fad-vggish@audioldm"), name="fd-testbackbone", preset="later")
    register_metric(base)
    try:
        assert {"fd-inf-testbackbone@later", "kad-testbackbone@later"} <= set(METRICS)
        assert METRICS["kad-testbackbone@later"].protocol is base.protocol
        # A second Fréchet metric on the same embeddings shares the KAD variant instead of clashing.
        register_metric(dataclasses.replace(base, name="fad-testbackbone"))
        assert "fad-inf-testbackbone@later" in METRICS
        # ...but one on another protocol under the same name is an error naming both.
        other = dataclasses.replace(get_metric("fad-vggish@google"), name="fad2-testbackbone", preset="later")
        with pytest.raises(ValueError, match="kad-testbackbone@later"):
            register_metric(other)
    finally:
        for mid in [m for m in METRICS if m.endswith("@later")]:
            del METRICS[mid]


def test_non_frechet_metrics_get_no_variants():
    all_metrics()
    plain = MetricDef(name="is-testbackbone", preset="x", version=1, direction="higher",
                      protocol=get_metric("fad-vggish@audioldm").protocol, summary="", lineage="",
                      compute=lambda g, r, o: {"value": 0.0}, kind="generated")
    register_metric(plain)
    try:
        assert not [m for m in METRICS if m.endswith("testbackbone@x") and m != plain.id]
    finally:
        del METRICS[plain.id]
