"""Memory of embedding clips of many distinct lengths, by the size of oneDNN's primitive cache.

    python -m bench.benchmarks.distinct_lengths_memory [--clips 40] [--capacities 1024 64 0]

oneDNN (torch's CPU convolutions) keeps a compiled primitive for every input shape it has seen, up to
ONEDNN_PRIMITIVE_CACHE_CAPACITY of them (1024 by default), and what they hold stays allocated; a real
reference set has a distinct length per clip. For each capacity, in a fresh process: an untrained
Cnn14_16k embeds --clips single clips of distinct seeded lengths (1-25 s at 16 kHz), then 6 batches of
4 x 10 s (the equal-length case, where primitives are reused). Printed: resident memory after the
distinct lengths, the process's peak RSS, and the CPU time of each part. metrics.backbones.base sets 64
unless the environment already names a capacity.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def _resident_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def child(clips: int) -> None:
    import numpy as np

    from metrics.backbones.base import WeightsChoice, load_backbone

    backbone = load_backbone("panns-cnn14-16k", WeightsChoice(mode="untrained", seed=0))
    rng = np.random.default_rng(0)
    start = _resident_mib()
    t0 = time.process_time()
    for n in rng.choice(np.arange(16000, 400000), clips, replace=False):
        backbone.embed((0.1 * rng.standard_normal((1, int(n)))).astype(np.float32))
    distinct_cpu = time.process_time() - t0
    after = _resident_mib()
    batch = (0.1 * rng.standard_normal((4, 160000))).astype(np.float32)
    t0 = time.process_time()
    for _ in range(6):
        backbone.embed(batch)
    print(json.dumps({"start": start, "after": after, "peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "distinct_cpu": distinct_cpu, "equal_cpu": time.process_time() - t0}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=40, help="clips of distinct lengths")
    parser.add_argument("--capacities", type=int, nargs="+", default=[1024, 64, 0])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.clips)
        return
    print(f"Cnn14_16k (untrained), {args.clips} clips of distinct lengths 1-25 s, then 6 x (4 x 10 s); "
          f"torch threads from the environment, load average at start {os.getloadavg()[0]:.1f}")
    for capacity in args.capacities:
        env = {**os.environ, "ONEDNN_PRIMITIVE_CACHE_CAPACITY": str(capacity)}
        done = subprocess.run([sys.executable, "-m", "bench.benchmarks.distinct_lengths_memory", "--child",
                               "--clips", str(args.clips)], env=env, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"capacity {capacity} failed:\n{done.stderr[-3000:]}")
        r = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"  capacity {capacity:>5}: resident {r['start']:.0f} -> {r['after']:.0f} MiB, peak RSS "
              f"{r['peak']:.0f} MiB; CPU distinct lengths {r['distinct_cpu']:.1f} s, equal batches "
              f"{r['equal_cpu']:.1f} s")


if __name__ == "__main__":
    main()
