"""Kernel Audio Distance (KAD): the unbiased MMD^2 between two embedding sets with a Gaussian kernel.

The procedure of kadtk (YoonjinXD/kadtk, kadtk/kad.py, `calc_kernel_audio_distance`), our code:
- the samples are all embedding rows of each set (every frame of every clip), as for FAD;
- kernel k(a, b) = exp(-gamma |a - b|^2), gamma = 1 / (2 sigma^2 + 1e-8);
- sigma = median Euclidean distance over all pairs of REFERENCE rows (docs/protocols.md#kad; kadtk's README says
  so, while one of its versions takes the generated set: kadtk #9). The median of an even number of
  distances is the lower middle one, as torch.median in kadtk returns;
- unbiased MMD^2: mean k over ordered pairs i != j within each set, minus twice the mean cross k;
- the result is multiplied by 100 (kadtk's SCALE_FACTOR).
An unbiased estimate of a distance that is ~0 scatters around 0: KAD can be slightly negative when the
two sets come from nearly the same distribution. It is reported as is, never clipped.

Deliberate differences from kadtk: float64 throughout (kadtk: float32); squared distances clipped at 0
before the kernel (round-off); and everything is blockwise, so memory holds one block of kernel values,
never an n x n matrix of rows. For the bootstrap, kernel sums are aggregated per (clip, clip) (three
[clips x clips] float64 matrices: 24 MB for 1000 clips): a resample that takes clip a c_a times then costs a
quadratic form in the counts, not a new pass over the rows. In a resample, pairs between two copies of the same
clip are left out (as a U-statistic over distinct draws): counting them (k = 1 for a row with its copy) would
bias every resample upwards and the bias-corrected interval downwards.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SCALE = 100.0  # kadtk's SCALE_FACTOR
GAMMA_EPS = 1e-8  # kadtk: gamma = 1 / (2 sigma^2 + eps)
BLOCK = 1024  # rows per block: a block of kernel values is BLOCK^2 float64 (8 MiB)
_MEDIAN_BINS = 4096
_MEDIAN_CANDIDATES = 1 << 21  # distances held at once while selecting the median


class ClipRows:
    """Per-clip embedding matrices stacked once (float64), with each row's clip."""

    def __init__(self, per_clip: list[np.ndarray], single_group: bool = False):
        if not per_clip:
            raise ValueError("no clips")
        self.lengths = np.array([len(e) for e in per_clip], np.int64)
        dims = {np.asarray(e).shape[1] for e in per_clip if np.ndim(e) == 2}
        if len(dims) != 1:
            raise ValueError(f"clips have embeddings of different dimensions: {sorted(dims)}")
        self.rows = np.concatenate([np.asarray(e, np.float64).reshape(-1, *dims) for e in per_clip], axis=0)
        if not np.all(np.isfinite(self.rows)):
            raise ArithmeticError("the embeddings contain NaN or Inf")
        self.sqnorms = np.einsum("ij,ij->i", self.rows, self.rows)
        # single_group: every row in one group, for when only the set totals are needed (no bootstrap).
        self.n_groups = 1 if single_group else len(per_clip)
        self.owner = (np.zeros(len(self.rows), np.int64) if single_group
                      else np.repeat(np.arange(len(per_clip)), self.lengths))
        self.group_lengths = np.array([len(self.rows)]) if single_group else self.lengths

    def __len__(self) -> int:
        return len(self.rows)


def _sqdist(a: ClipRows, i0: int, i1: int, b: ClipRows, j0: int, j1: int) -> np.ndarray:
    d2 = a.sqnorms[i0:i1, None] + b.sqnorms[None, j0:j1] - 2.0 * (a.rows[i0:i1] @ b.rows[j0:j1].T)
    return np.maximum(d2, 0.0, out=d2)


def _segments(owner: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start offsets of the runs of equal owners in a block (rows are grouped by clip) and their owners."""
    starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
    return starts, owner[starts]


def clip_kernel_sums(a: ClipRows, b: ClipRows, gamma: float, same: bool, block: int = BLOCK) -> np.ndarray:
    """S[p, q] = sum of k(r, s) over rows r of group p of `a` and rows s of group q of `b`.

    With `same` (a is b), pairs of a row with itself are included (k = 1 exactly); callers remove them.
    Symmetric blocks are computed once. Memory: one block of kernel values plus the [groups x groups] sums.
    """
    out = np.zeros((a.n_groups, b.n_groups))
    for i0 in range(0, len(a), block):
        i1 = min(i0 + block, len(a))
        sa, ga = _segments(a.owner[i0:i1])
        for j0 in range(i0 if same else 0, len(b), block):
            j1 = min(j0 + block, len(b))
            d2 = _sqdist(a, i0, i1, b, j0, j1)
            if same and i0 == j0:
                np.fill_diagonal(d2, 0.0)  # |r - r| = 0 exactly, whatever the round-off
            k = np.exp(np.multiply(d2, -gamma, out=d2), out=d2)
            sb, gb = _segments(b.owner[j0:j1])
            sums = np.add.reduceat(np.add.reduceat(k, sa, axis=0), sb, axis=1)
            out[np.ix_(ga, gb)] += sums
            if same and j0 != i0:
                out[np.ix_(gb, ga)] += sums.T
    return out


def _bin_index(d: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """i with edges[i-1] <= d < edges[i] (0: below edges[0], len(edges): at or above the last edge).

    Arithmetic guess for uniform edges, then corrected by comparison with the edges themselves, so a
    value lands in the same bin as the (d >= lo) & (d < hi) test of the next pass puts it.
    """
    k = len(edges) - 1
    width = (edges[-1] - edges[0]) / k
    i = np.clip(np.floor((d - edges[0]) / width), -1, k).astype(np.int64) + 1
    while True:
        down = (i > 0) & (d < edges[np.clip(i - 1, 0, k)])
        up = (i <= k) & (d >= edges[np.clip(i, 0, k)])
        if not (down.any() or up.any()):
            return i
        i = i - down + up


def median_pairwise_distance(rows: ClipRows, block: int = BLOCK, max_candidates: int = _MEDIAN_CANDIDATES) -> float:
    """Exact lower median of the Euclidean distances over all pairs i < j of rows, in bounded memory.

    Histogram passes over the pairs narrow down the bin that holds the median until at most
    `max_candidates` distances fall in it; a last pass selects among those. Usually two passes. A mass
    of tied distances (bin at float resolution) is counted per distinct value instead.
    """
    n = len(rows)
    n_pairs = n * (n - 1) // 2
    if n_pairs < 1:
        raise ValueError(f"a median pairwise distance needs at least 2 embeddings, got {n}")
    rank = (n_pairs - 1) // 2  # 0-based rank of the lower median

    def distances():
        for i0 in range(0, n, block):
            i1 = min(i0 + block, n)
            for j0 in range(i0, n, block):
                d = np.sqrt(_sqdist(rows, i0, i1, rows, j0, min(j0 + block, n)))
                yield d[np.triu_indices(i1 - i0, 1)] if i0 == j0 else d.ravel()

    # Every distance is below twice the largest distance to the mean (triangle inequality).
    spread = np.sqrt(np.einsum("ij,ij->i", *(2 * [rows.rows - rows.rows.mean(axis=0)]))).max()
    lo, hi = 0.0, 2.0 * float(spread) * (1 + 1e-6) + 1e-300
    while True:
        # Bins are assigned by comparison with the same edge values the next pass tests against.
        edges = np.linspace(lo, hi, _MEDIAN_BINS + 1)
        counts = np.zeros(_MEDIAN_BINS + 2, np.int64)  # [< lo, bins..., >= hi]
        for d in distances():
            counts += np.bincount(_bin_index(d, edges), minlength=_MEDIAN_BINS + 2)
        b = int(np.searchsorted(np.cumsum(counts), rank, side="right"))  # counts index holding the rank
        lo, hi = edges[b - 1], edges[b]
        # Stop narrowing before the bins get finer than float resolution (edges would repeat).
        if counts[b] <= max_candidates or hi - lo <= 4 * _MEDIAN_BINS * np.spacing(hi):
            break
    few = counts[b] <= max_candidates
    below, parts, values, weights = 0, [], np.empty(0), np.empty(0)
    for d in distances():
        below += int(np.count_nonzero(d < lo))
        inside = d[(d >= lo) & (d < hi)]
        if few:
            parts.append(inside)
        elif len(inside):  # a mass of ties: only a few thousand distinct floats fit in [lo, hi)
            values, inverse = np.unique(np.concatenate([values, inside]), return_inverse=True)
            weights = np.bincount(inverse, np.concatenate([weights, np.ones(len(inside))]))
    if few:
        values = np.concatenate(parts)
        return float(np.partition(values, rank - below)[rank - below])
    return float(values[np.searchsorted(np.cumsum(weights), rank - below, side="right")])


def gamma_for(bandwidth: float) -> float:
    return 1.0 / (2.0 * bandwidth ** 2 + GAMMA_EPS)


def kad_from_sums(s_xx: float, pairs_xx: float, s_yy: float, pairs_yy: float, s_xy: float, pairs_xy: float) -> float:
    """SCALE x unbiased MMD^2 from kernel sums and their numbers of pairs: within each set over ordered
    pairs of distinct samples (xx, yy), across the sets over all pairs (xy)."""
    if pairs_xx < 1 or pairs_yy < 1:
        raise ValueError("the unbiased MMD needs at least 2 embeddings per set")
    return SCALE * (s_xx / pairs_xx + s_yy / pairs_yy - 2.0 * s_xy / pairs_xy)


def _within(s: np.ndarray, lengths: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """(kernel sum, number of ordered pairs) within a set whose group a is taken w[a] times: pairs of
    distinct rows inside each copy and pairs across different groups; no pair of a row with itself or
    with its own copy."""
    diag = np.diag(s)
    total = float(w @ s @ w) - float(w ** 2 @ diag) + float(w @ (diag - lengths))
    mass = float(w @ lengths)
    pairs = mass ** 2 - float(w ** 2 @ lengths ** 2) + float(w @ (lengths * (lengths - 1)))
    return total, pairs


@dataclass
class KADStats:
    """Clip-level kernel sums of a generated set (y) against a reference set (x), plus the bandwidth.

    value(gen_counts, ref_counts) is KAD of the sets in which clip a is taken counts[a] times, without the
    pairs of a clip's row with any copy of that clip (module docstring).
    """

    bandwidth: float
    gamma: float
    s_xx: np.ndarray  # reference x reference, self-pairs included
    s_yy: np.ndarray  # generated x generated, self-pairs included
    s_xy: np.ndarray  # reference x generated
    len_x: np.ndarray  # rows per reference group
    len_y: np.ndarray  # rows per generated group

    @classmethod
    def from_clips(cls, generated: list[np.ndarray], reference: list[np.ndarray], bandwidth: float | None = None,
                   per_clip: bool = True, block: int = BLOCK) -> "KADStats":
        """per_clip=False keeps only set totals ([1 x 1] sums): enough for the value, not for a bootstrap."""
        x = ClipRows(reference, single_group=not per_clip)
        y = ClipRows(generated, single_group=not per_clip)
        if x.rows.shape[1] != y.rows.shape[1]:
            raise ValueError(f"embedding dimensions differ: reference {x.rows.shape[1]}, generated {y.rows.shape[1]}")
        if bandwidth is None:
            bandwidth = median_pairwise_distance(x, block)
            if bandwidth <= 0.0:
                raise ArithmeticError("the median distance between reference embeddings is 0 (at least half of "
                                      "them are identical, e.g. silent clips): KAD's kernel bandwidth is undefined")
        g = gamma_for(bandwidth)
        return cls(float(bandwidth), g, clip_kernel_sums(x, x, g, True, block), clip_kernel_sums(y, y, g, True, block),
                   clip_kernel_sums(x, y, g, False, block), x.group_lengths, y.group_lengths)

    def value(self, gen_counts: np.ndarray | None = None, ref_counts: np.ndarray | None = None) -> float:
        wx = np.ones(len(self.len_x)) if ref_counts is None else np.asarray(ref_counts, np.float64)
        wy = np.ones(len(self.len_y)) if gen_counts is None else np.asarray(gen_counts, np.float64)
        lx, ly = self.len_x.astype(np.float64), self.len_y.astype(np.float64)
        s_xx, p_xx = _within(self.s_xx, lx, wx)
        s_yy, p_yy = _within(self.s_yy, ly, wy)
        return kad_from_sums(s_xx, p_xx, s_yy, p_yy, float(wx @ self.s_xy @ wy), float(wx @ lx) * float(wy @ ly))


def kernel_audio_distance(generated: np.ndarray, reference: np.ndarray, bandwidth: float | None = None,
                          block: int = BLOCK) -> float:
    """KAD between two embedding matrices [n, d] (reference decides the bandwidth unless given)."""
    return KADStats.from_clips([generated], [reference], bandwidth, per_clip=False, block=block).value()
