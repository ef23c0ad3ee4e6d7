"""VGGish-FAD throughput: seconds of audio scored per second, cold vs warm cache, batch 1 vs 32.

    python -m bench.benchmarks.fad_throughput --clips 64 --duration 4

Scores N generated clips (noise) against N reference clips (the built-in synthetic set), both read
from WAV files, with `fad-vggish@audioldm` on untrained (seeded) VGGish weights: the compute is that
of the real network, only the numbers are meaningless. Cold = empty cache; warm = the same sets
rescored with the cache filled (new ClipSet objects, so audio is re-read and re-hashed as in a rerun).
Timing is wall clock on this machine; the bootstrap is off to time the embedding pipeline alone.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.core.audio import write_audio
from bench.core.clipsets import load_directory
from bench.core.synthetic import synthetic_dataset
from bench.scoring import embed_set, score
from metrics.backbones.base import WeightsChoice, load_backbone
from metrics.inputs import ScoreOptions
from metrics.protocols import VGGISH_AUDIOLDM

METRIC = "fad-vggish@audioldm"


def _write_sets(root: Path, n: int, duration: float) -> tuple[Path, Path]:
    ref = synthetic_dataset(n_clips=n, sample_rate=16000, duration_s=duration, seed=0)
    rng = np.random.default_rng(0)
    for clip in ref.clips:
        write_audio(root / "ref" / f"{clip.id}.wav", ref.load(clip)[0], 16000)
        noise = (0.1 * rng.standard_normal((1, int(duration * 16000)))).astype(np.float32)
        write_audio(root / "gen" / f"{clip.id}.wav", noise, 16000)
    return root / "gen", root / "ref"


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=64, help="clips per set")
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per clip")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        gen_dir, ref_dir = _write_sets(tmp, args.clips, args.duration)
        audio_s = 2 * args.clips * args.duration
        load_backbone("vggish", WeightsChoice(mode="untrained", seed=0))  # build once, outside the timings
        print(f"{args.clips} generated + {args.clips} reference clips of {args.duration:g} s "
              f"({audio_s:g} s of audio), {METRIC}, untrained VGGish, torch threads {torch.get_num_threads()}")
        print(f"{'batch':>5} {'cold s':>8} {'warm s':>8} {'cold audio-s/s':>15} {'warm audio-s/s':>15} "
              f"{'warm speedup':>12} {'ref-only cold/warm':>19}")
        for bs in args.batch_sizes:
            cache = tmp / f"cache-bs{bs}"
            opts = ScoreOptions(weights=WeightsChoice(mode="untrained", seed=0, cache_root=cache),
                                cache_root=cache, batch_size=bs, bootstrap=0, progress=False)
            cold = _timed(lambda: score([METRIC], load_directory(gen_dir), load_directory(ref_dir), opts))
            warm = _timed(lambda: score([METRIC], load_directory(gen_dir), load_directory(ref_dir), opts))
            # An unchanged reference set alone: the statistic users rescore against most often.
            backbone = load_backbone("vggish", opts.weights)
            ref_cache = tmp / f"cache-ref-bs{bs}"
            ref_opts = ScoreOptions(weights=opts.weights, cache_root=ref_cache, batch_size=bs, bootstrap=0,
                                    progress=False)
            ref_cold = _timed(lambda: embed_set(load_directory(ref_dir), VGGISH_AUDIOLDM, backbone, ref_opts))
            ref_warm = _timed(lambda: embed_set(load_directory(ref_dir), VGGISH_AUDIOLDM, backbone, ref_opts))
            print(f"{bs:>5} {cold:>8.2f} {warm:>8.3f} {audio_s / cold:>15.1f} {audio_s / warm:>15.1f} "
                  f"{cold / warm:>11.1f}x {ref_cold / ref_warm:>18.1f}x")


if __name__ == "__main__":
    main()
