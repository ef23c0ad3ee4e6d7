"""Train the small captioner on a captioned clip set: `bench train-evaluator --task captioning`.

Targets are each clip's caption plus its manifest `references`; every (clip, caption) pair is one
training example. Teacher-forced cross-entropy, Adam. Deterministic like the mel evaluator's trainer
(bench.training.evaluator): initialisation and every batch come from CPU generators seeded from
(seed, purpose, index), training runs on a fixed number of threads, checkpoints every K steps let a
rerun resume, and an output folder that already holds this exact run (same data, settings and code
version) is reused.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from bench.core.cache import atomic_write_json, stable_hash
from bench.core.checkpoints import load_checkpoint
from bench.core.clip_sources import open_training_set
from bench.core.errors import ConfigError
from bench.core.seeding import derived_generator, epoch_batch, pinned_threads
from bench.training.loop import run_steps
from bench.training.resumable import (
    TrainResult,
    resume,
    reuse_finished,
    save_rolling_checkpoint,
    save_tensors,
)
from metrics.backbones import captioner

TRAINER_VERSION = 1
CHECKPOINT_NAME = "small-captioner.pt"
CARD_NAME = "small-captioner.json"


@dataclass(frozen=True)
class CaptionTrainSpec:
    config: str = "tiny"
    steps: int = 300
    seed: int = 0
    batch_size: int = 16
    lr: float = 3e-3
    threads: int = 1

    def __post_init__(self) -> None:
        from metrics.backbones.captioner_small import CONFIGS

        if self.config not in CONFIGS:
            raise ConfigError(f"captioner config {self.config!r} is unknown; choose one of {', '.join(CONFIGS)}")
        for name in ("steps", "batch_size", "threads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"captioner {name} must be an integer >= 1, got {value!r}")
        if not self.lr > 0:
            raise ConfigError(f"captioner lr must be > 0, got {self.lr!r}")


def caption_pairs(clipset) -> list[tuple[int, str]]:
    """(clip index, caption) for every caption and reference of every clip; an error names uncaptioned clips."""
    missing = [c for c in clipset.clips if not c.caption]
    if missing:
        listed = "; ".join(f"{c.id!r} ({c.origin})" for c in missing[:5])
        raise ConfigError(f"training data {clipset.source}: {len(missing)} of {len(clipset)} clip(s) have no "
                          f"caption, first: {listed}. The captioner trains on each clip's 'caption' (and its "
                          f"'references'): give a manifest with those fields")
    return [(i, text) for i, c in enumerate(clipset.clips) for text in (c.caption, *c.references)]


def _mels(clipset, workers: int, progress: bool) -> np.ndarray:
    from bench.core.audio import to_mono
    from bench.core.resample import resample
    from metrics.backbones import captioner_small as cs

    def one(clip):
        wave, rate = clipset.load(clip)
        return cs.log_mel(resample(to_mono(wave, "mean"), rate, cs.SAMPLE_RATE, "soxr-hq")[0])[0]

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return np.stack(list(tqdm(pool.map(one, clipset.clips), total=len(clipset), unit="clip",
                                  disable=not progress, desc="log-mels")))


def train_captioner(data, out_dir: Path, spec: CaptionTrainSpec, base_dir: Path | None = None,
                    checkpoint_every: int = 100, progress: bool = True, log=print, workers: int = 2) -> TrainResult:
    with pinned_threads(spec.threads):
        return _train(data, Path(out_dir), spec, base_dir, checkpoint_every, progress, log, workers)


def _train(data, out_dir, spec, base_dir, checkpoint_every, progress, log, workers) -> TrainResult:
    import torch
    import torch.nn.functional as F

    from metrics.backbones import captioner_small as cs

    clipset = data if hasattr(data, "clips") else open_training_set(data, base_dir or Path.cwd())
    pairs = caption_pairs(clipset)
    vocab = list(cs.SPECIALS) + sorted({w for _, text in pairs for w in cs.words(text)})
    fingerprint = stable_hash({"audio": clipset.fingerprint(), "captions": [[clipset.clips[i].id, t] for i, t in pairs]})
    run_hash = stable_hash({"trainer_version": TRAINER_VERSION, "spec": asdict(spec), "fingerprint": fingerprint,
                            "config": cs.CONFIGS[spec.config].to_dict()})
    final = out_dir / CHECKPOINT_NAME
    existing = reuse_finished(final, run_hash, lambda f: cs.load(f).card, "a captioner", log)
    if existing is not None:
        return TrainResult(final, existing, reused=True)

    t0 = time.perf_counter()
    log(f"training small-captioner ({spec.config}) on {clipset.source}: {len(clipset)} clips, {len(pairs)} "
        f"captions, {len(vocab)} words, {spec.steps} steps of {spec.batch_size}")
    mels = _mels(clipset, workers, progress)  # [clips, 64, frames]
    mean = torch.tensor(mels.mean(axis=(0, 2)), dtype=torch.float32)
    std = torch.tensor(np.maximum(mels.std(axis=(0, 2)), 1e-3), dtype=torch.float32)
    x = (torch.from_numpy(mels) - mean[:, None]) / std[:, None]
    index = {w: i for i, w in enumerate(vocab)}
    longest = max(len(cs.words(t)) for _, t in pairs) + 1
    tokens = torch.full((len(pairs), longest + 1), cs.PAD, dtype=torch.long)  # <bos> w1 .. wn <eos> <pad>..
    for k, (_, text) in enumerate(pairs):
        ids = [cs.BOS] + [index[w] for w in cs.words(text)] + [cs.EOS]
        tokens[k, :len(ids)] = torch.tensor(ids)
    clip_of = torch.tensor([i for i, _ in pairs])

    model = cs.SmallCaptioner(cs.CONFIGS[spec.config], len(vocab))
    with torch.no_grad():  # seeded init from our own generator, never the global RNG
        g = derived_generator(spec.seed, "init")
        for name, p in sorted(model.named_parameters()):
            fan_in = p.shape[1] if p.dim() > 1 else p.shape[0]
            p.copy_(torch.empty_like(p).uniform_(-1, 1, generator=g) / fan_in ** 0.5)
    optimizer = torch.optim.Adam(model.parameters(), lr=spec.lr)
    ckpt_dir = out_dir / "checkpoints"
    start = resume(ckpt_dir, run_hash, model, optimizer,
                   lambda f: load_checkpoint(f, "captioner training checkpoint", f"delete {ckpt_dir} to start over"), log)

    def step_loss(step: int) -> torch.Tensor:
        seq = tokens[idx := torch.from_numpy(epoch_batch(step, spec.batch_size, len(pairs), spec.seed))]
        logits = model(x[clip_of[idx]], seq[:, :-1])
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), seq[:, 1:].reshape(-1), ignore_index=cs.PAD)

    def save(done: int) -> None:
        if done < spec.steps:  # the final weights go to CHECKPOINT_NAME below
            save_rolling_checkpoint(ckpt_dir, done, run_hash, model, optimizer)

    history = run_steps(model, optimizer, start, spec.steps, step_loss, every=checkpoint_every, checkpoint=save,
                        desc="train-captioner", progress=progress)
    loss_value = history[-1] if history else float("nan")

    model.eval()
    rows = np.concatenate([captioner.pack(model.greedy(x[s:s + 32])) for s in range(0, len(x), 32)])
    loaded = cs.LoadedCaptioner(model, vocab, mean, std, {})
    exact = float(np.mean([h == (c.caption and " ".join(cs.words(c.caption)))
                           for h, c in zip(loaded.decode(rows), clipset.clips)]))
    card = {"backbone": cs.BACKBONE, "config": cs.CONFIGS[spec.config].to_dict(),
            "frontend": "16 kHz mono, 10 s, log-mel 64 bands (metrics.backbones.captioner_small)",
            "normalisation": "per mel bin: mean and std over all training clips and frames",
            "training": {"run_hash": run_hash, "trainer_version": TRAINER_VERSION, "data": clipset.describe(),
                         "fingerprint": fingerprint, "targets": "caption + references of each clip",
                         **asdict(spec), "optimizer": "Adam", "loss": "teacher-forced cross-entropy",
                         "n_clips": len(clipset), "n_captions": len(pairs), "vocab_size": len(vocab),
                         "final_loss": round(loss_value, 6),
                         "train_exact_caption_rate": round(exact, 6), "torch": torch.__version__}}
    save_tensors(final, cs.checkpoint_tensors(model, vocab, mean.numpy(), std.numpy(), card))
    from bench.core.weights import sha256_file

    atomic_write_json(out_dir / CARD_NAME, {**card, "checkpoint": final.name, "sha256": sha256_file(final),
                                            "seconds": round(time.perf_counter() - t0, 1)})
    for old in ckpt_dir.glob("step-*.pt"):
        old.unlink(missing_ok=True)
    log(f"final loss {loss_value:.4f}; training captions reproduced exactly: {exact:.0%}; wrote {final}")
    return TrainResult(final, card, reused=False, losses=history)
