"""Shared by the caption tests: a small captioner trained for a few steps, and WAV manifests of clips."""
from __future__ import annotations

import json
import tempfile
from functools import lru_cache
from pathlib import Path

import soundfile as sf

from bench.core.clip_sources import open_clip_set

TINY_SET = {"builtin": "synthetic", "n_clips": 8, "duration_s": 1.0, "seed": 3}


def tiny_set():
    return open_clip_set(TINY_SET, Path.cwd(), where="test data")


def train_tiny_captioner(out_dir: Path, steps: int = 40):
    from bench.training.captioner import CaptionTrainSpec, train_captioner

    return train_captioner(tiny_set(), out_dir, CaptionTrainSpec(steps=steps, batch_size=8, seed=1),
                           progress=False, log=lambda *a: None)


@lru_cache(maxsize=1)
def shared_captioner():
    """One tiny captioner per test process (trained once, shared by the caption test modules)."""
    out = Path(tempfile.mkdtemp(prefix="bench-test-captioner-"))
    return out, train_tiny_captioner(out)


def write_manifest(folder: Path, rows: list[tuple[str, str, int, list[str]]]) -> Path:
    """rows: (id, caption, index of the tiny set's clip used as audio, references) -> manifest.jsonl."""
    clipset = tiny_set()
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for cid, caption, source, refs in rows:
        wave, rate = clipset.load(clipset.clips[source])
        name = cid.replace("#", "_") + ".wav"
        sf.write(folder / name, wave.T, rate, subtype="FLOAT")
        lines.append(json.dumps({"id": cid, "path": name, "caption": caption, **({"references": refs} if refs else {})}))
    path = folder / "manifest.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path
