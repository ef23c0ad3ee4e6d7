"""FAD-inf (metrics.fad_inf): fadtk's extrapolation of FD to infinite n, and its registered metrics."""
import numpy as np
import pytest
from scipy import stats as scipy_stats

from metrics.bootstrap import content_order
from metrics.inputs import ScoreOptions, SetEmbeddings
from metrics import fad_inf as fi
from metrics.frechet import GaussianStats, frechet_distance, frechet_from_stats
from metrics.registry import get_metric


def exact_stats(mu, cov, n=10 ** 6):
    """Running sums whose mean and (n-1) covariance are exactly mu and cov."""
    return GaussianStats(len(mu), n, n * mu, (n - 1) * cov + n * np.outer(mu, mu))


@pytest.fixture(scope="module")
def gaussians():
    d = 64
    rng = np.random.default_rng(0)
    a = rng.standard_normal((d, d)) / np.sqrt(d)
    mu_g, cov_g = 0.3 * rng.standard_normal(d), a @ a.T + 0.5 * np.eye(d)
    rows = rng.multivariate_normal(mu_g, cov_g, size=20000)
    reference = exact_stats(np.zeros(d), np.eye(d))
    return rows, reference, frechet_distance(mu_g, cov_g, np.zeros(d), np.eye(d))


def test_intercept_recovers_the_true_distance(gaussians):
    rows, reference, true = gaussians
    result = fi.fad_inf(rows, reference, seed=0)
    fit = result["fit"]
    smallest = result["points"][0][1]  # FD on 500 rows: biased upwards by ~c/500
    assert smallest - true > 2.0
    # What remains is the c/N bias of the 20000-row set itself (~0.07 here) plus subsampling noise.
    assert abs(fit["intercept"] - true) < 0.15
    assert fit["slope"] > 0 and 0.9 < fit["r2"] <= 1.0
    assert fit["low"] < fit["intercept"] < fit["high"]
    assert [n for n, _ in result["points"]] == result["sizes"] == fi.subset_sizes(20000)
    assert result["sizes"][0] == 500 and result["sizes"][-1] == 20000 and len(result["sizes"]) == 25


def test_deterministic_given_the_seed(gaussians):
    rows, reference, _ = gaussians
    rows = rows[:3000]
    assert fi.fad_inf(rows, reference, seed=3) == fi.fad_inf(rows, reference, seed=3)
    assert fi.fad_inf(rows, reference, seed=3)["points"] != fi.fad_inf(rows, reference, seed=4)["points"]


def test_draws_are_fadtks_after_np_random_seed():
    sizes = fi.subset_sizes(1200)
    ours = list(fi.subset_indices(7, 1200, sizes))
    np.random.seed(7)
    theirs = [np.random.choice(1200, size=n, replace=True) for n in sizes]  # fadtk's draw, seeded
    assert all(np.array_equal(a, b) for a, b in zip(ours, theirs))


def test_subset_sizes():
    assert fi.subset_sizes(5000) == [int(n) for n in np.linspace(500, 5000, 25)]  # fadtk's defaults
    assert fi.subset_sizes(300)[0] == 150 and fi.subset_sizes(300)[-1] == 300  # small sets: half the rows
    with pytest.raises(ValueError, match="at least 4 embeddings"):
        fi.subset_sizes(3)


def test_line_fit_matches_numpy_and_scipy():
    rng = np.random.default_rng(1)
    sizes = np.array(fi.subset_sizes(4000))
    values = 3.0 + 800.0 / sizes + rng.normal(0, 0.05, len(sizes))
    fit = fi.fit_inverse_n(sizes, values, level=0.9)
    slope, intercept = np.polyfit(1 / sizes, values, 1)  # fadtk's fit
    reference = scipy_stats.linregress(1 / sizes, values)
    assert fit.intercept == pytest.approx(intercept, rel=1e-9) and fit.slope == pytest.approx(slope, rel=1e-9)
    r2 = 1 - np.sum((values - (slope / sizes + intercept)) ** 2) / np.sum((values - values.mean()) ** 2)
    assert fit.r2 == pytest.approx(r2, rel=1e-9) == pytest.approx(reference.rvalue ** 2, rel=1e-9)
    assert fit.intercept_stderr == pytest.approx(reference.intercept_stderr, rel=1e-9)
    half = scipy_stats.t.ppf(0.95, len(sizes) - 2) * reference.intercept_stderr
    assert (fit.low, fit.high) == pytest.approx((intercept - half, intercept + half), rel=1e-9)
    assert fi.fit_inverse_n(sizes, np.full(len(sizes), 2.0)).r2 is None  # flat: R^2 undefined, not NaN


@pytest.mark.parametrize("n", [5, 40, 300])
def test_reference_gaussian_distance_equals_the_frechet_kernel(n):
    rng = np.random.default_rng(n)
    reference = GaussianStats(40).update(rng.standard_normal((120, 40)) * 1.7 + 0.2)
    rows = rng.standard_normal((n, 40)) @ rng.standard_normal((40, 40)) * 0.3
    fast = fi.ReferenceGaussian(reference).distance(rows)
    assert fast == pytest.approx(frechet_from_stats(reference, GaussianStats(40).update(rows)), rel=1e-9)


def _embeddings(per_clip, prefix):
    ids = [f"{prefix}{i}" for i in range(len(per_clip))]
    return SetEmbeddings({"source": prefix}, ids, [None] * len(ids), {"embedding": per_clip},
                         [1.0] * len(ids), [False] * len(ids))


def test_registered_metric_reports_intercept_r2_and_its_interval():
    rng = np.random.default_rng(2)
    gen = _embeddings([rng.standard_normal((3, 6)) + 0.5 for _ in range(100)] + [np.zeros((0, 6))], "g")
    ref = _embeddings([rng.standard_normal((2, 6)) for _ in range(80)], "r")
    metric = get_metric("fad-inf-vggish@audioldm")
    result = metric.compute(gen, ref, ScoreOptions(bootstrap=10, bootstrap_seed=5))
    clips = gen.nonempty()
    in_content_order = np.concatenate([clips[i] for i in content_order(clips)])
    expected = fi.fad_inf(in_content_order, GaussianStats(6).update(np.concatenate(ref.per_clip())), 5)
    assert result["value"] == pytest.approx(expected["fit"]["intercept"], rel=1e-9)
    details = result["details"]
    assert details["r2"] == pytest.approx(expected["fit"]["r2"], rel=1e-9)
    assert details["n_embeddings"] == 300 and details["sizes"][0] == 150 and len(details["points"]) == 25
    assert result["ci"]["method"].startswith("OLS t-interval") and result["ci"]["low"] < result["value"]
    assert metric.compute(gen, ref, ScoreOptions(bootstrap=0, bootstrap_seed=5))["ci"] is None
    assert "NOT the population FD" in result["ci"]["covers"]
    # Clip order (file names) does not move the value: subsets are drawn over rows in content order.
    shuffled = gen.subset(np.random.default_rng(0).permutation(len(gen.clip_ids)))
    assert metric.compute(shuffled, ref, ScoreOptions(bootstrap=10, bootstrap_seed=5))["value"] == result["value"]
