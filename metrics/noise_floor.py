"""The noise floor of a set metric: its value between two disjoint random halves of the reference set.

Both halves come from the reference distribution, so this is what a perfect generator scores against a
set of this size, give or take: a generated set whose value is within the floor's spread is
indistinguishable from the reference by this metric at this set size. The halves have n // 2 clips each,
so for a biased metric such as FD the floor sits somewhat above what a perfect generator of n clips would
get against all n reference clips (FD's bias grows as the sets shrink). Splits are keyed to clip content
(metrics.bootstrap.content_order), so renaming or reordering reference files leaves the floor unchanged.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from metrics.bootstrap import content_order
from metrics.inputs import SetEmbeddings

SPLITS = 5
WHAT = ("the metric between two disjoint random halves of the reference set (n // 2 clips each), mean and "
        "std over splits: what a perfect generator scores at this set size (a little above it for biased "
        "metrics such as FD, whose bias grows as the sets shrink)")


def noise_floor(metric, reference: SetEmbeddings, options, splits: int = SPLITS) -> dict:
    """{"mean", "std", "values", ...} of `metric` over `splits` random half/half splits of `reference`;
    {"mean": None, "reason"} when a half would be too small for the metric."""
    n = len(reference.clip_ids)
    half = n // 2
    rows_per_half = sorted(len(e) for e in reference.per_clip(metric.output))[:half]
    if half < 2 or sum(rows_per_half) < metric.min_items:
        return {"mean": None, "what": WHAT, "reason": f"{n} reference clip(s): a half is too small for {metric.id}"}
    order = content_order([np.asarray(e) for e in reference.per_clip(metric.output)])
    rng = np.random.default_rng(options.bootstrap_seed)
    quiet = replace(options, bootstrap=0)
    values = []
    for _ in range(splits):
        shuffled = order[rng.permutation(n)]
        a, b = reference.subset(shuffled[:half]), reference.subset(shuffled[half:2 * half])
        values.append(float(metric.compute(a, b, quiet)["value"]))
    return {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)) if splits > 1 else 0.0,
            "values": values, "splits": splits, "set_sizes": [half, half], "seed": options.bootstrap_seed,
            "what": WHAT}
