"""FAD-inf: the Fréchet distance extrapolated to an infinitely large generated set.

FD computed on n samples is biased upwards by roughly c/n, so sets of different sizes (and small ones,
e.g. ~950 AudioCaps clips against 2048-d PANNs features) are not comparable. The procedure of fadtk
(microsoft/fadtk, fadtk/fad.py, `FrechetAudioDistance.score_inf`), our code:
- the reference statistics come from the whole reference set; only the generated set is subsampled;
- the samples are embedding rows (frames), drawn uniformly WITH replacement;
- subset sizes: int(n) for n in linspace(min_n, N, steps), min_n = 500, steps = 25, N = number of rows;
- FD of each subset against the reference; ordinary least squares FD = intercept + slope / n;
  FAD-inf = the intercept, reported with R^2 = 1 - SS_res / SS_tot of that fit and the points.
Draws come from numpy's legacy RandomState(seed).choice, exactly what fadtk's np.random.choice draws
after np.random.seed(seed) (fadtk itself does not seed). Deliberate difference: with fewer than
2 * 500 rows, min_n is half the rows (fadtk would draw subsets larger than the set), so small sets
still span a factor of 2 in n. The intercept is an extrapolation: it can fall below 0 and is reported as is.

Confidence interval: the OLS t-interval of the intercept (steps - 2 degrees of freedom). It measures how
well the 25 subset FDs pin down the line (their scatter includes the subsampling noise), not the
sampling variability of the reference set; a clip bootstrap would cost 25 FDs per resample.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats as scipy_stats

from metrics.frechet import GaussianStats

STEPS = 25  # fadtk default
MIN_N = 500  # fadtk default
_ROUNDOFF = 1e-9  # as metrics.frechet: relative size under which a negative value is round-off
CI_METHOD = ("OLS t-interval of the intercept of FD against 1/n over the subsets (steps - 2 degrees of "
             "freedom); reflects the fit, not the reference set's sampling variability")
CI_COVERS = ("the extrapolated intercept for THESE two sets (how well the subset FDs pin the line down); NOT the "
             "population FD: neither set's sampling variability nor the reference set's bias is in it")


class ReferenceGaussian:
    """N(mu, S) of a reference set, with sqrt(S) computed once for the many FDs FAD-inf evaluates.

    tr((S R)^(1/2)) for the fit R of rows A (centred, scaled by 1/sqrt(n-1)) is the sum of square roots
    of the eigenvalues of (A sqrt(S)) (A sqrt(S))^T, an n x n matrix when n < d: same value as
    metrics.frechet with a d x d eigenproblem, much cheaper for 2048-d features and a few hundred rows.
    """

    def __init__(self, stats: GaussianStats):
        self.mean = stats.mean
        cov = stats.cov
        vals, vecs = np.linalg.eigh((cov + cov.T) / 2)
        self.root = (vecs * np.sqrt(np.clip(vals, 0.0, None))) @ vecs.T
        self.trace = float(np.trace(cov))

    def distance(self, rows: np.ndarray) -> float:
        """Squared Fréchet distance between this Gaussian and the (n-1) Gaussian fit of `rows`."""
        rows = np.asarray(rows, np.float64)
        n, d = rows.shape
        if n < 2:
            raise ValueError(f"a covariance needs at least 2 vectors, got {n}")
        mu = rows.mean(axis=0)
        centred = rows - mu
        a = centred @ self.root / np.sqrt(n - 1)
        gram = a @ a.T if n < d else a.T @ a
        vals = np.linalg.eigvalsh((gram + gram.T) / 2)
        scale = max(float(np.abs(vals).max(initial=0.0)), 1.0)
        if vals.min(initial=0.0) < -_ROUNDOFF * scale * len(vals):
            raise ArithmeticError(f"covariance product has a clearly negative eigenvalue ({vals.min():.3g})")
        vals[vals < len(vals) * np.finfo(np.float64).eps * scale] = 0.0
        trace_fit = float(np.einsum("ij,ij->", centred, centred)) / (n - 1)
        diff = mu - self.mean
        d2 = float(diff @ diff + self.trace + trace_fit - 2.0 * np.sqrt(vals).sum())
        if not np.isfinite(d2) or d2 < -_ROUNDOFF * max(self.trace + trace_fit, 1.0) * d:
            raise ArithmeticError(f"Fréchet distance came out as {d2!r}")
        return max(d2, 0.0)


def subset_sizes(n_rows: int, steps: int = STEPS, min_n: int = MIN_N) -> list[int]:
    low = min(min_n, n_rows // 2)
    if low < 2 or steps < 3:
        raise ValueError(f"FAD-inf needs at least 4 embeddings and 3 steps, got {n_rows} and {steps}")
    return [int(n) for n in np.linspace(low, n_rows, steps)]


def subset_indices(seed: int, n_rows: int, sizes: list[int]):
    """Row indices of each subset, drawn with replacement (fadtk's draws after np.random.seed(seed))."""
    rng = np.random.RandomState(seed)
    for n in sizes:
        yield rng.choice(n_rows, size=n, replace=True)


@dataclass(frozen=True)
class LineFit:
    intercept: float
    slope: float
    r2: float | None  # None when every y is the same (R^2 undefined)
    intercept_stderr: float
    low: float
    high: float
    level: float


def fit_inverse_n(sizes, values, level: float = 0.95) -> LineFit:
    """OLS of values against 1/sizes, with R^2 and the t-interval of the intercept."""
    x = 1.0 / np.asarray(sizes, np.float64)
    y = np.asarray(values, np.float64)
    k = len(x)
    x_mean, y_mean = x.mean(), y.mean()
    sxx = float(((x - x_mean) ** 2).sum())
    if k < 3 or sxx == 0.0:
        raise ValueError("FAD-inf needs at least 3 distinct subset sizes")
    slope = float(((x - x_mean) * (y - y_mean)).sum() / sxx)
    intercept = float(y_mean - slope * x_mean)
    ss_res = float(((y - intercept - slope * x) ** 2).sum())
    ss_tot = float(((y - y_mean) ** 2).sum())
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else None
    stderr = float(np.sqrt(ss_res / (k - 2) * (1.0 / k + x_mean ** 2 / sxx)))
    half = float(scipy_stats.t.ppf(0.5 + level / 2, k - 2)) * stderr
    return LineFit(intercept, slope, r2, stderr, intercept - half, intercept + half, level)


def fad_inf(generated_rows: np.ndarray, reference: GaussianStats, seed: int, steps: int = STEPS,
            min_n: int = MIN_N, level: float = 0.95) -> dict:
    """FAD-inf of generated embedding rows [N, d] against reference statistics; a JSON-ready dict."""
    rows = np.asarray(generated_rows, np.float64)
    ref = ReferenceGaussian(reference)
    sizes = subset_sizes(len(rows), steps, min_n)
    points = [(n, ref.distance(rows[idx])) for n, idx in zip(sizes, subset_indices(seed, len(rows), sizes))]
    fit = fit_inverse_n([n for n, _ in points], [v for _, v in points], level)
    return {"fit": asdict(fit), "points": [[n, v] for n, v in points], "sizes": sizes, "seed": seed,
            "steps": steps, "min_n": sizes[0], "n_embeddings": len(rows), "fd_all_embeddings": ref.distance(rows)}
