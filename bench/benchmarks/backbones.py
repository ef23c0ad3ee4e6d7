"""Every registered backbone: throughput at batch 1 and 16, and peak memory for 100 vs 1000 clips.

    python -m bench.benchmarks.backbones                       # all backbones, defaults below
    python -m bench.benchmarks.backbones --backbone vggish --clips 16 --duration 10

Untrained (seeded random) weights: the compute is the real network's, only the values are meaningless.
- Throughput: `--clips` clips of `--duration` s (16 kHz WAVs, the built-in synthetic set) embedded
  from files with a cold cache through the protocol of the backbone's metric (below): decode, resample,
  prepare, embed, after one untimed warm-up clip. Reported as audio seconds per wall-clock second for
  the whole pipeline, and for the backbone's forward passes alone.
- Memory: scoring N generated vs N reference clips of `--memory-duration` s with one metric of the
  backbone (its first Fréchet metric, else set metric, else any; bootstrap on), each N in a fresh
  subprocess; the process's peak RSS, its RSS once the backbone is built, and the peak while scoring
  (Linux VmHWM, reset after building). Streaming means the peak while scoring grows from 100 to 1000
  clips by about what the stored embeddings take, not the audio.
CLAP backbones need the roberta-base tokenizer in the Hugging Face cache even untrained; a backbone
that cannot be built is reported and skipped; `--stand-in-tokenizer` times them with a tokenizer of
the real size but few merges (the text side's cost barely depends on the merges). Nothing is
downloaded: BENCH_OFFLINE=1 unless set.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import torch

from bench.benchmarks.stand_in_tokenizer import write_roberta_tokenizer
from bench.core.audio import write_audio
from bench.core.clipsets import load_manifest
from bench.core.synthetic import synthetic_dataset
from bench.core.errors import BenchError
from bench.scoring import embed_set, score
from metrics.backbones.base import BACKBONES, WeightsChoice, load_backbone
from metrics.inputs import ScoreOptions
from metrics.registry import all_metrics

RATE = 16000


def metric_for(backbone: str):
    """The backbone's first Fréchet metric by id, else its first set metric, else any; None if none."""
    mine = sorted((m for m in all_metrics().values() if m.protocol.backbone == backbone), key=lambda m: m.id)
    ranked = sorted(mine, key=lambda m: (m.family != "frechet", m.kind != "set"))
    return ranked[0] if ranked else None


def write_set(directory: Path, n: int, duration: float, seed: int, sizes: tuple[int, ...] = ()) -> dict[int, Path]:
    """WAVs of the synthetic set plus a captioned manifest of its first k clips for each k in sizes
    (text-audio metrics need the captions)."""
    ds = synthetic_dataset(n_clips=n, sample_rate=RATE, duration_s=duration, seed=seed)
    rows = []
    for clip in ds.clips:
        write_audio(directory / "audio" / f"{clip.id}.wav", ds.load(clip)[0], RATE)
        rows.append(json.dumps({"id": clip.id, "path": f"audio/{clip.id}.wav", "caption": clip.caption}) + "\n")
    manifests = {}
    for k in sizes or (n,):
        manifests[k] = directory / f"first-{k}.jsonl"
        manifests[k].write_text("".join(rows[:k]))
    return manifests


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def status_mib(field: str) -> float:
    """A memory field of /proc/self/status (VmRSS, VmHWM, ...) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def reset_peak_rss() -> None:
    """Linux: set the peak-RSS mark (VmHWM) to the current RSS, so a later peak is that of what follows."""
    Path("/proc/self/clear_refs").write_text("5")


def throughput(name: str, manifest: Path, warmup: Path, audio_s: float, batch_sizes: list[int],
               root: Path) -> list[dict]:
    metric = metric_for(name)
    weights = WeightsChoice(mode="untrained", seed=0)
    t0 = time.perf_counter()
    backbone = load_backbone(name, weights)
    build_s = time.perf_counter() - t0
    forward = [0.0]

    def timed(batch):
        t = time.perf_counter()
        out = backbone.embed(batch)
        forward[0] += time.perf_counter() - t
        return out

    probe = dataclasses.replace(backbone, embed=timed, embed_tensors=None)  # every forward through `timed`
    rows = []
    for bs in batch_sizes:
        forward[0] = 0.0
        opts = ScoreOptions(weights=weights, cache_root=root / f"cache-{name}-bs{bs}", batch_size=bs, bootstrap=0,
                            progress=False)
        # Untimed: one clip first, so one-off costs (kernel selection, allocator growth) are not counted.
        embed_set(load_manifest(warmup), metric.protocol, backbone, dataclasses.replace(opts, cache_root=root / "warm"))
        forward[0] = 0.0
        t0 = time.perf_counter()
        emb = embed_set(load_manifest(manifest), metric.protocol, probe, opts)
        wall = time.perf_counter() - t0
        rows.append({"backbone": name, "protocol": metric.protocol.id, "batch_size": bs, "build_s": build_s,
                     "wall_s": wall, "forward_s": forward[0], "pipeline_audio_s_per_s": audio_s / wall,
                     "forward_audio_s_per_s": audio_s / forward[0] if forward[0] else None,
                     "examples": int(sum(len(e) for e in next(iter(emb.outputs.values()))))})
    return rows


def memory_child(args) -> None:
    """Runs in a fresh process: build the backbone, score N vs N clips, print peak RSS as JSON."""
    weights = WeightsChoice(mode="untrained", seed=0)
    load_backbone(args.backbone, weights)
    after_build = _peak_mib()
    opts = ScoreOptions(weights=weights, cache_root=Path(args.cache), batch_size=16, bootstrap=args.bootstrap,
                        progress=False)
    # Building the model (and importing its libraries) sets a peak that scoring may never reach.
    before_scoring = status_mib("VmRSS")
    reset_peak_rss()
    t0 = time.perf_counter()
    (result,) = score([args.metric], load_manifest(args.gen), load_manifest(args.ref), opts)
    dim = next(iter(load_backbone(args.backbone, weights).outputs.values()))
    print(json.dumps({"after_build_mib": after_build, "peak_mib": _peak_mib(), "seconds": time.perf_counter() - t0,
                      "rss_before_scoring_mib": before_scoring, "scoring_peak_mib": status_mib("VmHWM"),
                      "n_embeddings": sum(result[role]["n_embeddings"] for role in ("generated", "reference")
                                          if result[role]),
                      "dim": dim, "value": result["value"]}))


def memory(name: str, sizes: list[int], sets: dict[int, tuple[Path, Path]], root: Path, bootstrap: int) -> list[dict]:
    metric = metric_for(name)
    rows = []
    for n in sizes:
        gen, ref = sets[n]
        cmd = [sys.executable, "-m", "bench.benchmarks.backbones", "--memory-child", "--backbone", name,
               "--metric", metric.id, "--gen", str(gen), "--ref", str(ref), "--cache", str(root / f"mem-{name}-{n}"),
               "--bootstrap", str(bootstrap)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            last = done.stderr.strip().splitlines()[-1:] or ["(no message)"]
            raise RuntimeError(f"memory run with {n} clips failed: {last[0]}")
        measured = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append({"backbone": name, "metric": metric.id, "clips_per_set": n, **measured,
                     # float32 as stored per clip + the metric's float64 stack of them
                     "embeddings_mib": measured["n_embeddings"] * measured["dim"] * (4 + 8) / 2 ** 20})
    return rows


def main() -> None:
    os.environ.setdefault("BENCH_OFFLINE", "1")  # untrained weights need nothing; never wait on retries
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", action="append", help="only these backbones (default: every registered one)")
    parser.add_argument("--clips", type=int, default=16, help="clips for the throughput runs")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per clip for the throughput runs")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--memory-sizes", type=int, nargs="+", default=[100, 1000], help="clips per set")
    parser.add_argument("--memory-duration", type=float, default=1.0, help="seconds per clip for the memory runs")
    parser.add_argument("--bootstrap", type=int, default=10, help="bootstrap resamples in the memory runs")
    parser.add_argument("--only", choices=("throughput", "memory"), help="run one of the two measurements")
    parser.add_argument("--json", help="also write every measurement to this JSON file")
    parser.add_argument("--stand-in-tokenizer", action="store_true",
                        help="CLAP: use a temporary HF cache with a stand-in roberta-base tokenizer")
    # internal: one memory measurement in a fresh process
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    for hidden in ("--metric", "--gen", "--ref", "--cache"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        args.backbone = args.backbone[0]
        memory_child(args)
        return

    names = args.backbone or sorted(BACKBONES.load())
    stand_in = None
    if args.stand_in_tokenizer:
        import huggingface_hub.constants as hub

        stand_in = tempfile.TemporaryDirectory()
        write_roberta_tokenizer(Path(stand_in.name))
        os.environ["HF_HUB_CACHE"] = hub.HF_HUB_CACHE = stand_in.name  # the env var: for memory children
    skipped = [n for n in names if metric_for(n) is None]
    names = [n for n in names if n not in skipped]
    say = partial(print, flush=True)
    say(f"backbones: {', '.join(names)}" + (f" (no metric uses {', '.join(skipped)}: skipped)" if skipped else ""))
    # Other work on the machine slows every number down: the load average says how busy it was.
    say(f"untrained weights, device {torch.device('cuda' if torch.cuda.is_available() else 'cpu')}, "
        f"torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs, load average at start "
        f"{os.getloadavg()[0]:.1f}")
    w = max(len(n) for n in names)
    out = {"throughput": [], "memory": []}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if args.only in (None, "throughput"):
            manifests = write_set(root / "throughput", args.clips, args.duration, 0, (1, args.clips))
            audio_s = args.clips * args.duration
            say(f"\nthroughput: {args.clips} clips x {args.duration:g} s = {audio_s:g} s of audio, cold cache")
            say(f"{'backbone':<{w}} {'protocol':<26} {'batch':>5} {'build s':>8} {'wall s':>8} {'audio-s/s':>10} "
                f"{'forward audio-s/s':>18}")
            for name in names:
                try:
                    measured = throughput(name, manifests[args.clips], manifests[1], audio_s, args.batch_sizes, root)
                except BenchError as exc:  # e.g. a tokenizer that is not in the local cache
                    say(f"{name:<{w}} could not be built: {exc}")
                    out["throughput"].append({"backbone": name, "error": str(exc)})
                    continue
                for r in measured:
                    out["throughput"].append(r)
                    fwd = f"{r['forward_audio_s_per_s']:.1f}" if r["forward_audio_s_per_s"] else "-"
                    say(f"{name:<{w}} {r['protocol']:<26} {r['batch_size']:>5} {r['build_s']:>8.2f} "
                        f"{r['wall_s']:>8.2f} {r['pipeline_audio_s_per_s']:>10.1f} {fwd:>18}")
        if args.only in (None, "memory"):
            largest = max(args.memory_sizes)
            gen = write_set(root / "mem-gen", largest, args.memory_duration, 1, tuple(args.memory_sizes))
            ref = write_set(root / "mem-ref", largest, args.memory_duration, 2, tuple(args.memory_sizes))
            sets = {n: (gen[n], ref[n]) for n in args.memory_sizes}
            say(f"\npeak memory: N generated vs N reference clips of {args.memory_duration:g} s, one metric, "
                f"bootstrap {args.bootstrap}, batch 16, each N in a fresh process")
            say(f"{'backbone':<{w}} {'metric':<26} {'N':>5} {'process peak MiB':>16} {'RSS before scoring':>18} "
                f"{'peak while scoring':>18} {'embeddings MiB':>15} {'seconds':>8}")
            for name in names:
                try:
                    measured = memory(name, args.memory_sizes, sets, root, args.bootstrap)
                except RuntimeError as exc:
                    say(f"{name:<{w}} {exc}")
                    out["memory"].append({"backbone": name, "error": str(exc)})
                    continue
                for r in measured:
                    out["memory"].append(r)
                    say(f"{name:<{w}} {r['metric']:<26} {r['clips_per_set']:>5} {r['peak_mib']:>16.0f} "
                        f"{r['rss_before_scoring_mib']:>18.0f} {r['scoring_peak_mib']:>18.0f} "
                        f"{r['embeddings_mib']:>15.1f} {r['seconds']:>8.1f}")
    if stand_in:
        stand_in.cleanup()
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
