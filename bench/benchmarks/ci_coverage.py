"""Coverage of the FD bootstrap interval: how often it contains the POPULATION Fréchet distance.

    python -m bench.benchmarks.ci_coverage
    python -m bench.benchmarks.ci_coverage --dims 8 16 --sizes 100 200 --trials 100 --resamples 200

Each cell draws `trials` pairs of sets (reference X ~ N(0, I_d), generated Y ~ N(delta 1, s^2 I_d), n
one-row clips each), computes FD and its 95% interval with metrics.bootstrap exactly as the FD metrics do
(`StackedClips.frechet`, floor 0), and counts the trials whose interval contains the closed-form population
FD = d delta^2 + d (1 - s)^2. Distances: "identical" (same distribution, FD 0), "close" (FD 1, s = 1.1),
"far" (FD 7, s = 1.1). The same resamples also give the previous method (bias-shifted percentile:
quantiles minus the bootstrap bias), shown for comparison. Target: >= 93% for the basic bootstrap in
every cell with n >= 100.
"""
from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass

import numpy as np

from metrics.bootstrap import bootstrap_interval, content_order
from metrics.frechet import StackedClips

DISTANCES = {"identical": 0.0, "close": 1.0, "far": 7.0}
SCALE = 1.1  # generated standard deviation for the non-identical cells


@dataclass(frozen=True)
class Cell:
    dim: int
    n: int
    distance: str

    def shape(self) -> tuple[float, float, float]:
        """(mean shift per dimension, standard deviation, population FD) of the generated distribution."""
        target = DISTANCES[self.distance]
        if target == 0.0:
            return 0.0, 1.0, 0.0
        shift_sq = target / self.dim - (1.0 - SCALE) ** 2
        if shift_sq < 0:
            raise ValueError(f"FD {target} is below the scale term at d={self.dim}")
        return float(np.sqrt(shift_sq)), SCALE, target


def coverage(cell: Cell, trials: int, resamples: int, level: float = 0.95, seed: int = 0) -> dict:
    """Fraction of trials whose interval contains the population FD: basic and bias-shifted percentile."""
    shift, scale, population = cell.shape()
    rng = np.random.default_rng([seed, cell.dim, cell.n, int(DISTANCES[cell.distance] * 1000)])
    hits = {"basic": 0, "shifted_percentile": 0}
    estimates, corrected = [], []
    for t in range(trials):
        ref_rows = rng.standard_normal((cell.n, cell.dim))
        gen_rows = shift + scale * rng.standard_normal((cell.n, cell.dim))
        gen, ref = StackedClips(list(gen_rows[:, None])), StackedClips(list(ref_rows[:, None]))
        value = gen.frechet(ref)
        # Unfloored, so the previous method can be rebuilt from the same resamples: basic is
        # [2t - q_high, 2t - q_low], the bias-shifted percentile [q_low - bias, q_high - bias]; both floored at 0.
        ci = bootstrap_interval(lambda counts: gen.frechet(ref, counts[0], counts[1]),
                                [content_order(gen_rows), content_order(ref_rows)], resamples, seed + t,
                                "population FD", level, estimate=value)
        hits["basic"] += max(ci.low, 0.0) <= population <= max(ci.high, 0.0)
        q_low, q_high = 2 * value - ci.high, 2 * value - ci.low
        hits["shifted_percentile"] += max(q_low - ci.bias, 0.0) <= population <= max(q_high - ci.bias, 0.0)
        estimates.append(value)
        corrected.append(ci.bias_corrected)
    return {"population": population, "mean_fd": float(np.mean(estimates)),
            "mean_bias_corrected": float(np.mean(corrected)),
            **{k: v / trials for k, v in hits.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dims", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 100, 200, 300])
    parser.add_argument("--distances", nargs="+", default=list(DISTANCES), choices=list(DISTANCES))
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--resamples", type=int, default=200)
    parser.add_argument("--target", type=float, default=0.93, help="coverage required for n >= 100")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; {args.trials} trials x {args.resamples} "
          f"resamples per cell, nominal 95%")
    print(f"{'d':>3} {'n':>4} {'distance':>9} {'pop FD':>7} {'mean FD':>8} {'bias-corr':>9} {'basic':>6} "
          f"{'old':>6}  {'s':>5}")
    failed = []
    for dim in args.dims:
        for n in args.sizes:
            for distance in args.distances:
                t0 = time.perf_counter()
                cell = Cell(dim, n, distance)
                row = coverage(cell, args.trials, args.resamples)
                ok = n < 100 or row["basic"] >= args.target
                if not ok:
                    failed.append(cell)
                print(f"{dim:>3} {n:>4} {distance:>9} {row['population']:>7.3f} {row['mean_fd']:>8.3f} "
                      f"{row['mean_bias_corrected']:>9.3f} {row['basic']:>6.1%} {row['shifted_percentile']:>6.1%}  "
                      f"{time.perf_counter() - t0:>5.1f}{'' if ok else '  BELOW TARGET'}", flush=True)
    print(f"cells with n >= 100 below {args.target:.0%}: {len(failed)}" + (f" {failed}" if failed else ""))


if __name__ == "__main__":
    main()
