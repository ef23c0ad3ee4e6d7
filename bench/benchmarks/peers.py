"""Our end-to-end scoring against the peers' own pipelines, the bare forward floor, and memory.

    python -m bench.benchmarks.peers                      # defaults below, several minutes on 2 cores
    python -m bench.benchmarks.peers --clips 48 --duration 10 --repeats 2 --skip-memory   # the issue's sizes
    python -m bench.benchmarks.peers --skip-memory --workloads mixed --peers audioldm_eval
    python -m bench.benchmarks.peers --skip-memory --peers --backbone-floors   # PaSST and CLAP vs their floors
    python -m bench.benchmarks.peers --before OTHER_CHECKOUT --peers --skip-memory   # before/after, interleaved
    BENCH_DEVICE=cuda python -m bench.benchmarks.peers --skip-memory --peers --clips 64   # on a GPU machine

1. Peers: FD, IS and KL on PANNs Cnn14_16k between N generated and N reference WAVs (16 kHz mono float,
   zero-mean, generated and reference clips named alike so KL pairs them), in two workloads: "equal"
   (every clip --duration s, >= 2 s so audioldm_eval's padding changes nothing) and "mixed" (2N distinct
   lengths from 1 to 20 s, as real sets have), each pipeline in a fresh process (its peak RSS is the
   pipeline's; model building is not timed), pipelines interleaved --repeats times (fastest CPU kept):
   - ours: `score(["fd-panns@audioldm", "is-panns@audioldm", "kl-panns@audioldm"], ...)` at the default
     settings (batch size, workers), cold cache, bootstrap off; then, in the same process, a new generated
     set against the now cached reference ("warm reference": the reference is not embedded again);
   - audioldm_eval 0.0.3 (`pip install --no-deps audioldm_eval==0.0.3 ssr-eval==0.0.7 scikit-image`): its
     WaveDataset + DataLoader (batch 1), its Cnn14 and EvaluationHelper.get_featuresdict, calculate_fid,
     calculate_isc (10 splits, seed 2020) and calculate_kl, exactly as its EvaluationHelper runs them;
     offline workarounds: torchaudio.load -> soundfile (same float samples), the Cnn14 file in its ./ckpt
     folder (our seeded one; an empty placeholder for the 32 kHz file it would otherwise download); its
     VGGish FAD (torch.hub), LSD, PSNR and SSIM are not run (not FD/IS/KL);
   - frechet-audio-distance 0.3.4: `FrechetAudioDistance(model_name="pann").score(bg_dir, eval_dir)` (its
     loader, its vendored Cnn14_16k one clip at a time, its scipy sqrtm FD);
   - floor: the same examples prepared in advance and pushed through our backbone's forward pass alone, in
     the batch shapes our batching gives them (bench.batching: equal shapes batched, mixed lengths one clip
     at a time), nothing padded, with the malloc settings ours embeds with (bench.core.allocator): our
     end-to-end time as a multiple of that.
   All load the SAME random weights: one seeded Cnn14_16k saved in Zenodo's layout (ours reads it as a
   local checkpoint). The values must agree; the weights are random, so they mean nothing beyond that.
   frechet-audio-distance's own `score()` returns -1 here (its sqrtm call fails on SciPy 1.17, and it
   flattens PANNs embeddings into one vector), so its FD is recomputed from its embeddings in closed form.
2. --backbone-floors: the mixed workload for kl-passt@stableaudio and clap@general (untrained weights; CLAP
   with a stand-in tokenizer, unused): our embedding of both sets (decode, prepare, batch, forward, cache;
   clap@general's text side needs captions) vs the bare forward floor of the same examples in our batch
   shapes.
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
from pathlib import Path

import numpy as np
import torch

from bench.benchmarks.backbones import reset_peak_rss, status_mib, write_set
from bench.benchmarks.stand_in_tokenizer import write_roberta_tokenizer
from bench.core.audio import write_audio
from bench.core.clipsets import load_directory, load_manifest
from bench.core.synthetic import synthetic_dataset
from bench.scoring import embed_set, score
from metrics.backbones.base import WeightsChoice, load_backbone
from metrics.inputs import ScoreOptions
from metrics.panns_metrics import PANNS_16K_AUDIOLDM
from metrics.registry import get_metric

RATE = 16000
METRICS = ["fd-panns@audioldm", "is-panns@audioldm", "kl-panns@audioldm"]
# One 1 s window per 1 s clip (the audioldm preset pads to 2 s: twice the compute for the same question).
MEMORY_METRIC = "fad-vggish@google"
PIPELINES = ("ours", "audioldm_eval", "fad", "floor")
FLOOR_METRICS = {"passt": "kl-passt@stableaudio", "clap": "clap@general"}


def mixed_lengths(n: int, low: float = 1.0, high: float = 20.0) -> list[float]:
    """2n distinct clip lengths spread over [low, high] s (whole samples), in a fixed shuffled order."""
    lengths = np.linspace(low, high, 2 * n)
    return [float(x) for x in lengths[np.random.default_rng(0).permutation(2 * n)]]


def write_pair(root: Path, n: int, duration: float, lengths: list[float] | None = None,
               roles=(("ref", 0), ("gen", 1), ("gen2", 2))) -> dict[str, Path]:
    """N clips per role (synthetic set, one seed per role; same file names in every role), zero-mean
    mono float WAVs: all of `duration` s, or of the given 2N lengths (reference first, then generated;
    a second generated set reuses the generated lengths)."""
    dirs = {}
    for role, seed in roles:
        longest = max(lengths) if lengths else duration
        ds = synthetic_dataset(n_clips=n, sample_rate=RATE, duration_s=longest, seed=seed)
        for i, clip in enumerate(ds.clips):
            wave = ds.load(clip)[0][:1].astype(np.float64)
            if lengths:
                wave = wave[:, :int(lengths[i + (n if role != "ref" else 0)] * RATE)]
            write_audio(root / role / f"{clip.id}.wav", (wave - wave.mean()).astype(np.float32), RATE)
        dirs[role] = root / role
    return dirs


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


def _clock():
    return time.perf_counter(), time.process_time()


def _since(start) -> dict:
    return {"wall": time.perf_counter() - start[0], "cpu": time.process_time() - start[1]}


def _ours_options(ckpt: str | None, cache: Path, batch_size: int | None):
    weights = (WeightsChoice(mode="pretrained", local_files=((PANNS_16K_AUDIOLDM.backbone, ckpt),),
                             cache_root=cache / "weights", allow_download=False)
               if ckpt else WeightsChoice(mode="untrained", seed=0))
    sizes = {"batch_size": batch_size} if batch_size else {}  # None: the default settings
    return ScoreOptions(weights=weights, cache_root=cache, bootstrap=0, progress=False, **sizes)


def run_ours(job: dict) -> dict:
    opts = _ours_options(job["ckpt"], Path(job["cache"]), job["batch_size"])
    for metric in job["metrics"]:
        load_backbone(get_metric(metric).protocol.backbone, opts.weights)  # built outside the timing
    reset_peak_rss()
    start = _clock()
    if job.get("embed_only"):  # text-audio metrics need captions: their audio embedding alone
        protocol = get_metric(job["metrics"][0]).protocol
        backbone = load_backbone(protocol.backbone, opts.weights)
        for role in ("gen", "ref"):
            embed_set(load_directory(job[role]), protocol, backbone, opts)
        return {**_since(start), "scoring_peak_mib": status_mib("VmHWM"), "values": {}}
    results = score(job["metrics"], load_directory(job["gen"]), load_directory(job["ref"]), opts)
    out = {**_since(start), "scoring_peak_mib": status_mib("VmHWM"),
           "values": {r["metric"]: r["value"] for r in results}}
    if job.get("gen2"):
        start = _clock()
        score(job["metrics"], load_directory(job["gen2"]), load_directory(job["ref"]), opts)
        out["warm_reference"] = _since(start)
    return out


def run_audioldm_eval(job: dict) -> dict:
    """audioldm_eval 0.0.3's own FD/IS/KL path (EvaluationHelper.calculate_metrics' PANNs part)."""
    import types

    import soundfile as sf

    _importable_peer()
    from audioldm_eval import calculate_fid, calculate_isc, calculate_kl
    from audioldm_eval.datasets import load_mel
    from audioldm_eval.eval import EvaluationHelper
    from audioldm_eval.feature_extractors.panns import Cnn14

    def load(path):  # torchaudio.load needs torchcodec + FFmpeg here: the same float samples by soundfile
        data, rate = sf.read(path, dtype="float32", always_2d=True)
        return torch.from_numpy(np.ascontiguousarray(data.T)), rate

    load_mel.torchaudio = types.SimpleNamespace(load=load, functional=load_mel.torchaudio.functional)
    work = Path(job["cache"])
    (work / "ckpt").mkdir(parents=True, exist_ok=True)
    os.symlink(job["ckpt"], work / "ckpt" / "Cnn14_16k_mAP=0.438.pth")
    (work / "ckpt" / "Cnn14_mAP=0.431.pth").touch()  # present, so it does not try to download it
    os.chdir(work)  # it reads ckpt/... relative to the working directory
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        model = Cnn14(features_list=["2048", "logits"], sample_rate=16000, window_size=512, hop_size=160,
                      mel_bins=64, fmin=50, fmax=8000, classes_num=527).eval()
        helper = EvaluationHelper.__new__(EvaluationHelper)  # its __init__ also builds VGGish (torch.hub)
        helper.device, helper.mel_model = torch.device("cpu"), model
        reset_peak_rss()
        start = _clock()
        loaders = [torch.utils.data.DataLoader(load_mel.WaveDataset(job[role], RATE), batch_size=1, num_workers=0)
                   for role in ("gen", "ref")]
        gen, ref = (helper.get_featuresdict(loader) for loader in loaders)
        values = {"fd-panns@audioldm": calculate_fid(gen, ref, feat_layer_name="2048")["frechet_distance"],
                  "is-panns@audioldm": calculate_isc(gen, feat_layer_name="logits", splits=10,
                                                     samples_shuffle=True, rng_seed=2020)["inception_score_mean"],
                  "kl-panns@audioldm": calculate_kl(gen, ref, "logits", True)[0][
                      "kullback_leibler_divergence_softmax"]}
        timing = _since(start)
    return {**timing, "scoring_peak_mib": status_mib("VmHWM"), "values": values}


def run_fad(job: dict) -> dict:
    """frechet-audio-distance 0.3.4's score(); its FD in closed form from its own embeddings."""
    _importable_peer()
    from frechet_audio_distance import FrechetAudioDistance

    with contextlib.redirect_stdout(io.StringIO()):  # it prints; built outside the timing
        peer = FrechetAudioDistance(ckpt_dir=str(Path(job["ckpt"]).parent), model_name="pann", sample_rate=RATE,
                                    audio_load_worker=2, verbose=False)
        reset_peak_rss()
        start = _clock()
        peer.score(job["ref"], job["gen"])
        timing = _since(start)
        peak = status_mib("VmHWM")
        load = peer._FrechetAudioDistance__load_audio_files
        embs = [np.asarray(peer.get_embeddings(load(job[role]), RATE), np.float64) for role in ("gen", "ref")]
    # Its PANNs branch concatenates the per-clip 2048-d vectors into ONE vector; as [n, 2048] they are the
    # per-clip embeddings FD is defined on. tr sqrt(S1 S2) is the nuclear norm of A B^T for S = A^T A.
    a, b = (e.reshape(job["clips"], -1) for e in embs)
    ca, cb = (a - a.mean(0)) / np.sqrt(len(a) - 1), (b - b.mean(0)) / np.sqrt(len(b) - 1)
    fd = float(np.sum((a.mean(0) - b.mean(0)) ** 2) + np.sum(ca * ca) + np.sum(cb * cb)
               - 2 * np.linalg.svd(ca @ cb.T, compute_uv=False).sum())
    return {**timing, "scoring_peak_mib": peak, "values": {"fd-panns@audioldm": fd}}


def run_floor(job: dict) -> dict:
    """Bare forward passes of every example, prepared untimed, in the batches ours plans for them (chunks
    of batch_size clips, same-shape examples together), without the once-per-kind batching check."""
    from bench.batching import plan_batches  # here: a --before checkout may not have these
    from bench.core.allocator import keep_freed_buffers

    protocol = get_metric(job["metrics"][0]).protocol
    opts = _ours_options(job["ckpt"], Path(job["cache"]), job["batch_size"])
    backbone = load_backbone(protocol.backbone, opts.weights)
    batch_size = job["batch_size"] or ScoreOptions().batch_size
    chunks = []
    for role in ("gen", "ref"):
        clips = load_directory(job[role])
        prepared = [protocol.prepare(*clips.load(c)) for c in clips.clips]
        chunks += [prepared[start:start + batch_size] for start in range(0, len(prepared), batch_size)]
    examples = sum(len(x) for chunk in chunks for x in chunk)
    run = backbone.embed_tensors or backbone.embed
    keep_freed_buffers()  # the malloc settings ours embeds with
    reset_peak_rss()
    start = _clock()
    for chunk in chunks:
        for batch in plan_batches(chunk, batch_size, backbone.device):
            for value in run(np.stack([chunk[c][i] for c, i in batch])).values():
                np.asarray(value.cpu() if hasattr(value, "cpu") else value)
    return {**_since(start), "scoring_peak_mib": status_mib("VmHWM"), "examples": examples}


RUNNERS = {"ours": run_ours, "audioldm_eval": run_audioldm_eval, "fad": run_fad, "floor": run_floor}


def run_child(job: dict) -> dict:
    """One pipeline in a fresh process: its timing, values and peak RSS (ru_maxrss: the whole process).
    "before": ours, from the checkout job["before"] (this file runs with that checkout's bench package)."""
    env = dict(os.environ)
    if job["pipeline"] == "before":
        env["PYTHONPATH"] = os.pathsep.join([job["before"], env.get("PYTHONPATH", "")])
        job = {**job, "pipeline": "ours"}
    done = subprocess.run([sys.executable, __file__, "--child", json.dumps(job)], env=env,
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{job['pipeline']} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def child_main(job: dict) -> None:
    out = RUNNERS[job["pipeline"]](job)
    out["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))


def _fmt(r: dict) -> str:
    return f"{r['wall']:7.2f} s wall {r['cpu']:7.2f} s CPU  peak RSS {r['peak_mib']:5.0f} MiB"


def compare(args, root: Path, ckpt: Path | None, dirs: dict, pipelines: list[str], metrics: list[str], say,
            embed_only: bool = False) -> None:
    """Every pipeline --repeats times, interleaved, each in a fresh process; the fastest (CPU) of each."""
    runs: dict[str, list[dict]] = {p: [] for p in pipelines}
    for r in range(args.repeats):
        for p in pipelines:
            job = {"pipeline": p, "ckpt": str(ckpt) if ckpt else None, "cache": str(root / f"{p}-{r}"),
                   "batch_size": args.batch_size, "metrics": metrics, "clips": args.clips, "embed_only": embed_only,
                   "before": args.before,
                   **{role: str(d) for role, d in dirs.items()}}
            runs[p].append(run_child(job))
    best = {p: min(rs, key=lambda x: x["cpu"]) for p, rs in runs.items()}
    ours = best["ours"]
    for p in pipelines:
        r = best[p]
        values = "  ".join(f"{k.split('@')[0]} {v:.6f}" for k, v in r.get("values", {}).items())
        say(f"   {p:14s} {_fmt(r)}   {values}")
        if p not in ("ours", "floor") and r["values"]:
            rel = {k: abs(ours["values"][k] - v) / max(abs(v), 1e-12) for k, v in r["values"].items()}
            say(f"     ours vs {p}: {ours['cpu'] / r['cpu']:.2f}x CPU, {ours['wall'] / r['wall']:.2f}x wall "
                f"(speed-up {r['cpu'] / ours['cpu']:.2f}x CPU); peak RSS {ours['peak_mib'] / r['peak_mib']:.2f}x; "
                "relative value differences " + ", ".join(f"{k.split('@')[0]} {v:.1e}" for k, v in rel.items()))
    if "floor" in best:
        say(f"     ours / floor: {ours['cpu'] / best['floor']['cpu']:.2f}x CPU, "
            f"{ours['wall'] / best['floor']['wall']:.2f}x wall ({best['floor']['examples']} examples)")
    if "warm_reference" in ours:
        w = ours["warm_reference"]
        say(f"     ours, new generated set vs the cached reference: {w['wall']:.2f} s wall {w['cpu']:.2f} s CPU "
            f"({w['cpu'] / ours['cpu']:.2f}x the cold run: the reference is not embedded again)")
    if len(runs["ours"]) > 1:
        say("     (CPU s of every run, in order: " + "; ".join(
            f"{p} " + " ".join(f"{x['cpu']:.1f}" for x in rs) for p, rs in runs.items()) + ")")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=16, help="clips per set for the peer comparison")
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per clip (>= 2)")
    parser.add_argument("--batch-size", type=int, default=None, help="ours and the floor (default: the default)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the shared random Cnn14_16k weights")
    parser.add_argument("--memory-sizes", type=int, nargs="+", default=[200, 2000], help="clips per set")
    parser.add_argument("--memory-duration", type=float, default=1.0)
    parser.add_argument("--skip-memory", action="store_true", help="only the timing comparison")
    parser.add_argument("--skip-peer", action="store_true", help="only the memory measurement")
    parser.add_argument("--workloads", nargs="+", choices=("equal", "mixed"), default=["equal", "mixed"],
                        help="equal: every clip --duration s; mixed: 2N distinct lengths from 1 to 20 s")
    parser.add_argument("--peers", nargs="*", choices=("audioldm_eval", "fad"), default=["audioldm_eval", "fad"],
                        help="peer pipelines to time (none: ours and the floor only)")
    parser.add_argument("--backbone-floors", action="store_true",
                        help="also: PaSST and CLAP metrics on the mixed workload vs their floors")
    parser.add_argument("--before", metavar="CHECKOUT", help="also time ours from another checkout of this "
                        "project (its bench package; same options), interleaved with the others")
    parser.add_argument("--repeats", type=int, default=1, help="run the pipelines alternately this many "
                        "times and keep each one's fastest (a shared machine's load drifts)")
    args = parser.parse_args()
    if args.duration < 2:
        parser.error("--duration must be >= 2 s (audioldm_eval pads shorter clips; the peer does not)")
    say = lambda *a: print(*a, flush=True)
    say(f"torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs, load average at start "
        f"{os.getloadavg()[0]:.1f}; random (seeded) weights: values are comparable between pipelines only")

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if not args.skip_peer:
            ckpt = shared_checkpoint(root / "fad-ckpt", args.seed)
            for n, workload in enumerate(args.workloads, 1):
                lengths = mixed_lengths(args.clips) if workload == "mixed" else None
                dirs = write_pair(root / workload, args.clips, args.duration, lengths)
                what = ("distinct lengths 1-20 s" if lengths else f"{args.duration:g} s")
                audio_s = sum(lengths) if lengths else 2 * args.clips * args.duration
                say(f"\n1.{n} fd/is/kl-panns@audioldm, {workload} lengths: {args.clips} generated vs {args.clips} "
                    f"reference clips of {what} ({audio_s:g} s of audio), batch size "
                    f"{args.batch_size or 'default'}")
                before = ["before"] if args.before else []
                compare(args, root / workload, ckpt, dirs, ["ours", *before, *args.peers, "floor"], METRICS, say)
                if lengths and "fad" in args.peers:
                        say("   (audioldm_eval zero-pads clips under 2 s to 2 s, as ours does; frechet-audio-distance "
                        "does not, so its FD differs by design on the mixed workload)")
        if args.backbone_floors:
            write_roberta_tokenizer(root / "hub")  # CLAP builds its tokenizer (unused here) from the HF cache
            os.environ["HF_HUB_CACHE"] = str(root / "hub")  # read by the children
            dirs = write_pair(root / "floors", args.clips, args.duration, mixed_lengths(args.clips),
                              roles=(("ref", 0), ("gen", 1)))
            for n, metric in enumerate(FLOOR_METRICS.values(), 1):
                say(f"\n2.{n} {metric} (untrained), mixed lengths: {args.clips} vs {args.clips} clips of 1-20 s")
                before = ["before"] if args.before else []
                compare(args, root / f"floor-{n}", None, dirs, ["ours", *before, "floor"], [metric], say,
                        embed_only=True)

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
    elif sys.argv[1:2] == ["--child"]:
        child_main(json.loads(sys.argv[2]))
    else:
        main()
