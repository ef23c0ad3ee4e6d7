"""Train the mel-inception evaluator on a labelled clip set: `bench train-evaluator` and suites' [evaluators].

Each clip's first label is its class. Inputs are exactly what scoring feeds the backbone (the
`mel-inception@diffsound` protocol), standardised per mel bin with the training split's statistics.
Optimiser as Diffsound section V-B: Adam, learning rate 3e-3, weight decay 1e-3 (their batch was 64).

Deterministic given the seed: the initialisation, the validation split, every batch and every dropout
mask come from CPU torch.Generators seeded from (seed, purpose, index), never the global RNG, so step k
does not depend on how training got there. Checkpoints every K steps (model + Adam state) make a rerun
continue from the last one and end with the same bytes as an uninterrupted run. CPU kernels are
deterministic for a fixed thread count, so training runs on `threads` intra-op threads (default 1,
part of the settings and the card) whatever the machine has; another torch version or CPU
instruction set can still differ in the last bits.
"""
from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from bench.core.cache import atomic_write_json, stable_hash
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

TRAINER_VERSION = 1
TRAINABLE = ("mel-inception",)
CHECKPOINT_NAME = "mel-inception.pt"
CARD_NAME = "mel-inception.json"
SPEC_KEYS = {"data", "config", "steps", "seed", "batch_size", "schedule"}  # a suite's [evaluators.mel-inception]


@dataclass(frozen=True)
class TrainSpec:
    config: str = "tiny"
    steps: int = 150
    seed: int = 0
    batch_size: int = 16
    lr: float = 3e-3
    weight_decay: float = 1e-3
    val_fraction: float = 0.2
    # "constant": Diffsound's stated 3e-3 throughout (no schedule is given); "cosine": decayed to 0
    # over the run, so a short CPU run ends on a settled model rather than mid-oscillation.
    schedule: str = "constant"
    # Intra-op threads while training. One by default: the checkpoint's bytes then do not depend on the
    # machine's core count, and the tiny model's small kernels gain little from more threads.
    threads: int = 1

    def __post_init__(self) -> None:
        from metrics.backbones.mel_inception import CONFIGS

        if self.config not in CONFIGS:
            raise ConfigError(f"evaluator config {self.config!r} is unknown; choose one of {', '.join(CONFIGS)}")
        for name in ("steps", "batch_size", "seed", "threads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "seed" else 1):
                raise ConfigError(f"evaluator {name} must be an integer >= {0 if name == 'seed' else 1}, got {value!r}")
        if not (self.lr > 0 and self.weight_decay >= 0):
            raise ConfigError(f"evaluator lr must be > 0 and weight_decay >= 0, got {self.lr!r}, {self.weight_decay!r}")
        if self.schedule not in ("constant", "cosine"):
            raise ConfigError(f"evaluator schedule must be 'constant' or 'cosine', got {self.schedule!r}")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"val_fraction must lie in [0, 1), got {self.val_fraction!r}")


# ------------------------------------------------------------------------------------------- data

def class_labels(clipset) -> tuple[list[str], np.ndarray]:
    """(sorted class names, class index per clip) from each clip's first label."""
    unlabelled = [c for c in clipset.clips if not c.labels]
    if unlabelled:
        listed = "; ".join(f"{c.id!r} ({c.origin})" for c in unlabelled[:5])
        raise ConfigError(f"training data {clipset.source}: {len(unlabelled)} of {len(clipset)} clip(s) have no "
                          f"labels, first: {listed}. The evaluator trains on each clip's first label: give a "
                          "manifest with a 'labels' column (JSONL list, CSV 'a;b')")
    firsts = [c.labels[0] for c in clipset.clips]
    classes = sorted(set(firsts))
    if len(classes) < 2:
        raise ConfigError(f"training data {clipset.source}: every clip has the label {classes[0]!r}; a "
                          "classifier needs at least 2 classes")
    index = {c: i for i, c in enumerate(classes)}
    return classes, np.array([index[f] for f in firsts], np.int64)


def training_fingerprint(clipset, classes: list[str], labels: np.ndarray) -> str:
    """The audio (set fingerprint) and the labels trained on."""
    return stable_hash({"audio": clipset.fingerprint(),
                        "labels": [[c.id, classes[k]] for c, k in zip(clipset.clips, labels.tolist())]})


def split(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified: round(val_fraction * n_c) clips of every class (at least 1 when it has 2+)."""
    import torch

    train, val = [], []
    for k in np.unique(labels):
        members = np.flatnonzero(labels == k)
        order = members[torch.randperm(len(members), generator=derived_generator(seed, "split", int(k))).numpy()]
        n_val = 0 if val_fraction == 0 else min(len(members) - 1, max(1, round(val_fraction * len(members))))
        val.extend(order[:n_val])
        train.extend(order[n_val:])
    return np.sort(np.array(train, np.int64)), np.sort(np.array(val, np.int64))


def prepare_inputs(clipset, workers: int = 2, progress: bool = True) -> np.ndarray:
    """[n, 80, 860] float32 log-mels of every clip, through the scoring protocol."""
    from bench.core.audio import check_waveform
    from metrics.mel_metrics import MEL_DIFFSOUND

    def one(clip):
        wave, rate = clipset.load(clip)
        check_waveform(wave, clip.origin)
        return MEL_DIFFSOUND.prepare(wave, rate)[0]

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        mels = list(tqdm(pool.map(one, clipset.clips), total=len(clipset), unit="clip", disable=not progress,
                         desc="log-mels"))
    return np.stack(mels)


# --------------------------------------------------------------------------------------- training

def run_key(spec: TrainSpec, fingerprint: str) -> dict:
    """Everything the trained weights depend on (the code aside: TRAINER_VERSION stands for it)."""
    from metrics.backbones import mel_inception as mi
    from metrics.mel_metrics import MEL_DIFFSOUND

    return {"trainer_version": TRAINER_VERSION, "backbone": mi.BACKBONE, "spec": asdict(spec),
            "config": mi.CONFIGS[spec.config].to_dict(), "fingerprint": fingerprint,
            "protocol": [MEL_DIFFSOUND.id, MEL_DIFFSOUND.version]}


def _accuracy(model, x, y, batch_size: int = 32) -> float | None:
    import torch

    if len(y) == 0:
        return None
    model.eval()
    correct = 0
    with torch.inference_mode():
        for start in range(0, len(y), batch_size):
            correct += int((model(x[start:start + batch_size])[1].argmax(1) == y[start:start + batch_size]).sum())
    return round(correct / len(y), 6)


def train(data, out_dir: Path, spec: TrainSpec, base_dir: Path | None = None, checkpoint_every: int = 50,
          progress: bool = True, log=print, workers: int = 2) -> TrainResult:
    """Train (or resume, or reuse) the evaluator in `out_dir`; returns its final checkpoint."""
    with pinned_threads(spec.threads):
        return _train(data, Path(out_dir), spec, base_dir, checkpoint_every, progress, log, workers)


def _train(data, out_dir: Path, spec: TrainSpec, base_dir, checkpoint_every, progress, log, workers) -> TrainResult:
    import torch
    import torch.nn.functional as F

    from metrics.backbones import mel_inception as mi
    from metrics.mel_metrics import MEL_DIFFSOUND

    clipset = data if hasattr(data, "clips") else open_training_set(data, base_dir or Path.cwd())
    classes, labels = class_labels(clipset)
    fingerprint = training_fingerprint(clipset, classes, labels)
    config = mi.CONFIGS[spec.config]
    run_hash = stable_hash(run_key(spec, fingerprint))
    final = out_dir / CHECKPOINT_NAME
    existing = reuse_finished(final, run_hash, lambda f: mi.load_trained(f).card, "an evaluator", log)
    if existing is not None:
        return TrainResult(final, existing, reused=True)

    t0 = time.perf_counter()
    train_idx, val_idx = split(labels, spec.val_fraction, spec.seed)
    log(f"training mel-inception ({spec.config}) on {clipset.source}: {len(classes)} classes, "
        f"{len(train_idx)} train / {len(val_idx)} validation clips, {spec.steps} steps of {spec.batch_size}")
    mels = prepare_inputs(clipset, workers, progress)
    mean, std = (torch.tensor(v, dtype=torch.float32) for v in mi.band_statistics([mels[i] for i in train_idx]))
    x = (torch.from_numpy(mels) - mean[:, None]) / std[:, None]  # float32, exactly as the backbone scores
    y = torch.from_numpy(labels)
    x_train, y_train = x[train_idx], y[train_idx]

    model = mi.seeded_init_(mi.empty_model(config, len(classes)), derived_generator(spec.seed, "init"))
    optimizer = torch.optim.Adam(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
    ckpt_dir = out_dir / "checkpoints"
    start = resume(ckpt_dir, run_hash, model, optimizer, lambda f: mi.read_checkpoint(f, "training checkpoint"), log)

    def step_loss(step: int) -> torch.Tensor:
        idx = torch.from_numpy(epoch_batch(step, spec.batch_size, len(train_idx), spec.seed))
        feats = model.features(x_train[idx])
        if config.dropout > 0:  # dropout from this step's own generator (nn.Dropout draws from the global RNG)
            keep = torch.rand(feats.shape, generator=derived_generator(spec.seed, "dropout", step)) >= config.dropout
            feats = feats * keep / (1.0 - config.dropout)
        return F.cross_entropy(model.fc(feats), y_train[idx])

    def lr_at(step: int) -> float:
        return spec.lr * (0.5 * (1 + math.cos(math.pi * step / spec.steps)) if spec.schedule == "cosine" else 1.0)

    log_every, running = max(1, spec.steps // 10), []

    def report(done: int, loss: float) -> None:
        running.append(loss)
        if done % log_every == 0 or done == spec.steps:
            (tqdm.write if progress else log)(f"step {done}/{spec.steps}  loss {np.mean(running):.4f}")
            running.clear()

    def save(done: int) -> None:
        if done < spec.steps:  # the final weights go to CHECKPOINT_NAME below
            save_rolling_checkpoint(ckpt_dir, done, run_hash, model, optimizer)

    history = run_steps(model, optimizer, start, spec.steps, step_loss, every=checkpoint_every, checkpoint=save,
                        desc="train-evaluator", progress=progress, lr_at=lr_at, after_step=report)
    loss_value = history[-1] if history else float("nan")

    train_acc, val_acc = _accuracy(model, x_train, y_train), _accuracy(model, x[val_idx], y[val_idx])
    card = {"backbone": mi.BACKBONE, "config": config.to_dict(), "classes": classes,
            "protocol": {"id": MEL_DIFFSOUND.id, "version": MEL_DIFFSOUND.version},
            "normalisation": "per mel bin: mean of clip means, mean of clip stds (floored at 0.01), over the "
                             "training split",
            "training": {"run_hash": run_hash, "trainer_version": TRAINER_VERSION, "data": clipset.describe(),
                         "fingerprint": fingerprint, "label_rule": "first label of each clip",
                         **asdict(spec), "optimizer": "Adam", "loss": "cross-entropy",
                         "n_train": len(train_idx), "n_val": len(val_idx), "final_loss": round(loss_value, 6),
                         "train_accuracy": train_acc, "val_accuracy": val_acc,
                         "torch": torch.__version__}}
    save_tensors(final, mi.checkpoint_tensors(model, mean.numpy(), std.numpy(), card))
    from bench.core.weights import sha256_file

    sidecar = {**card, "checkpoint": final.name, "sha256": sha256_file(final),
               "seconds": round(time.perf_counter() - t0, 1)}  # timing stays out of the checkpoint's bytes
    atomic_write_json(out_dir / CARD_NAME, sidecar)
    for old in ckpt_dir.glob("step-*.pt"):
        old.unlink(missing_ok=True)
    log(f"train accuracy {train_acc}, validation accuracy {val_acc}; wrote {final} and {out_dir / CARD_NAME}")
    return TrainResult(final, card, reused=False, losses=history)
