"""Peak memory of scoring one long clip: 1 minute vs 1 hour of 44.1 kHz stereo (issue 17).

    python -m bench.benchmarks.long_clip_memory [--long-minutes 60] [--check-minutes 3]

Each measurement runs `fad-vggish@audioldm` (untrained VGGish, a windowed protocol that streams long
clips) on a set of one clip against a 30 s reference clip, in a fresh process, and reports that
process's peak RSS (ru_maxrss: imports, model, decoding, hashing, embedding, FD). The target is a
1-hour peak within 1.3x of the 1-minute peak. A second check scores a clip long enough to be streamed
both ways, streamed and decoded whole (today's path), and compares the embeddings bit for bit and the
metric value.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

RATE = 44100
METRIC = "fad-vggish@audioldm"


def write_clip(path: Path, seconds: float, seed: int) -> Path:
    """A tone plus noise, written block by block so the writer itself stays small."""
    rng = np.random.default_rng(seed)
    block = RATE * 10
    with sf.SoundFile(path, "w", RATE, 2, subtype="PCM_16") as f:
        for start in range(0, int(seconds * RATE), block):
            n = min(block, int(seconds * RATE) - start)
            t = (start + np.arange(n)) / RATE
            tone = 0.2 * np.sin(2 * np.pi * (220 + 40 * np.sin(2 * np.pi * t / 7)) * t)
            f.write(np.stack([tone + 0.05 * rng.standard_normal(n), tone * 0.5 + 0.05 * rng.standard_normal(n)], 1))
    return path


def child(args) -> None:
    import bench.batching as batching
    from bench.core import clipsets
    from bench.scoring import embed_set, score
    from metrics.backbones.base import WeightsChoice, load_backbone
    from metrics.inputs import ScoreOptions
    from metrics.registry import get_metric

    if args.whole:  # today's path: every clip decoded and prepared whole
        batching.LONG_CLIP_SAMPLES = clipsets.LONG_CLIP_SAMPLES = 1 << 62
    weights = WeightsChoice(mode="untrained", seed=0)
    options = ScoreOptions(weights=weights, cache_root=Path(args.cache), batch_size=32, bootstrap=0, progress=False)
    t0 = time.perf_counter()
    generated, reference = clipsets.load_directory(args.gen), clipsets.load_directory(args.ref)
    emb = embed_set(generated, get_metric(METRIC).protocol, load_backbone("vggish", weights), options)
    (result,) = score([METRIC], generated, reference, options)  # the embeddings above come from the cache
    rows = np.concatenate(emb.per_clip("embedding"))
    print(json.dumps({"peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "seconds": time.perf_counter() - t0, "value": result["value"], "examples": len(rows),
                      "embeddings_sha256": hashlib.sha256(rows.tobytes()).hexdigest()}))


def measure(gen: Path, ref: Path, cache: Path, whole: bool = False) -> dict:
    cmd = [sys.executable, "-m", "bench.benchmarks.long_clip_memory", "--child", "--gen", str(gen), "--ref", str(ref),
           "--cache", str(cache), *(["--whole"] if whole else [])]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--long-minutes", type=float, default=60.0)
    parser.add_argument("--short-minutes", type=float, default=1.0)
    parser.add_argument("--check-minutes", type=float, default=3.0, help="clip for the streamed-vs-whole check")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--whole", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--gen", help=argparse.SUPPRESS)
    parser.add_argument("--ref", help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    with tempfile.TemporaryDirectory(prefix="long-clip-") as tmp:
        root = Path(tmp)
        ref = root / "ref"
        ref.mkdir()
        write_clip(ref / "ref.wav", 30, seed=1)
        rows = {}
        for name, minutes in (("short", args.short_minutes), ("check", args.check_minutes),
                              ("long", args.long_minutes)):
            (root / name).mkdir()
            write_clip(root / name / f"{name}.wav", minutes * 60, seed=0)
            rows[name] = measure(root / name, ref, root / f"cache-{name}")
            print(f"{minutes:g} min clip (streamed where long): {json.dumps(rows[name])}", flush=True)
            if name == "check":
                rows["check-whole"] = measure(root / name, ref, root / "cache-check-whole", whole=True)
                print(f"{minutes:g} min clip decoded whole (the path before streaming): "
                      f"{json.dumps(rows['check-whole'])}", flush=True)
            if name != "long":
                (root / name / f"{name}.wav").unlink()
    ratio = rows["long"]["peak_mib"] / rows["short"]["peak_mib"]
    same = rows["check"]["embeddings_sha256"] == rows["check-whole"]["embeddings_sha256"]
    print(f"peak RSS: {args.long_minutes:g} min {rows['long']['peak_mib']:.0f} MiB, {args.short_minutes:g} min "
          f"{rows['short']['peak_mib']:.0f} MiB, ratio {ratio:.2f} (target <= 1.3)")
    print(f"streamed vs whole on {args.check_minutes:g} min: embeddings {'identical' if same else 'DIFFER'}, "
          f"{METRIC} {rows['check']['value']!r} vs {rows['check-whole']['value']!r}; peak "
          f"{rows['check']['peak_mib']:.0f} vs {rows['check-whole']['peak_mib']:.0f} MiB")


if __name__ == "__main__":
    main()
