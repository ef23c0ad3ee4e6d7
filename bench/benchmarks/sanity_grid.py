"""The full sanity grid: every perturbation at dense levels, both FAD-VGGish presets, the built-in set.

    python -m bench.benchmarks.sanity_grid --clips 40 --duration 4 --out bench-results/sanity-grid

Runs offline with untrained (seeded) VGGish weights, so the table says whether the pipeline reacts to
each perturbation, not how the published metric does; with real weights in the cache, pass
`--weights pretrained`. Prints the Markdown table `bench sanity` prints and writes the JSON report and
the plots to --out. CI runs the small version in tests/test_sanity.py; this is the benchmark/report.
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch

from bench.core.synthetic import synthetic_dataset
from bench.sanity import plan_levels, run_sanity
from bench.sanity_report import render_markdown, write_report
from metrics.backbones.base import WeightsChoice
from metrics.inputs import ScoreOptions
from metrics.perturbations import all_perturbations

INF = math.inf
# Denser than the defaults: where the curves bend, and past where the defaults stop.
DENSE = {
    "noise": (INF, 50, 40, 30, 20, 10, 5, 0, -10),
    "mask": (0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9),
    "mix": (INF, 40, 30, 20, 10, 5, 2, 0),
    "silence": (0, 0.05, 0.1, 0.25, 0.5, 0.75, 1),
    "lowpass": (INF, 6000, 4000, 3000, 2000, 1000, 500, 250),
    "clipping": (1, 0.8, 0.5, 0.3, 0.2, 0.1, 0.05, 0.02),
    "time-shift": (0, 1, 5, 10, 20, 50, 100, 200),
    "gain": (0, -3, -6, -12, -24, -40, -60),
    "resample": (INF, 16000, 11025, 8000, 6000, 4000, 2000, 1000),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=40, help="clips in the built-in reference set")
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per clip")
    parser.add_argument("--metric", action="append", help="metric ids (default: both FAD-VGGish presets)")
    parser.add_argument("--weights", choices=("pretrained", "untrained"), default="untrained")
    parser.add_argument("--bootstrap", type=int, default=100)
    parser.add_argument("--out", default="bench-results/sanity-grid")
    args = parser.parse_args()

    metrics = args.metric or ["fad-vggish@audioldm", "fad-vggish@google"]
    # Plugins and perturbations added later run at their own defaults.
    plan = {name: plan_levels([name], DENSE.get(name))[name] for name in sorted(all_perturbations())}
    reference = synthetic_dataset(n_clips=args.clips, duration_s=args.duration, seed=0)
    options = ScoreOptions(weights=WeightsChoice(mode=args.weights, seed=0), bootstrap=args.bootstrap,
                           progress=False)
    n_sets = sum(len(levels) - 1 for levels in plan.values())
    print(f"{args.clips} clips of {args.duration:g} s, {len(plan)} perturbations, {n_sets} perturbed sets, "
          f"{len(metrics)} metrics, {args.weights} weights, bootstrap {args.bootstrap}, "
          f"torch threads {torch.get_num_threads()}")
    started = time.perf_counter()
    report = run_sanity(reference, metrics, plan, options, seed=0, log=lambda *a: None)
    seconds = time.perf_counter() - started
    write_report(report, Path(args.out))
    print(render_markdown(report))
    print(f"{seconds:.0f} s wall clock ({seconds / (n_sets + 1):.1f} s per set, all metrics); "
          f"report and plots in {args.out}")


if __name__ == "__main__":
    main()
