"""Our end-to-end scoring against frechet-audio-distance's own pipeline, the backbone floor, and memory.

    python -m bench.benchmarks.peers                      # defaults below, a few minutes on 2 cores
    python -m bench.benchmarks.peers --clips 16 --duration 4 --memory-sizes 200 2000
    python -m bench.benchmarks.peers --skip-memory --workloads mixed --batch-size 32   # the default batch
    PYTHONPATH=OTHER_CHECKOUT python bench/benchmarks/peers.py --ours-only --skip-memory   # "before" timings
    BENCH_DEVICE=cuda python -m bench.benchmarks.peers --skip-memory --ours-only --clips 64   # on a GPU machine

1. Peer: FD on PANNs Cnn14_16k between N generated and N reference WAVs (16 kHz mono float, zero-mean),
   in two workloads: "equal" (every clip --duration s, >= 2 s so audioldm_eval's centring and padding
   change nothing) and "mixed" (2N distinct lengths from 1 to 20 s, as real sets have), computed
   - by frechet-audio-distance 0.3.4's `FrechetAudioDistance(model_name="pann").score(bg_dir, eval_dir)`
     (its loader, its vendored Cnn14_16k one clip at a time, its scipy sqrtm FD), and
   - by ours: `score(["fd-panns@audioldm"], ...)`, cold cache, bootstrap off (and on, for the record),
   both from the SAME random weights: one seeded Cnn14_16k saved in Zenodo's layout, loaded by their
   `torch.load` path and by ours as a local checkpoint (--checkpoint). The values must agree; the
   weights are random ("untrained" in effect), so the numbers mean nothing beyond the comparison.
   VGGish cannot be compared here: frechet-audio-distance gets VGGish from
   `torch.hub.load('harritaylor/torchvggish', 'vggish')`, which needs GitHub (code) and the
   vggish-10086976.pth download; this machine has no network, so its VGGish pipeline cannot run offline.
2. Floor: the same examples prepared in advance and pushed through the backbone's forward pass alone
   (equal shapes batched up to our batch size, nothing padded; on the mixed workload that is one clip
   at a time): our end-to-end time as a multiple of that.
3. Memory: scoring N vs N clips with an embedding-only metric (fad-vggish@google, untrained), each N
   in a fresh process: the process's peak RSS (ru_maxrss), and the peak during scoring alone (VmHWM
   reset through /proc/self/clear_refs after building the model and a warm-up), because building the
   model and importing the libraries set a peak that scoring may never reach.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bench.benchmarks.backbones import reset_peak_rss, status_mib, write_set
from bench.core.audio import write_audio
from bench.core.clipsets import load_directory, load_manifest
from bench.core.synthetic import synthetic_dataset
from bench.scoring import score
from metrics.backbones.base import WeightsChoice, load_backbone
from metrics.inputs import ScoreOptions
from metrics.panns_metrics import PANNS_16K_AUDIOLDM

RATE = 16000
METRIC = "fd-panns@audioldm"
# One 1 s window per 1 s clip (the audioldm preset pads to 2 s: twice the compute for the same question).
MEMORY_METRIC = "fad-vggish@google"


def mixed_lengths(n: int, low: float = 1.0, high: float = 20.0) -> list[float]:
    """2n distinct clip lengths spread over [low, high] s (whole samples), in a fixed shuffled order."""
    lengths = np.linspace(low, high, 2 * n)
    return [float(x) for x in lengths[np.random.default_rng(0).permutation(2 * n)]]


def write_pair(root: Path, n: int, duration: float, lengths: list[float] | None = None) -> tuple[Path, Path]:
    """N reference clips (synthetic set) and N generated ones (another seed), zero-mean mono float WAVs;
    all of `duration` s, or of the given 2N lengths (reference first)."""
    dirs = {}
    for role, seed in (("ref", 0), ("gen", 1)):
        longest = max(lengths) if lengths else duration
        ds = synthetic_dataset(n_clips=n, sample_rate=RATE, duration_s=longest, seed=seed)
        for i, clip in enumerate(ds.clips):
            wave = ds.load(clip)[0][:1].astype(np.float64)
            if lengths:
                wave = wave[:, :int(lengths[i + (n if role == "gen" else 0)] * RATE)]
            write_audio(root / role / f"{clip.id}.wav", (wave - wave.mean()).astype(np.float32), RATE)
        dirs[role] = root / role
    return dirs["gen"], dirs["ref"]


def _importable_peer() -> None:
    """frechet_audio_distance imports laion_clap -> transformers (torchaudio) and timm (torchvision),
    whose CUDA-built extensions do not load next to CPU torch here: apply the project's one shim, and
    keep laion_clap's tokenizer loading off the network."""
    from bench.core.torch_compat import (
        ensure_torchaudio_importable,
        ensure_torchvision_importable,
    )

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    ensure_torchaudio_importable()
    ensure_torchvision_importable()


def shared_checkpoint(ckpt_dir: Path, seed: int) -> Path:
    """One seeded Cnn14_16k in Zenodo's layout, under frechet-audio-distance's (URL-quoted) file name."""
    _importable_peer()
    from frechet_audio_distance.models.pann import Cnn14_16k

    torch.manual_seed(seed)
    model = Cnn14_16k(sample_rate=16000, window_size=512, hop_size=160, mel_bins=64, fmin=50, fmax=8000,
                      classes_num=527)
    path = ckpt_dir / "Cnn14_16k_mAP%3D0.438.pth"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict()}, path)
    return path


@dataclass(frozen=True)
class Timing:
    """Wall clock, and CPU seconds of this process (all its threads): on a machine shared with other
    jobs the wall clock swings with their load, the CPU time much less, so ratios use both."""

    wall: float
    cpu: float

    def __str__(self) -> str:
        return f"{self.wall:7.2f} s wall {self.cpu:7.2f} s CPU"

    def ratio(self, other: "Timing") -> str:
        return f"{self.wall / other.wall:.2f}x wall, {self.cpu / other.cpu:.2f}x CPU"


def timed(fn):
    w0, c0 = time.perf_counter(), time.process_time()
    value = fn()
    return value, Timing(time.perf_counter() - w0, time.process_time() - c0)


def floor_seconds(backbone, clip_dir: list[Path], batch_size: int) -> tuple[Timing, int]:
    """Bare forward passes over every example of the given directories (prepared untimed), equal shapes
    batched (at most batch_size, no padding), every other example alone."""
    by_shape: dict[tuple, list[np.ndarray]] = {}
    for d in clip_dir:
        clips = load_directory(d)
        for clip in clips.clips:
            for x in PANNS_16K_AUDIOLDM.prepare(*clips.load(clip)):
                by_shape.setdefault(x.shape, []).append(x)
    batches = [np.stack(same[i:i + batch_size]) for same in by_shape.values()
               for i in range(0, len(same), batch_size)]

    def forward():
        for batch in batches:
            backbone.embed(batch)

    return timed(forward)[1], sum(len(b) for b in batches)


def compare(args, root: Path, ckpt: Path, gen_dir: Path, ref_dir: Path, mixed: bool, say) -> None:
    """Ours (cold, bootstrap, warm), the bare forward floor and (unless --ours-only) frechet-audio-distance."""
    weights = WeightsChoice(mode="pretrained", local_files=((PANNS_16K_AUDIOLDM.backbone, str(ckpt)),),
                            cache_root=root / "weights-cache", allow_download=False)
    backbone = load_backbone(PANNS_16K_AUDIOLDM.backbone, weights)  # built once, outside the timing

    def ours(bootstrap: int, cache: str):
        opts = ScoreOptions(weights=weights, cache_root=root / cache, batch_size=args.batch_size,
                            bootstrap=bootstrap, progress=False)
        return score([METRIC], load_directory(gen_dir), load_directory(ref_dir), opts)[0]

    peer = None
    if not args.ours_only:
        from frechet_audio_distance import FrechetAudioDistance

        with contextlib.redirect_stdout(io.StringIO()):  # it prints; build outside the timing
            peer = FrechetAudioDistance(ckpt_dir=str(ckpt.parent), model_name="pann", sample_rate=RATE,
                                        audio_load_worker=2, verbose=False)
    their_times, our_times = [], []
    for r in range(args.repeats):
        if peer is not None:
            theirs, t = timed(lambda: peer.score(str(ref_dir), str(gen_dir)))
            their_times.append(t)
        if r < args.repeats - 1:  # the last "ours" run is timed below, with the others
            our_times.append(timed(lambda: ours(0, f"cache-r{r}"))[1])
    mine, t = timed(lambda: ours(0, "cache-a"))
    our_s = min(our_times + [t], key=lambda t: t.cpu)
    mine_ci, our_ci_s = timed(lambda: ours(200, "cache-b"))
    warm, warm_s = timed(lambda: ours(0, "cache-a"))
    floor_s, n_examples = floor_seconds(backbone, [gen_dir, ref_dir], args.batch_size)
    if peer is not None:
        their_s = min(their_times, key=lambda t: t.cpu)
        # The peer's time by stage (its own methods, called one by one as its score() does).
        load = getattr(peer, "_FrechetAudioDistance__load_audio_files")
        audio, load_s = timed(lambda: load(str(ref_dir)) + load(str(gen_dir)))
        embs, embed_s = timed(lambda: (peer.get_embeddings(audio[:args.clips], RATE),
                                       peer.get_embeddings(audio[args.clips:], RATE)))
        try:
            _, fd_s = timed(lambda: peer.calculate_frechet_distance(*peer.calculate_embd_statistics(embs[0]),
                                                                    *peer.calculate_embd_statistics(embs[1])))
            fd_note = f"statistics + scipy-sqrtm FD {fd_s}"
        except Exception as exc:  # its FD step, run alone so the error is visible (score() prints -1)
            fd_note = f"its FD step raises {type(exc).__name__}: {exc}"
        # Its value, from its own embeddings, by an independent closed form (its FD step may not run):
        # tr sqrt(S1 S2) is the nuclear norm of A B^T for S1 = A^T A, S2 = B^T B.
        # Its PANNs branch takes out["embedding"][0] (shape [2048]) per clip and np.concatenates them
        # into ONE vector of n*2048 values, so its own statistics are of a 1-d Gaussian over all
        # values; reshaped to [n, 2048] they are the per-clip embeddings FD is defined on.
        flat_shape = embs[0].shape
        a, b = (np.asarray(e, np.float64).reshape(args.clips, -1) for e in embs)
        ca, cb = (a - a.mean(0)) / np.sqrt(len(a) - 1), (b - b.mean(0)) / np.sqrt(len(b) - 1)
        their_fd = float(np.sum((a.mean(0) - b.mean(0)) ** 2) + np.sum(ca * ca) + np.sum(cb * cb)
                         - 2 * np.linalg.svd(ca @ cb.T, compute_uv=False).sum())
        rel = abs(mine["value"] - their_fd) / max(abs(their_fd), 1e-12)
        say(f"   frechet-audio-distance 0.3.4  {their_s}   score() returned {theirs}")
        say(f"     by stage: load {load_s.cpu:.2f} s CPU, embed one clip at a time {embed_s.cpu:.2f} s CPU; {fd_note}")
        say(f"     its get_embeddings returns shape {list(flat_shape)} for {args.clips} clips (not "
            f"[{args.clips}, 2048]); FD of its embeddings as [{args.clips}, 2048], closed form: {their_fd:.6f}")
        if mixed:
            say("     (clips under 2 s: the audioldm preset zero-pads them to 2 s, frechet-audio-distance does "
                "not, so the two values differ by design on this workload)")
        say(f"   ours, cold cache              {our_s}   FD {mine['value']:.6f}   relative difference {rel:.1e}")
    else:
        say(f"   ours, cold cache              {our_s}   FD {mine['value']:.6f}")
    say(f"   ours, cold, bootstrap 200     {our_ci_s}   FD {mine_ci['value']:.6f}  CI "
        f"[{mine_ci['ci']['low']:.4f}, {mine_ci['ci']['high']:.4f}]")
    say(f"   ours, warm cache              {warm_s}   FD {warm['value']:.6f}")
    say(f"   bare forward passes           {floor_s}   ({n_examples} examples; equal shapes in batches of "
        f"at most {args.batch_size}, no padding)")
    if peer is not None:
        say(f"   speed-up over frechet-audio-distance (cold, no bootstrap): {their_s.ratio(our_s)}")
        say("   (the peer's time includes no working FD step: it fails at once, so the ratio flatters it)")
    say(f"   ours / bare forward floor: {our_s.ratio(floor_s)}; fastest (CPU) of {args.repeats}")
    if not args.ours_only:
        say("   VGGish: not compared. frechet-audio-distance loads VGGish with torch.hub.load("
            "'harritaylor/torchvggish') (GitHub code + vggish-10086976.pth): cannot run offline here.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=16, help="clips per set for the peer comparison")
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per clip (>= 2)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0, help="seed of the shared random Cnn14_16k weights")
    parser.add_argument("--memory-sizes", type=int, nargs="+", default=[200, 2000], help="clips per set")
    parser.add_argument("--memory-duration", type=float, default=1.0)
    parser.add_argument("--skip-memory", action="store_true", help="only the timing comparison")
    parser.add_argument("--skip-peer", action="store_true", help="only the memory measurement")
    parser.add_argument("--workloads", nargs="+", choices=("equal", "mixed"), default=["equal", "mixed"],
                        help="equal: every clip --duration s; mixed: 2N distinct lengths from 1 to 20 s")
    parser.add_argument("--ours-only", action="store_true", help="skip frechet-audio-distance (e.g. to time "
                        "another checkout of this project: PYTHONPATH=CHECKOUT python bench/benchmarks/peers.py)")
    parser.add_argument("--repeats", type=int, default=1, help="time peer and ours alternately this many "
                        "times and keep each one's fastest (a shared machine's load drifts)")
    args = parser.parse_args()
    if args.duration < 2:
        parser.error("--duration must be >= 2 s (audioldm_eval pads shorter clips; the peer does not)")
    say = lambda *a: print(*a, flush=True)  # noqa: E731
    say(f"torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs, load average at start "
        f"{os.getloadavg()[0]:.1f}; random (seeded) weights: values are comparable between pipelines only")

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if not args.skip_peer:
            ckpt = shared_checkpoint(root / "fad-ckpt", args.seed)
            for n, workload in enumerate(args.workloads, 1):
                lengths = mixed_lengths(args.clips) if workload == "mixed" else None
                gen_dir, ref_dir = write_pair(root / workload, args.clips, args.duration, lengths)
                what = ("distinct lengths 1-20 s" if lengths else f"{args.duration:g} s")
                audio_s = sum(lengths) if lengths else 2 * args.clips * args.duration
                say(f"\n1.{n} {METRIC}, {workload} lengths: {args.clips} generated vs {args.clips} reference "
                    f"clips of {what} ({audio_s:g} s of audio), batch {args.batch_size}")
                compare(args, root / workload, ckpt, gen_dir, ref_dir, mixed=bool(lengths), say=say)

        if not args.skip_memory:
            largest = max(args.memory_sizes)
            gen = write_set(root / "mem-gen", largest, args.memory_duration, 1, tuple(args.memory_sizes))
            ref = write_set(root / "mem-ref", largest, args.memory_duration, 2, tuple(args.memory_sizes))
            say(f"\n3. memory, {MEMORY_METRIC} (untrained VGGish, embedding-only), N vs N clips of "
                f"{args.memory_duration:g} s, bootstrap 10, batch 16, each N in a fresh process")
            rows = []
            for n in args.memory_sizes:
                cmd = [sys.executable, "-m", "bench.benchmarks.peers", "--memory-child", str(gen[n]), str(ref[n]),
                       str(root / f"mem-cache-{n}")]
                done = subprocess.run(cmd, capture_output=True, text=True, check=False)
                if done.returncode != 0:
                    raise SystemExit(f"memory run with {n} clips failed:\n{done.stderr[-3000:]}")
                rows.append({"n": n, **json.loads(done.stdout.strip().splitlines()[-1])})
                r = rows[-1]
                say(f"   N={n:>5}: process peak {r['peak_mib']:6.0f} MiB (ru_maxrss; {r['before_mib']:.0f} MiB "
                    f"before scoring, model built); peak during scoring {r['scoring_peak_mib']:6.0f} MiB "
                    f"(VmHWM reset before scoring); {r['seconds']:.1f} s")
            small, big = rows[0], rows[-1]
            say(f"   N={big['n']} / N={small['n']}: process peak {big['peak_mib'] / small['peak_mib']:.3f}x, "
                f"peak during scoring {big['scoring_peak_mib'] / small['scoring_peak_mib']:.3f}x (target <= 1.2x)")


def memory_child(gen: str, ref: str, cache: str) -> None:
    """In a fresh process: build VGGish, warm up, reset the peak-RSS mark, score N vs N, report peaks."""
    weights = WeightsChoice(mode="untrained", seed=0)
    load_backbone("vggish", weights)
    warm = ScoreOptions(weights=weights, cache_root=Path(cache) / "warm", batch_size=16, bootstrap=10, progress=False)
    first2 = Path(gen).parent / "warm-up-2.jsonl"  # next to the set: its relative audio paths resolve
    first2.write_text("".join(Path(gen).read_text().splitlines(keepends=True)[:2]))
    score([MEMORY_METRIC], load_manifest(first2), load_manifest(first2), warm)  # allocator pools, lazy imports
    before = status_mib("VmRSS")
    reset_peak_rss()
    opts = ScoreOptions(weights=weights, cache_root=Path(cache), batch_size=16, bootstrap=10, progress=False)
    t0 = time.perf_counter()
    score([MEMORY_METRIC], load_manifest(gen), load_manifest(ref), opts)
    print(json.dumps({"before_mib": before, "scoring_peak_mib": status_mib("VmHWM"),
                      "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "seconds": time.perf_counter() - t0}))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--memory-child"]:
        memory_child(*sys.argv[2:5])
    else:
        main()
