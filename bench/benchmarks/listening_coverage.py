"""Coverage of listening-test intervals on simulated raters with known per-system means (the full grid;
tests/test_listening_stats.py runs one small case).

    python -m bench.benchmarks.listening_coverage
    python -m bench.benchmarks.listening_coverage --studies 400 --resamples 500

score = system mean + rater effect + item effect + noise. For every (raters, items, design, variance
components) case it simulates `--studies` studies and reports how often the 95% interval covers each
system's true mean: the two-way bootstrap over raters and items (metrics.listening.crossed_bootstrap,
what `bench listen score` reports) and the naive per-rating t-interval that treats every rating as
independent. Designs: "full" (every rater rates every item under every system) and "study" (what
`bench listen create` assigns for MOS: each rater rates `clips` pages, item (r*clips + n) mod items,
system (n + r) mod systems).
"""
from __future__ import annotations

import argparse
import itertools
import math
import os
import time

import numpy as np

from metrics.listening import crossed_bootstrap

MEANS = np.array([2.0, 3.0, 3.6])
COMPONENTS = {"rater+item": (0.5, 0.5, 0.7), "noise-dominated": (0.1, 0.1, 1.0), "rater-dominated": (0.8, 0.2, 0.5)}


def design(n_raters: int, n_items: int, kind: str, clips: int):
    if kind == "full":
        grid = np.meshgrid(np.arange(n_raters), np.arange(n_items), np.arange(len(MEANS)), indexing="ij")
        return tuple(g.ravel() for g in grid)
    r = np.repeat(np.arange(n_raters), clips)
    n = np.tile(np.arange(clips), n_raters)
    return r, (r * clips + n) % n_items, (n + r) % len(MEANS)


def coverage(n_raters, n_items, kind, sds, studies, resamples, clips, seed=0):
    rng = np.random.default_rng(seed)
    r, i, c = design(n_raters, n_items, kind, clips)
    two_way = naive = total = 0
    for study in range(studies):
        a, b = rng.normal(0, sds[0], n_raters), rng.normal(0, sds[1], n_items)
        s = MEANS[c] + a[r] + b[i] + rng.normal(0, sds[2], r.size)
        for k, summary in enumerate(crossed_bootstrap(r, i, c, s, len(MEANS), resamples, seed=study)):
            x = s[c == k]
            two_way += summary.low <= MEANS[k] <= summary.high
            naive += abs(x.mean() - MEANS[k]) <= 1.96 * x.std(ddof=1) / math.sqrt(x.size)
            total += 1
    return two_way / total, naive / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--studies", type=int, default=200, help="simulated studies per case")
    parser.add_argument("--resamples", type=int, default=300, help="bootstrap resamples per study")
    parser.add_argument("--raters", type=int, nargs="+", default=[5, 10, 20])
    parser.add_argument("--items", type=int, nargs="+", default=[6, 12, 24])
    parser.add_argument("--clips", type=int, default=12, help="pages per rater in the study design")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs; {args.studies} studies per case, {args.resamples} resamples, "
          f"3 systems, nominal 95%")
    print(f"| design | components (rater, item, noise sd) | raters | items | two-way bootstrap | naive t |")
    print("|:--|:--|--:|--:|--:|--:|")
    t0 = time.perf_counter()
    for kind, (name, sds), n_r, n_i in itertools.product(("full", "study"), COMPONENTS.items(), args.raters,
                                                          args.items):
        two, naive = coverage(n_r, n_i, kind, sds, args.studies, args.resamples, args.clips)
        print(f"| {kind} | {name} {sds} | {n_r} | {n_i} | {two:.3f} | {naive:.3f} |", flush=True)
    print(f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
