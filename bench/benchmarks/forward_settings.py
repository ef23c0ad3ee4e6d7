"""CPU forward settings of the embedding backbones: speed, and distance from the eager reference.

    python -m bench.benchmarks.forward_settings                       # VGGish, PANNs, PaSST; a few minutes
    python -m bench.benchmarks.forward_settings --backbones vggish --compile --rounds 5

For each backbone (untrained weights: speed and numerical distance do not depend on the values), one
batch of fixed-shape random examples is run under each setting, the settings interleaved --rounds times
(fastest CPU time kept: the machine is shared):
- eager: the backbone's forward (inference mode, torch's default threads) with its weights in torch's
  default (contiguous) memory format, the reference;
- channels_last: the model's 4-d weights in channels-last memory format (NHWC convolution kernels);
- threads=1: torch.set_num_threads(1) (the decoding/preparing workers then have the other cores);
- compile: torch.compile of the model's forward (--compile; its one-off compile time is reported apart).
Each setting's outputs are compared with eager's (max |diff| / max |eager|): the project adopts a setting
only if it pays and stays within 1e-5. It also prints what batching relies on (bench.batching): the
bitwise classes of an example's output over batch sizes, and that for a fixed batch size another row or
other companions leave it bit for bit the same.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from torch import nn

from metrics.backbones.base import WeightsChoice, load_backbone

# backbone -> (example shape, batch rows) as bench.batching runs them for 10 s of audio.
CASES = {"vggish": ((1, 96, 64), 16), "panns-cnn14-16k": ((160000,), 8),
         "passt-s-swa-p16-128-ap476": ((320000,), 4)}


def modules_of(backbone) -> list[nn.Module]:
    """The torch modules a backbone's forward closes over (a closure's cells or a bound method's owner)."""
    fn = backbone.embed_tensors
    owner = getattr(fn, "__self__", None)
    found = [v for v in vars(owner).values() if isinstance(v, nn.Module)] if owner is not None else []
    found += [c.cell_contents for c in (fn.__closure__ or ()) if isinstance(c.cell_contents, nn.Module)]
    return found


def run(backbone, x: np.ndarray) -> dict[str, np.ndarray]:
    return {name: np.asarray(v) for name, v in backbone.embed(x).items()}


def rel_diff(a: dict, b: dict) -> float:
    return max(float(np.abs(a[k] - b[k]).max() / max(np.abs(b[k]).max(), 1e-30)) for k in b)


def timed(fn) -> tuple[float, float]:
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.process_time() - c, time.perf_counter() - w


def settings(backbone, models, compile_: bool):
    """name -> (enter, leave) callables that switch the backbone into and out of a setting."""
    threads = torch.get_num_threads()

    def memory_format(fmt):
        def switch():
            for m in models:
                m.to(memory_format=fmt)
        return switch

    out = {"eager": (lambda: None, lambda: None),
           "channels_last": (memory_format(torch.channels_last), memory_format(torch.contiguous_format)),
           "threads=1": (lambda: torch.set_num_threads(1), lambda: torch.set_num_threads(threads)),
           # Is the output then still independent of the thread count (machines differ; the cache key
           # does not name it)? channels_last and one thread, against channels_last and the default.
           "channels_last+threads=1": (lambda: (memory_format(torch.channels_last)(), torch.set_num_threads(1)),
                                       lambda: (memory_format(torch.contiguous_format)(),
                                                torch.set_num_threads(threads)))}
    if compile_:
        eager_forwards = [m.forward for m in models]

        def compiled():
            for m, f in zip(models, eager_forwards):
                m.forward = torch.compile(f)

        def restore():
            for m, f in zip(models, eager_forwards):
                m.forward = f

        out["compile"] = (compiled, restore)
    return out


def batch_invariance(backbone, shape, rows: int) -> str:
    rng = np.random.default_rng(1)
    x = (0.1 * rng.standard_normal((2 * rows, *shape))).astype(np.float32)
    name = next(iter(backbone.outputs))
    classes: dict[bytes, list[int]] = {}
    for b in sorted({1, 2, max(1, rows // 2), rows}):
        classes.setdefault(run(backbone, x[:b])[name][0].tobytes(), []).append(b)
    ref = run(backbone, x[:rows])[name]
    perm = rng.permutation(2 * rows)[:rows]
    moved = run(backbone, x[perm])[name]
    same = all(moved[j].tobytes() == ref[i].tobytes() for j, i in enumerate(perm) if i < rows)
    return (f"example 0's output is bitwise equal within the batch-size groups {list(classes.values())}; at "
            f"{rows} rows, other rows and companions leave every output bit for bit the same: {same}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="also torch.compile (minutes of compiling)")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
          f"{torch.backends.cpu.get_cpu_capability()}, load average {os.getloadavg()[0]:.1f}", flush=True)
    for name in args.backbones:
        shape, rows = CASES[name]
        backbone = load_backbone(name, WeightsChoice(mode="untrained", seed=0))
        models = modules_of(backbone)
        for m in models:  # the reference: torch's default layout, whatever the backbone registers
            m.to(memory_format=torch.contiguous_format)
        x = (0.1 * np.random.default_rng(0).standard_normal((rows, *shape))).astype(np.float32)
        print(f"\n{name}: {rows} examples of {shape}", flush=True)
        print("  " + batch_invariance(backbone, shape, rows), flush=True)
        reference = run(backbone, x)
        modes = settings(backbone, models, args.compile)
        cpu = {m: [] for m in modes}
        wall = {m: [] for m in modes}
        diffs = {}
        for r in range(args.rounds):
            for mode, (enter, leave) in modes.items():
                enter()
                try:
                    if r == 0:  # untimed first call: kernel selection, allocator, compilation
                        c, w = timed(lambda: diffs.__setitem__(mode, rel_diff(run(backbone, x), reference)))
                        if mode == "compile":
                            print(f"  compile: first call (compiling) {w:.1f} s wall", flush=True)
                    c, w = timed(lambda: run(backbone, x))
                    cpu[mode].append(c)
                    wall[mode].append(w)
                finally:
                    leave()
        if "channels_last+threads=1" in modes:
            modes["channels_last"][0]()
            last = run(backbone, x)
            modes["channels_last"][1]()
            modes["channels_last+threads=1"][0]()
            diffs["channels_last+threads=1"] = rel_diff(run(backbone, x), last)
            modes["channels_last+threads=1"][1]()
        base = min(cpu["eager"])
        for mode in modes:
            against = " (vs channels_last)" if mode == "channels_last+threads=1" else ""
            print(f"  {mode:23s} {1000 * min(cpu[mode]) / rows:8.1f} ms CPU/example {1000 * min(wall[mode]) / rows:8.1f} "
                  f"ms wall/example  {min(cpu[mode]) / base:5.2f}x eager CPU  max rel diff {diffs[mode]:.1e}{against}",
                  flush=True)


if __name__ == "__main__":
    main()
