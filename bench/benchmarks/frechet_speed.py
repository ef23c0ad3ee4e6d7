"""Fréchet distance of one bootstrap resample: the covariance route vs `StackedClips.frechet`.

    python -m bench.benchmarks.frechet_speed
    python -m bench.benchmarks.frechet_speed --sizes 200x2048 1000x2048 --repeats 3

Each case draws N one-row clips of D dimensions per set (Gaussian, seeded) and one multinomial
resample of each set, as the bootstrap does, then times both routes on the same resample (median of
`--repeats`) and checks they agree. With fewer distinct rows than dimensions (PANNs' 2048-d embeddings
of up to ~1300 clips), `frechet` works on the rows and needs no d x d matrix; otherwise it is the
covariance route itself.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from metrics.frechet import StackedClips, frechet_from_stats


def _median_time(fn, repeats: int) -> tuple[float, float]:
    times, value = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["200x2048", "1000x2048", "964x527", "1000x128"],
                        help="NxD cases: clips per set x dimensions")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, load average at start {os.getloadavg()[0]:.1f}; one bootstrap resample, "
          f"median of {args.repeats}")
    print(f"{'clips':>6} {'dims':>5} {'distinct rows':>13} {'covariance s':>13} {'frechet() s':>12} {'speed-up':>9} "
          f"{'rel. diff':>10}")
    for case in args.sizes:
        n, d = (int(v) for v in case.lower().split("x"))
        rng = np.random.default_rng(0)
        a = StackedClips([rng.standard_normal((1, d)) for _ in range(n)])
        b = StackedClips([rng.standard_normal((1, d)) + 0.1 for _ in range(n)])
        ca, cb = rng.multinomial(n, np.full(n, 1 / n)), rng.multinomial(n, np.full(n, 1 / n))
        t_cov, v_cov = _median_time(lambda: frechet_from_stats(a.stats(ca), b.stats(cb)), args.repeats)
        t_new, v_new = _median_time(lambda: a.frechet(b, ca, cb), args.repeats)
        print(f"{n:>6} {d:>5} {max(np.count_nonzero(ca), np.count_nonzero(cb)):>13} {t_cov:>13.3f} "
              f"{t_new:>12.3f} {t_cov / t_new:>8.1f}x {abs(v_cov - v_new) / v_cov:>10.1e}", flush=True)


if __name__ == "__main__":
    main()
