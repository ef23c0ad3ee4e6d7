"""Listening-test statistics: pure functions over ratings (no I/O).

Ratings are parallel arrays (rater index, item index, condition index, score). An item is what every
condition was rendered for (a prompt); a condition is a system, hidden reference or anchor.

- `crossed_bootstrap`: per-condition mean with a percentile interval from the two-way ("pigeonhole",
  Owen 2007) bootstrap: raters and items are resampled independently, with replacement, and a rating
  counts (rater multiplicity x item multiplicity) times. Both random effects enter the interval, which a
  per-rating interval ignores (it treats 20 ratings of one rater as 20 independent raters).
- `mushra_post_screening`: ITU-R BS.1534-3 assessor post-screening.
- `attention_screening`: raters who fail more than a set fraction of attention checks.
- `krippendorff_alpha`: inter-rater agreement with missing ratings (nominal or interval distance).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

CROSSED_METHOD = ("percentile two-way bootstrap: raters and items resampled independently with "
                  "replacement, each rating weighted by its rater's times its item's multiplicity; "
                  "the same draw for every condition")


@dataclass(frozen=True)
class ConditionSummary:
    mean: float
    low: float
    high: float
    level: float
    n_ratings: int
    n_raters: int
    n_items: int
    n_resamples: int  # resamples where the condition had at least one rating (the others are skipped)
    seed: int
    method: str = CROSSED_METHOD

    def to_dict(self) -> dict:
        return asdict(self)


def _as_ratings(rater, item, condition, score):
    rater, item, condition = (np.asarray(a, dtype=np.int64) for a in (rater, item, condition))
    score = np.asarray(score, dtype=np.float64)
    if not (rater.shape == item.shape == condition.shape == score.shape) or rater.ndim != 1:
        raise ValueError("rater, item, condition and score must be 1-d arrays of one length")
    if not np.all(np.isfinite(score)):
        raise ValueError("scores must be finite")
    if rater.size and min(rater.min(), item.min(), condition.min()) < 0:
        raise ValueError("rater, item and condition indices must be >= 0")
    return rater, item, condition, score


def crossed_bootstrap(rater, item, condition, score, n_conditions: int, n_resamples: int = 1000,
                      seed: int = 0, level: float = 0.95, chunk: int = 200) -> list[ConditionSummary | None]:
    """Mean score of every condition 0..n_conditions-1 with a two-way bootstrap interval (None: no ratings).

    Deterministic given `seed`. Resamples in which a condition received no rating (possible in sparse
    designs) are skipped for that condition and the count kept is reported as `n_resamples`.
    """
    if n_resamples < 2:
        raise ValueError(f"n_resamples must be >= 2, got {n_resamples}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    rater, item, condition, score = _as_ratings(rater, item, condition, score)
    # Only raters and items that gave / received ratings are resampled.
    raters, r_idx = np.unique(rater, return_inverse=True)
    items, i_idx = np.unique(item, return_inverse=True)
    n_r, n_i = len(raters), len(items)
    rng = np.random.default_rng(seed)
    sums = np.zeros((n_resamples, n_conditions))
    weights = np.zeros((n_resamples, n_conditions))
    for start in range(0, n_resamples, chunk):
        b = min(chunk, n_resamples - start)
        w_r = rng.multinomial(n_r, np.full(n_r, 1.0 / n_r), size=b).astype(np.float64)
        w_i = rng.multinomial(n_i, np.full(n_i, 1.0 / n_i), size=b).astype(np.float64)
        w = w_r[:, r_idx] * w_i[:, i_idx]  # [b, n_ratings]
        for c in range(n_conditions):
            mask = condition == c
            sums[start:start + b, c] = w[:, mask] @ score[mask]
            weights[start:start + b, c] = w[:, mask].sum(axis=1)
    tail = (1.0 - level) / 2.0
    out: list[ConditionSummary | None] = []
    for c in range(n_conditions):
        mask = condition == c
        if not mask.any():
            out.append(None)
            continue
        ok = weights[:, c] > 0
        values = sums[ok, c] / weights[ok, c]
        low, high = (np.quantile(values, [tail, 1.0 - tail]) if ok.sum() >= 2
                     else (np.nan, np.nan))
        out.append(ConditionSummary(float(score[mask].mean()), float(low), float(high), level,
                                    int(mask.sum()), int(len(np.unique(rater[mask]))),
                                    int(len(np.unique(item[mask]))), int(ok.sum()), seed))
    return out


def mushra_post_screening(reference_scores: dict, anchor_scores: dict | None = None,
                          reference_below: float = 90.0, anchor_above: float = 90.0,
                          max_fraction: float = 0.15) -> dict:
    """ITU-R BS.1534-3 post-screening: an assessor is excluded who rates the hidden reference below 90
    for more than 15% of the test items, or the mid-range anchor above 90 for more than 15% of them.

    `reference_scores` / `anchor_scores`: rater -> that rater's scores of the hidden reference / the
    mid-range anchor, one per test item. Returns rater -> reason for every excluded rater.
    """
    excluded = {}
    checks = [("hidden reference", reference_scores, lambda s: s < reference_below, f"below {reference_below:g}")]
    if anchor_scores is not None:
        checks.append(("mid-range anchor", anchor_scores, lambda s: s > anchor_above, f"above {anchor_above:g}"))
    for rater in sorted(set(reference_scores) | set(anchor_scores or {}), key=str):
        reasons = []
        for name, table, bad, words in checks:
            scores = np.asarray(table.get(rater, []), dtype=np.float64)
            if scores.size and (bad(scores).sum() / scores.size) > max_fraction:
                reasons.append(f"rated the {name} {words} in {int(bad(scores).sum())} of {scores.size} "
                               f"test items (more than {max_fraction:.0%})")
        if reasons:
            excluded[rater] = "; ".join(reasons)
    return excluded


def attention_screening(checks: dict, max_fail_fraction: float = 0.25) -> dict:
    """Raters who failed more than `max_fail_fraction` of their attention checks.

    `checks`: rater -> list of (score, lowest accepted, highest accepted). Returns rater -> reason.
    """
    excluded = {}
    for rater in sorted(checks, key=str):
        answers = checks[rater]
        failed = [s for s, lo, hi in answers if not lo <= s <= hi]
        if answers and len(failed) / len(answers) > max_fail_fraction:
            excluded[rater] = (f"failed {len(failed)} of {len(answers)} attention-check answers (more than "
                               f"{max_fail_fraction:.0%}; gave {', '.join(f'{s:g}' for s in failed)})")
    return excluded


def krippendorff_alpha(units: list, metric: str = "interval") -> float:
    """Krippendorff's alpha from a list of units, each the list of the values its raters gave.

    Units with fewer than two values are not pairable and are left out (Krippendorff 2011). Distances:
    "nominal" (0 if equal, else 1) or "interval" (squared difference). NaN when there is no variation.
    """
    if metric not in ("nominal", "interval"):
        raise ValueError(f"metric must be 'nominal' or 'interval', got {metric!r}")
    pairable = [np.asarray(u, dtype=np.float64) for u in units if len(u) >= 2]
    if not pairable:
        return float("nan")
    values = np.unique(np.concatenate(pairable))
    index = {v: k for k, v in enumerate(values)}
    # Coincidence matrix: every ordered pair of values within a unit, weighted 1 / (m_u - 1).
    o = np.zeros((len(values), len(values)))
    for u in pairable:
        counts = np.zeros(len(values))
        for v in u:
            counts[index[v]] += 1
        o += (np.outer(counts, counts) - np.diag(counts)) / (len(u) - 1)
    n_c = o.sum(axis=1)
    n = n_c.sum()
    if metric == "nominal":
        delta = (values[:, None] != values[None, :]).astype(np.float64)
    else:
        delta = (values[:, None] - values[None, :]) ** 2
    observed = (o * delta).sum()
    expected = (np.outer(n_c, n_c) * delta).sum() / (n - 1)
    if expected == 0:
        return float("nan")
    return float(1.0 - observed / expected)
