"""Fréchet kernel: closed forms, an independent scipy computation, and streaming properties."""
import numpy as np
import pytest
import scipy.linalg
from hypothesis import given, settings
from hypothesis import strategies as st

from metrics.frechet import GaussianStats, StackedClips, frechet_distance, frechet_from_stats


def _random_psd(rng, d):
    a = rng.standard_normal((d, d))
    return a @ a.T + 0.1 * np.eye(d)


def test_closed_form_diagonal_gaussians():
    # For diagonal covariances d^2 = |mu1-mu2|^2 + sum (s1 - s2)^2 with s the standard deviations.
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, -1.0])
    s1, s2 = np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 0.5])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((s1 - s2) ** 2)
    assert frechet_distance(mu1, np.diag(s1**2), mu2, np.diag(s2**2)) == pytest.approx(expected, rel=1e-12)


def test_closed_form_scaled_covariance():
    # S2 = c^2 S1 gives tr((S1 S2)^(1/2)) = c tr(S1), so d^2 = (1 - c)^2 tr(S1).
    rng = np.random.default_rng(0)
    s = _random_psd(rng, 8)
    mu = rng.standard_normal(8)
    assert frechet_distance(mu, s, mu, 9.0 * s) == pytest.approx(4.0 * np.trace(s), rel=1e-10)


def test_matches_independent_scipy_sqrtm():
    rng = np.random.default_rng(1)
    for d in (2, 16, 64):
        s1, s2 = _random_psd(rng, d), _random_psd(rng, d)
        mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
        covmean = scipy.linalg.sqrtm(s1 @ s2).real
        expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)
        assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)


def test_identical_sets_give_zero_even_rank_deficient():
    # Fewer vectors than dimensions (like ~900 clips vs 2048-d features): singular covariance.
    x = np.random.default_rng(2).standard_normal((10, 32))
    a, b = GaussianStats(32).update(x), GaussianStats(32).update(x)
    assert frechet_from_stats(a, b) == pytest.approx(0.0, abs=1e-9)
    assert frechet_from_stats(a, b) >= 0.0


def test_non_finite_input_is_an_error():
    mu, s = np.zeros(3), np.eye(3)
    with pytest.raises(ArithmeticError, match="non-finite"):
        frechet_distance(mu, s, np.array([0.0, np.nan, 0.0]), s)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


def test_stats_mean_and_unbiased_cov_match_numpy():
    x = np.random.default_rng(3).standard_normal((50, 6))
    stats = GaussianStats(6).update(x)
    np.testing.assert_allclose(stats.mean, x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(stats.cov, np.cov(x, rowvar=False), rtol=1e-10, atol=1e-12)


matrices = st.integers(min_value=0, max_value=2**32 - 1).map(
    lambda seed: np.random.default_rng(seed).standard_normal((40, 5)) * 3 + 1)


@settings(max_examples=30, deadline=None)
@given(matrices, st.integers(min_value=1, max_value=39))
def test_chunked_update_equals_single_update(x, cut):
    whole = GaussianStats(5).update(x)
    chunked = GaussianStats(5).update(x[:cut]).update(x[cut:])
    assert whole.n == chunked.n
    np.testing.assert_allclose(chunked.total, whole.total, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(chunked.outer, whole.outer, rtol=1e-12, atol=1e-9)


@settings(max_examples=30, deadline=None)
@given(matrices, st.integers(min_value=1, max_value=19), st.integers(min_value=20, max_value=39))
def test_merge_is_associative_and_equals_whole(x, i, j):
    a, b, c = (GaussianStats(5).update(p) for p in (x[:i], x[i:j], x[j:]))
    left, right = a.merge(b).merge(c), a.merge(b.merge(c))
    whole = GaussianStats(5).update(x)
    for s in (left, right):
        assert s.n == whole.n
        np.testing.assert_allclose(s.outer, whole.outer, rtol=1e-12, atol=1e-9)


@settings(max_examples=20, deadline=None)
@given(matrices, matrices, st.integers(min_value=0, max_value=2**32 - 1))
def test_permutation_invariant_and_non_negative(x, y, seed):
    perm = np.random.default_rng(seed).permutation(len(x))
    d = frechet_from_stats(GaussianStats(5).update(x), GaussianStats(5).update(y))
    d_perm = frechet_from_stats(GaussianStats(5).update(x[perm]), GaussianStats(5).update(y))
    assert d >= 0
    assert d_perm == pytest.approx(d, rel=1e-9, abs=1e-9)


def test_reset_clears():
    s = GaussianStats(3).update(np.ones((4, 3)))
    s.reset()
    assert s.n == 0 and not s.total.any() and not s.outer.any()


def test_stacked_clips_counts_equal_explicit_repetition():
    rng = np.random.default_rng(4)
    clips = [rng.standard_normal((k, 4)) for k in (1, 3, 2, 5)]
    counts = np.array([2, 0, 1, 3])
    explicit = GaussianStats(4).update(np.concatenate([c for c, n in zip(clips, counts) for _ in range(n)]))
    weighted = StackedClips(clips).stats(counts)
    assert weighted.n == explicit.n
    np.testing.assert_allclose(weighted.outer, explicit.outer, rtol=1e-12)
    np.testing.assert_allclose(StackedClips(clips).stats().total, np.concatenate(clips).sum(0), rtol=1e-12)


def test_rank_deficient_self_distance_is_exactly_zero_not_negative():
    # 12 vectors in 128 dimensions with large embeddings: the null space's round-off used to add up
    # to a -1e-4 distance of a set to itself.
    x = np.random.default_rng(5).standard_normal((12, 128)) * 8 + 3
    stats = GaussianStats(128).update(x)
    assert frechet_from_stats(stats, stats) == pytest.approx(0.0, abs=1e-8)


@pytest.mark.parametrize("rows_per_clip,dim", [(1, 64), (2, 40), (3, 8)])
def test_stacked_frechet_equals_the_covariance_route(rows_per_clip, dim):
    # 20 clips: with 64 and 40 dimensions the rows are fewer than the dimensions (the SVD route); with
    # 8 dimensions they are not (the covariance route). Both must give the same number.
    rng = np.random.default_rng(6)
    a = StackedClips([rng.standard_normal((rows_per_clip, dim)) * 3 + 1 for _ in range(20)])
    b = StackedClips([rng.standard_normal((rows_per_clip, dim)) for _ in range(15)])
    ca, cb = rng.multinomial(20, [1 / 20] * 20), rng.multinomial(15, [1 / 15] * 15)
    for counts in ((None, None), (ca, cb)):
        expected = frechet_from_stats(a.stats(counts[0]), b.stats(counts[1]))
        assert a.frechet(b, *counts) == pytest.approx(expected, rel=1e-10)
    assert a.frechet(a) == pytest.approx(0.0, abs=1e-8)  # rank-deficient self-distance, SVD route


def test_stacked_frechet_rejects_nan_and_single_vectors():
    good = StackedClips([np.ones((1, 8)), np.zeros((1, 8))])
    with pytest.raises(ArithmeticError, match="NaN"):
        StackedClips([np.full((1, 8), np.nan), np.zeros((1, 8))]).frechet(good)
    with pytest.raises(ValueError, match="at least 2 vectors"):
        good.frechet(good, np.array([1, 0]))


def _fadtk_individual(clip, reference):
    """fadtk score_individual: np.mean / np.cov of the clip's frames against the reference set's, pytorch-fid's
    formula with scipy's sqrtm."""
    mu1, s1 = reference.mean(0), np.cov(reference, rowvar=False)
    mu2, s2 = clip.mean(0), np.cov(clip, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1.dot(s2)).real
    return float((mu1 - mu2) @ (mu1 - mu2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def test_per_clip_frechet_is_fadtks_individual_score_and_a_point_mass_for_one_row():
    from metrics.frechet import per_clip_frechet

    rng = np.random.default_rng(0)
    reference = rng.standard_normal((300, 6)) @ rng.standard_normal((6, 6))
    clips = [rng.standard_normal((k, 6)) + shift for k, shift in ((20, 0.0), (40, 3.0), (7, -1.0))]
    ours = per_clip_frechet(clips, GaussianStats(6).update(reference))
    assert ours == pytest.approx([_fadtk_individual(c, reference) for c in clips], rel=1e-9)
    assert ours[1] > ours[0]  # the shifted clip stands out
    # A clip with fewer frames than dimensions (rank-deficient covariance) still matches.
    short = rng.standard_normal((3, 6))
    assert per_clip_frechet([short], GaussianStats(6).update(reference))[0] == pytest.approx(
        _fadtk_individual(short, reference), rel=1e-6)
    # One embedding: the Fréchet distance of a point mass, |x - mu|^2 + tr(S_ref).
    x = rng.standard_normal((1, 6))
    expected = float(np.sum((x[0] - reference.mean(0)) ** 2) + np.trace(np.cov(reference, rowvar=False)))
    assert per_clip_frechet([x], GaussianStats(6).update(reference)) == pytest.approx([expected], rel=1e-12)


def test_frechet_metric_reports_every_clip_with_embeddings_in_its_per_clip_table():
    from metrics.frechet import frechet_metric
    from metrics.inputs import ScoreOptions, SetEmbeddings

    rng = np.random.default_rng(1)
    gen_rows = [rng.standard_normal((5, 4)), np.zeros((0, 4)), rng.standard_normal((5, 4)) + 10]
    gen = SetEmbeddings({"source": "g"}, ["a", "silent", "odd"], [None] * 3, {"embedding": gen_rows},
                        [1.0] * 3, [False, True, False])
    ref = SetEmbeddings({"source": "r"}, ["x", "y"], [None] * 2,
                        {"embedding": [rng.standard_normal((30, 4)), rng.standard_normal((30, 4))]}, [1.0] * 2,
                        [False] * 2)
    result = frechet_metric(gen, ref, ScoreOptions(bootstrap=0, progress=False))
    rows = {r["id"]: r for r in result["per_clip"]}
    assert set(rows) == {"a", "odd"} and rows["odd"]["embeddings"] == 5
    assert rows["odd"]["value"] > 10 * rows["a"]["value"]
    assert "fadtk --indiv" in result["details"]["per_clip"]
