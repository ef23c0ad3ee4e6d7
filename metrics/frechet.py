"""Fréchet distance between Gaussian fits of two embedding sets (FAD, FD and friends).

Statistics are float64 running sums (n, sum x, sum x x^T), so sets stream in bounded memory and
shards merge exactly. The trace term uses the eigenvalues of sqrt(S1) S2 sqrt(S1), which is symmetric
PSD, instead of scipy.linalg.sqrtm (complex or non-finite on some SciPy versions). With fewer vectors
than dimensions (e.g. 1000 clips of 2048-d PANNs embeddings, and every bootstrap resample of them) the
same number comes from the vectors themselves, without any d x d matrix: see `StackedClips.frechet`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from metrics.bootstrap import bootstrap_interval, content_order

# Relative size under which a negative eigenvalue or distance is float round-off, not a real failure.
_ROUNDOFF = 1e-9


@dataclass
class GaussianStats:
    """Sufficient statistics of a set of d-dimensional vectors."""

    dim: int
    n: int = 0
    total: np.ndarray | None = None
    outer: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.total is None:
            self.total = np.zeros(self.dim, dtype=np.float64)
        if self.outer is None:
            self.outer = np.zeros((self.dim, self.dim), dtype=np.float64)

    def update(self, x: np.ndarray) -> "GaussianStats":
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"expected embeddings of shape [n, {self.dim}], got {list(x.shape)}")
        self.n += x.shape[0]
        self.total += x.sum(axis=0)
        self.outer += x.T @ x
        return self

    def merge(self, other: "GaussianStats") -> "GaussianStats":
        if other.dim != self.dim:
            raise ValueError(f"cannot merge statistics of dimension {self.dim} and {other.dim}")
        return GaussianStats(self.dim, self.n + other.n, self.total + other.total, self.outer + other.outer)

    def reset(self) -> None:
        self.n = 0
        self.total[:] = 0.0
        self.outer[:] = 0.0

    @property
    def mean(self) -> np.ndarray:
        return self.total / self.n

    @property
    def cov(self) -> np.ndarray:
        """Unbiased (n-1) covariance."""
        if self.n < 2:
            raise ValueError(f"a covariance needs at least 2 vectors, got {self.n}")
        mu = self.mean
        return (self.outer - self.n * np.outer(mu, mu)) / (self.n - 1)


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    vals, vecs = np.linalg.eigh((s + s.T) / 2)
    return (vecs * np.sqrt(np.clip(vals, 0.0, None))) @ vecs.T


def trace_sqrt_product(s1: np.ndarray, s2: np.ndarray) -> float:
    """tr((S1 S2)^(1/2)) for symmetric PSD S1, S2."""
    r = _psd_sqrt(s1)
    m = r @ s2 @ r
    vals = np.linalg.eigvalsh((m + m.T) / 2)
    scale = max(float(np.abs(vals).max(initial=0.0)), 1.0)
    if vals.min(initial=0.0) < -_ROUNDOFF * scale * len(vals):
        raise ArithmeticError(f"covariance product has a clearly negative eigenvalue ({vals.min():.3g}); "
                              "the covariances are not positive semi-definite")
    # Eigenvalues below float64 resolution are zeros: sqrt would turn their ~1e-12 round-off into ~1e-6
    # each, which over a rank-deficient covariance (fewer vectors than dimensions) adds up visibly.
    vals[vals < len(vals) * np.finfo(np.float64).eps * scale] = 0.0
    return float(np.sqrt(vals).sum())


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """Squared Fréchet distance between N(mu1, cov1) and N(mu2, cov2); finite and >= 0 or an error."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    cov1, cov2 = np.asarray(cov1, np.float64), np.asarray(cov2, np.float64)
    if mu1.shape != mu2.shape or cov1.shape != cov2.shape or cov1.shape != mu1.shape * 2:
        raise ValueError(f"shape mismatch: mu {mu1.shape} vs {mu2.shape}, cov {cov1.shape} vs {cov2.shape}")
    for name, arr in (("mu1", mu1), ("mu2", mu2), ("cov1", cov1), ("cov2", cov2)):
        if not np.all(np.isfinite(arr)):
            raise ArithmeticError(f"{name} has non-finite values; the embeddings contain NaN or Inf")
    diff = mu1 - mu2
    d2 = float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2.0 * trace_sqrt_product(cov1, cov2))
    scale = max(float(np.trace(cov1) + np.trace(cov2)), 1.0)
    if not np.isfinite(d2) or d2 < -_ROUNDOFF * scale * len(mu1):
        raise ArithmeticError(f"Fréchet distance came out as {d2!r}")
    return max(d2, 0.0)


def frechet_from_stats(a: GaussianStats, b: GaussianStats) -> float:
    return frechet_distance(a.mean, a.cov, b.mean, b.cov)


def _centred(rows: np.ndarray, weights: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """(n, mean, Y) with cov = Y^T Y / (n - 1) for rows taken `weights` times each."""
    keep = weights > 0
    rows, weights = rows[keep], weights[keep]
    n = float(weights.sum())
    if n < 2:
        raise ValueError(f"a covariance needs at least 2 vectors, got {n:g}")
    mu = weights @ rows / n
    return n, mu, (rows - mu) * np.sqrt(weights)[:, None]


def frechet_low_rank(n1: float, mu1: np.ndarray, y1: np.ndarray, n2: float, mu2: np.ndarray, y2: np.ndarray) -> float:
    """Squared Fréchet distance for cov_i = Y_i^T Y_i / (n_i - 1), in O(r1 r2 d) for r_i rows of Y_i.

    The non-zero eigenvalues of cov1 cov2 are those of (Y2 Y1^T)(Y1 Y2^T) / ((n1-1)(n2-1)), so
    tr((cov1 cov2)^(1/2)) is the sum of the singular values of Y1 Y2^T / sqrt((n1-1)(n2-1))."""
    for name, arr in (("mu1", mu1), ("mu2", mu2), ("embeddings 1", y1), ("embeddings 2", y2)):
        if not np.all(np.isfinite(arr)):
            raise ArithmeticError(f"{name} has non-finite values; the embeddings contain NaN or Inf")
    sv = np.linalg.svd(y1 @ y2.T, compute_uv=False) / np.sqrt((n1 - 1) * (n2 - 1))
    # As in trace_sqrt_product: values at float64 resolution are zeros, not sqrt-amplified round-off.
    sv[sv < max(y1.shape[0], y2.shape[0]) * np.finfo(np.float64).eps * max(float(sv.max(initial=0.0)), 1.0)] = 0.0
    tr1, tr2 = float(np.sum(y1 * y1)) / (n1 - 1), float(np.sum(y2 * y2)) / (n2 - 1)
    diff = mu1 - mu2
    d2 = float(diff @ diff + tr1 + tr2 - 2.0 * sv.sum())
    if not np.isfinite(d2) or d2 < -_ROUNDOFF * max(tr1 + tr2, 1.0) * len(mu1):
        raise ArithmeticError(f"Fréchet distance came out as {d2!r}")
    return max(d2, 0.0)


class StackedClips:
    """Per-clip embedding matrices stacked once, so a resample with clip multiplicities is one matmul."""

    def __init__(self, per_clip: list[np.ndarray]):
        if not per_clip:
            raise ValueError("no clips")
        self.n_clips = len(per_clip)
        self.rows = np.concatenate([np.asarray(e, np.float64) for e in per_clip], axis=0)
        self.owner = np.repeat(np.arange(self.n_clips), [len(e) for e in per_clip])

    def stats(self, counts: np.ndarray | None = None) -> GaussianStats:
        """Statistics of the clips taken `counts[i]` times each (all once when counts is None)."""
        w = np.ones(len(self.rows)) if counts is None else np.asarray(counts, np.float64)[self.owner]
        weighted = self.rows * w[:, None]
        return GaussianStats(self.rows.shape[1], int(w.sum()), weighted.sum(axis=0), weighted.T @ self.rows)

    def _weights(self, counts: np.ndarray | None) -> np.ndarray:
        return np.ones(len(self.rows)) if counts is None else np.asarray(counts, np.float64)[self.owner]

    def frechet(self, other: "StackedClips", counts: np.ndarray | None = None,
                other_counts: np.ndarray | None = None) -> float:
        """FD between the two (resampled) sets: from the rows themselves when both have fewer distinct
        rows than dimensions (then much faster than any d x d route), else from Gaussian statistics."""
        w1, w2 = self._weights(counts), other._weights(other_counts)
        dim = self.rows.shape[1]
        if max(np.count_nonzero(w1), np.count_nonzero(w2)) < dim:
            return frechet_low_rank(*_centred(self.rows, w1), *_centred(other.rows, w2))
        return frechet_from_stats(self.stats(counts), other.stats(other_counts))


def per_clip_frechet(clips: list[np.ndarray], reference: GaussianStats) -> list[float]:
    """Each clip's own Fréchet distance to the reference Gaussian (fadtk's `--indiv`, score_individual).

    A clip with k >= 2 embeddings is fitted like a set (mean, unbiased covariance of its rows); a clip with
    one embedding is a point mass (zero covariance: FD = |x - mu|^2 + tr(S_ref)), where fadtk gives up.
    With C = Y^T Y / (k - 1) and R = sqrt(S_ref), tr((S_ref C)^(1/2)) is the sum of the singular values of
    Y R / sqrt(k - 1): R is computed once, each clip costs one k x d x d product."""
    mu, cov = reference.mean, reference.cov
    trace_ref = float(np.trace(cov))
    root = _psd_sqrt(cov) if any(len(e) >= 2 for e in clips) else None
    values = []
    for e in clips:
        e = np.asarray(e, np.float64)
        if len(e) == 0:
            raise ValueError("a clip without embeddings has no Fréchet distance")
        centre = e.mean(axis=0)
        trace_clip = trace_term = 0.0
        if len(e) >= 2:
            y = (e - centre) / np.sqrt(len(e) - 1)
            trace_clip = float(np.sum(y * y))
            sv = np.linalg.svd(y @ root, compute_uv=False)
            sv[sv < len(e) * np.finfo(np.float64).eps * max(float(sv.max(initial=0.0)), 1.0)] = 0.0
            trace_term = float(sv.sum())
        diff = centre - mu
        d2 = float(diff @ diff + trace_clip + trace_ref - 2.0 * trace_term)
        if not np.isfinite(d2) or d2 < -_ROUNDOFF * max(trace_clip + trace_ref, 1.0) * len(mu):
            raise ArithmeticError(f"per-clip Fréchet distance came out as {d2!r}")
        values.append(max(d2, 0.0))
    return values


# ---------------------------------------------------------------- the metric every Fréchet preset computes

def frechet_metric(generated, reference, options) -> dict:
    """Fréchet distance between the Gaussian fits of all embeddings of each set, with a bootstrap CI."""
    gen_clips, ref_clips = generated.nonempty(), reference.nonempty()
    gen, ref = StackedClips(gen_clips), StackedClips(ref_clips)
    value = gen.frechet(ref)
    result = {"value": value, "ci": None,
              "details": {"estimator": "plug-in FD of the two sample Gaussian fits (biased upwards by ~c/n, as "
                                       "every published toolkit reports it); ci.bias_corrected removes the "
                                       "bootstrap estimate of that bias",
                          "per_clip": PER_CLIP_NOTE},
              "per_clip": per_clip_rows(generated, ref)}
    if options.bootstrap > 0:
        interval = bootstrap_interval(
            lambda counts: gen.frechet(ref, counts[0], counts[1]),
            [content_order(gen_clips), content_order(ref_clips)], options.bootstrap, options.bootstrap_seed,
            FD_COVERS, options.ci_level, estimate=value, floor=0.0)
        result["ci"] = interval.to_dict()
    return result


PER_CLIP_NOTE = ("per_clip: each generated clip's own FD to the reference set's Gaussian (fadtk --indiv): a clip "
                 "with several embeddings is fitted like a set; a clip with one embedding is a point mass (zero "
                 "covariance). Not comparable with the set value; sort by it to find outliers")


def per_clip_rows(generated, reference: StackedClips) -> list[dict]:
    """{"id", "value", "embeddings"} per generated clip with embeddings (those without are in the set summary)."""
    ids, clips = zip(*[(cid, e) for cid, e in zip(generated.clip_ids, generated.per_clip()) if len(e)])
    values = per_clip_frechet(list(clips), reference.stats())
    return [{"id": cid, "value": v, "embeddings": len(e)} for cid, e, v in zip(ids, clips, values)]


FD_COVERS = ("the population Fréchet distance between Gaussian fits of the generated and the reference "
             "distributions (what FD tends to as both sets grow), not the value of another draw of this size")
