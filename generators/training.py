"""Training any trainable reference generator: the Trainable protocol, checkpoints, the training loop.

A generator module makes itself trainable with `@register_trainable(name)` on a class with
`default_config(size)`, `build(config, seed)` and `training_loss(model, batch, rng)`; `bench train NAME`
then trains it on any clip set (manifest, folder, builtin:synthetic).

Deterministic given the seed: step k's batch (clip order, crop offsets) and every random draw of the
loss come from CPU torch.Generators seeded from (seed, purpose, k), never from how training got there;
the global torch RNG is also reseeded per step (inside fork_rng) so stray global draws stay reproducible.
A checkpoint holds model + optimizer state, so resuming from step k gives the bytes an uninterrupted run
gives. Bit-identity holds for a fixed intra-op thread count (`threads`, default 1, recorded).

Checkpoint = torch.save of a plain dict (loadable with weights_only=True):
{"format", "generator", "config", "step", "model", "optimizer", "rng_state", "data_fingerprint", "training"}.
"""
from __future__ import annotations

import hashlib
import io
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from tqdm import tqdm

from bench.core.cache import atomic_write_bytes, stable_hash
from bench.core.errors import CheckpointError, ConfigError
from bench.core.registry import Registry

FORMAT = "bench-generator-checkpoint/1"
CHECKPOINT_RE = re.compile(r"^step-(\d{6,})\.pt$")
LOG_NAME = "train_log.jsonl"


@dataclass
class TrainingBatch:
    audio: torch.Tensor  # [B, C, N] float32 at config["sample_rate"]
    captions: list[str]
    ids: list[str]


class Trainable(Protocol):
    name: str

    def default_config(self, size: str = "tiny") -> dict: ...

    def build(self, config: dict, seed: int) -> torch.nn.Module: ...

    def training_loss(self, model: torch.nn.Module, batch: TrainingBatch, rng: torch.Generator) -> torch.Tensor: ...


class _TrainableRegistry(Registry):
    """Trainables live in generator modules: loading them means loading the generator registry."""

    def load(self) -> "Registry":
        from generators.base import GENERATORS

        GENERATORS.load()
        return super().load()


TRAINABLES = _TrainableRegistry("trainable generator")


def register_trainable(name: str):
    """Class decorator: registers an instance (no-argument constructor) of the class under `name`."""

    def wrap(cls):
        cls.name = name
        TRAINABLES.add(name, cls())
        return cls

    return wrap


def get_trainable(name: str) -> Trainable:
    return TRAINABLES.lookup(name)


def _derived_seed(seed: int, purpose: str, index: int = 0) -> int:
    digest = hashlib.sha256(f"{seed}:{purpose}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def derived_generator(seed: int, purpose: str, index: int = 0) -> torch.Generator:
    """A CPU generator for one purpose (and step) of a seeded run, independent of all the others."""
    return torch.Generator(device="cpu").manual_seed(_derived_seed(seed, purpose, index))


# ------------------------------------------------------------------------------------- checkpoints

def save_checkpoint(path: Path, payload: dict) -> None:
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(Path(path), buf.getvalue())


def read_checkpoint(path: str | Path) -> dict:
    """The checkpoint dict, with errors naming the file for missing, corrupt or foreign files."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"generator checkpoint {path} does not exist; train one with "
                              f"`bench train GENERATOR --data SET --steps N --out DIR`")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated / non-zip / pickle-unsafe files
        raise CheckpointError(f"generator checkpoint {path} cannot be read ({type(exc).__name__}: {exc}); "
                              "it is corrupt or not a torch.save file: retrain or re-download it") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"generator checkpoint {path}: format {found!r}, expected {FORMAT!r} "
                              "(written by `bench train`)")
    for key in ("generator", "config", "step", "model"):
        if key not in state:
            raise CheckpointError(f"generator checkpoint {path}: missing field {key!r}")
    return state


def load_generator_checkpoint(path: str | Path, expected_generator: str) -> tuple[dict, dict, dict]:
    """(config, model state_dict, meta) of a checkpoint written for `expected_generator`."""
    state = read_checkpoint(path)
    if state["generator"] != expected_generator:
        raise CheckpointError(f"generator checkpoint {path} was trained for generator {state['generator']!r}, "
                              f"not {expected_generator!r}; use it with generator {state['generator']!r}")
    from bench.core.weights import sha256_file

    meta = {"path": str(path), "sha256": sha256_file(Path(path)), "step": int(state["step"]),
            "data_fingerprint": state.get("data_fingerprint"), "training": state.get("training", {})}
    return dict(state["config"]), state["model"], meta


def load_model_state(model: torch.nn.Module, state_dict: dict, source: str) -> None:
    """load_state_dict with an error naming the first missing, unexpected or differently shaped key."""
    own = model.state_dict()
    for key, value in own.items():
        if key not in state_dict:
            raise CheckpointError(f"{source}: incompatible checkpoint: key {key!r} (shape {tuple(value.shape)}) "
                                  "is missing from it; it was trained with another architecture or config")
        if tuple(state_dict[key].shape) != tuple(value.shape):
            raise CheckpointError(f"{source}: incompatible checkpoint: key {key!r} has shape "
                                  f"{tuple(state_dict[key].shape)} in the checkpoint but {tuple(value.shape)} "
                                  "in the model built from its config")
    extra = [k for k in state_dict if k not in own]
    if extra:
        raise CheckpointError(f"{source}: incompatible checkpoint: unexpected key {extra[0]!r} "
                              f"({len(extra)} unexpected in all)")
    model.load_state_dict(state_dict)


def model_for_generator(name: str, checkpoint: str | None, size: str = "tiny", seed: int = 0):
    """(model in eval mode, config, info) for a generator factory: from a checkpoint, or the `size`
    config with seeded random weights, labelled untrained in info["label"]."""
    trainable = get_trainable(name)
    if checkpoint is None:
        config = trainable.default_config(size)
        model = trainable.build(config, seed)
        info = {"untrained": True, "label": f"untrained-{size}-seed{seed}", "checkpoint": None, "sha256": None,
                "step": 0}
    else:
        config, state, meta = load_generator_checkpoint(checkpoint, name)
        model = trainable.build(config, 0)
        load_model_state(model, state, f"generator checkpoint {checkpoint}")
        info = {"untrained": False, "label": f"step{meta['step']}-{meta['sha256'][:12]}",
                "checkpoint": str(checkpoint), "sha256": meta["sha256"], "step": meta["step"]}
    return model.eval(), config, info


def checkpoint_metadata(info: dict) -> dict:
    """The weights behind an output (from model_for_generator's info), for every sample's metadata."""
    return {"checkpoint": info["checkpoint"], "checkpoint_sha256": info["sha256"], "checkpoint_step": info["step"],
            "untrained": info["untrained"]}


def list_checkpoints(directory: Path) -> list[Path]:
    """step-NNNNNN.pt files in `directory`, oldest step first."""
    found = [(int(m[1]), p) for p in Path(directory).glob("step-*.pt") if (m := CHECKPOINT_RE.match(p.name))]
    return [p for _, p in sorted(found)]


# ------------------------------------------------------------------------------------------- data

class TrainingData:
    """Every clip of a set as [C, N] float32 at the config's rate and channel count, held in memory."""

    def __init__(self, clipset, config: dict, resampler: str = "soxr-vhq", progress: bool = True):
        from bench.core.audio import check_waveform
        from bench.core.resample import resample

        rate, channels = int(config["sample_rate"]), int(config.get("channels", 1))
        self.segment = int(round(float(config["duration_s"]) * rate))
        if self.segment < 1:
            raise ConfigError(f"config duration_s={config['duration_s']} is shorter than one sample")
        self.clips, self.audio, self.captions = list(clipset.clips), [], []
        self.source = clipset.source
        h = hashlib.sha256(json.dumps({"rate": rate, "channels": channels, "resampler": resampler}).encode())
        for clip in tqdm(self.clips, unit="clip", disable=not progress, desc="load training audio"):
            wave, sr = clipset.load(clip)
            check_waveform(wave, clip.origin)
            wave = resample(np.asarray(wave, np.float32), sr, rate, resampler)
            if wave.shape[0] != channels:  # downmix, or repeat a mono clip over the channels
                wave = np.repeat(wave.mean(0, keepdims=True), channels, 0)
            wave = np.ascontiguousarray(wave, np.float32)
            self.audio.append(wave)
            self.captions.append(clip.caption or "")
            h.update(f"{clip.id}\t{clip.caption or ''}\t{wave.shape}\n".encode())
            h.update(wave.tobytes())
        if not self.clips:
            raise ConfigError(f"training data {clipset.source} has no clips")
        self.fingerprint = h.hexdigest()  # exactly what is trained on, after resampling

    def batch(self, step: int, batch_size: int, seed: int) -> TrainingBatch:
        idx = epoch_batch(step, batch_size, len(self.clips), seed)
        crops = derived_generator(seed, "crop", step)
        waves = []
        for i in idx.tolist():
            wave = self.audio[i]
            spare = wave.shape[1] - self.segment
            offset = int(torch.randint(spare + 1, (1,), generator=crops)) if spare > 0 else 0
            piece = wave[:, offset:offset + self.segment]
            if piece.shape[1] < self.segment:  # short clip: zero-pad at the end
                piece = np.pad(piece, ((0, 0), (0, self.segment - piece.shape[1])))
            waves.append(piece)
        return TrainingBatch(torch.from_numpy(np.stack(waves)), [self.captions[i] for i in idx.tolist()],
                             [self.clips[i].id for i in idx.tolist()])


def epoch_batch(step: int, batch_size: int, n: int, seed: int) -> np.ndarray:
    """Positions step*B .. step*B+B-1 of an endless stream of per-epoch permutations of range(n)."""
    positions = np.arange(step * batch_size, (step + 1) * batch_size)
    out = np.empty(batch_size, np.int64)
    for epoch in np.unique(positions // n):
        perm = torch.randperm(n, generator=derived_generator(seed, "epoch", int(epoch))).numpy()
        mask = positions // n == epoch
        out[mask] = perm[positions[mask] % n]
    return out


# --------------------------------------------------------------------------------------- training

@dataclass(frozen=True)
class TrainSettings:
    steps: int
    seed: int = 0
    every: int = 100
    batch_size: int = 8
    lr: float | None = None  # None: the config's "lr" (or 1e-3)
    threads: int = 1
    grad_clip: float = 1.0

    def __post_init__(self) -> None:
        for name, low in (("steps", 1), ("seed", 0), ("every", 1), ("batch_size", 1), ("threads", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"training {name} must be an integer >= {low}, got {value!r}")
        if self.lr is not None and not self.lr > 0:
            raise ConfigError(f"training lr must be > 0, got {self.lr!r}")


@dataclass
class TrainOutcome:
    out_dir: Path
    checkpoints: list[Path]
    start_step: int  # where this call began (0, or the step it resumed from)
    losses: list[float] = field(default_factory=list)  # loss of each step this call ran
    config: dict = field(default_factory=dict)


def apply_overrides(config: dict, overrides: dict, name: str) -> dict:
    unknown = [k for k in overrides if k not in config]
    if unknown:
        raise ConfigError(f"--config {unknown[0]}: {name!r} has no config key {unknown[0]!r}; "
                          f"keys: {', '.join(sorted(config))}")
    out = {**config}
    for key, value in overrides.items():
        if type(config[key]) is not type(value) and not (isinstance(config[key], float) and isinstance(value, int)):
            raise ConfigError(f"--config {key}={value!r}: expected a {type(config[key]).__name__} "
                              f"like the default {config[key]!r}")
        out[key] = float(value) if isinstance(config[key], float) else value
    return out


def _resume_state(out_dir: Path, name: str, config: dict, fingerprint: str, settings: TrainSettings):
    ckpts = list_checkpoints(out_dir)
    if not ckpts:
        return None
    latest = ckpts[-1]
    state = read_checkpoint(latest)
    training = state.get("training", {})
    expected = {"generator": name, "config": config, "data_fingerprint": fingerprint,
                "seed": settings.seed, "batch_size": settings.batch_size, "lr": _lr(settings, config),
                "threads": settings.threads, "grad_clip": settings.grad_clip}
    found = {"generator": state["generator"], "config": state["config"],
             "data_fingerprint": state.get("data_fingerprint"), **{k: training.get(k) for k in
                                                                   ("seed", "batch_size", "lr", "threads",
                                                                    "grad_clip")}}
    for key, value in expected.items():
        if found[key] != value:
            detail = ""
            if key == "config":
                diff = sorted(k for k in set(value) | set(found[key] or {}) if (found[key] or {}).get(k) != value.get(k))
                detail = f" (differs in {', '.join(diff)})"
            raise ConfigError(f"{latest} was trained with another {key}{detail}: {found[key]!r} there, "
                              f"{value!r} now; give another --out, or delete {out_dir}'s step-*.pt to start over")
    return latest, state


def _lr(settings: TrainSettings, config: dict) -> float:
    return float(settings.lr if settings.lr is not None else config.get("lr", 1e-3))


def train_generator(name: str, data, out_dir: Path, settings: TrainSettings, size: str = "tiny",
                    overrides: dict | None = None, base_dir: Path | None = None, progress: bool = True,
                    log=print) -> TrainOutcome:
    """Train `name` on `data` (a ClipSet or a set spec) into out_dir; resumes from its latest checkpoint."""
    before = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    try:
        return _train(name, data, Path(out_dir), settings, size, overrides or {}, base_dir, progress, log)
    finally:
        torch.set_num_threads(before)


def _train(name, data, out_dir, settings, size, overrides, base_dir, progress, log) -> TrainOutcome:
    from bench.core.clip_sources import open_training_set

    trainable = get_trainable(name)
    config = apply_overrides(trainable.default_config(size), overrides, name)
    if isinstance(data, TrainingData):  # already loaded (by a caller that needed its fingerprint)
        dataset = data
    else:
        clipset = data if hasattr(data, "clips") else open_training_set(data, base_dir or Path.cwd())
        dataset = TrainingData(clipset, config, progress=progress)
    lr = _lr(settings, config)
    model = trainable.build(config, settings.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    start = 0
    resumed = _resume_state(out_dir, name, config, dataset.fingerprint, settings)
    if resumed:
        path, state = resumed
        load_model_state(model, state["model"], str(path))
        optimizer.load_state_dict(state["optimizer"])
        start = int(state["step"])
        log(f"resuming {name} from {path} (step {start})")
    out_dir.mkdir(parents=True, exist_ok=True)
    _truncate_log(out_dir / LOG_NAME, start)
    if start >= settings.steps:
        log(f"{out_dir} already holds step {start} >= --steps {settings.steps}; nothing to train")
        return TrainOutcome(out_dir, list_checkpoints(out_dir), start, [], config)

    n_params = sum(p.numel() for p in model.parameters())
    log(f"training {name} ({size}, {n_params / 1e3:.0f}k parameters) on {dataset.source}: {len(dataset.clips)} "
        f"clips at {config['sample_rate']} Hz, {settings.steps} steps of {settings.batch_size} x "
        f"{config['duration_s']} s, lr {lr:g}, seed {settings.seed} -> {out_dir}")
    training_meta = {**asdict(settings), "lr": lr, "size": size, "data": dataset.source, "optimizer": "Adam",
                     "torch": str(torch.__version__)}
    model.train()
    losses = []
    bar = tqdm(total=settings.steps, initial=start, unit="step", disable=not progress, desc=f"train {name}")
    with open(out_dir / LOG_NAME, "a") as log_file:
        for step in range(start, settings.steps):
            batch = dataset.batch(step, settings.batch_size, settings.seed)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(_derived_seed(settings.seed, "global", step))
                loss = trainable.training_loss(model, batch, derived_generator(settings.seed, "loss", step))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
            if not torch.isfinite(loss):
                raise ConfigError(f"{name}: loss became {loss.item()} at step {step + 1}; lower --lr")
            torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
            optimizer.step()
            value = float(loss.detach())
            losses.append(value)
            log_file.write(json.dumps({"step": step + 1, "loss": value}) + "\n")
            bar.update(1)
            bar.set_postfix(loss=f"{value:.4f}")
            done = step + 1
            if done % settings.every == 0 or done == settings.steps:
                log_file.flush()
                save_checkpoint(out_dir / f"step-{done:06d}.pt", {
                    "format": FORMAT, "generator": name, "config": config, "step": done,
                    "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "rng_state": {"scheme": "per-step sha256(seed:purpose:step) torch.Generators",
                                  "seed": settings.seed, "next_step": done,
                                  "next_loss_generator": derived_generator(settings.seed, "loss", done).get_state()},
                    "data_fingerprint": dataset.fingerprint, "training": training_meta})
    bar.close()
    if losses:
        log(f"loss: first {losses[0]:.4f}, last {losses[-1]:.4f} (mean of last 10: {np.mean(losses[-10:]):.4f})")
    return TrainOutcome(out_dir, list_checkpoints(out_dir), start, losses, config)


def _truncate_log(path: Path, step: int) -> None:
    """Drop log lines past `step` (a killed run logged steps its last checkpoint does not hold)."""
    if not path.exists():
        return
    keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
    path.write_text("".join(line + "\n" for line in keep))


def parse_overrides(items: list[str] | None) -> dict:
    """KEY=VALUE pairs; VALUE is read as JSON (numbers, true/false, lists), else kept as a string."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--config {item!r}: expected KEY=VALUE, e.g. --config 'widths=[16,32]'")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def run_key(name: str, data_fingerprint: str, settings: TrainSettings, size: str, overrides: dict) -> str:
    """Identity of a training run (for caches keyed by content and settings)."""
    return stable_hash({"generator": name, "data": data_fingerprint, "settings": asdict(settings), "size": size,
                        "overrides": overrides, "format": FORMAT})
