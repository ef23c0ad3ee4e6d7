"""`bench train`: train a trainable reference generator on any clip set, resumably and bit-reproducibly.

Deterministic given the seed: step k's batch (clip order, crop offsets) and every random draw of the
loss come from CPU torch.Generators seeded from (seed, purpose, k), never from how training got there;
the global torch RNG is also reseeded per step (inside fork_rng) so stray global draws stay reproducible.
A checkpoint holds model + optimizer state, so resuming from step k gives the bytes an uninterrupted run
gives. Bit-identity holds for a fixed intra-op thread count (`threads`, default 1, recorded).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from bench.core.cache import stable_hash
from bench.core.clip_sources import open_training_set
from bench.core.errors import ConfigError
from bench.core.seeding import derived_generator, derived_seed, epoch_batch, pinned_threads
from bench.training.loop import run_steps
from bench.training.lr_schedule import build_lr_schedule
from generators.trainable import (
    FORMAT,
    TrainingBatch,
    get_trainable,
    list_checkpoints,
    load_generator_checkpoint,
    load_model_state,
    read_checkpoint,
    save_checkpoint,
)

LOG_NAME = "train_log.jsonl"


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
        waves, chunks = [], []
        for i in idx.tolist():
            wave = self.audio[i]
            spare = wave.shape[1] - self.segment
            offset = int(torch.randint(spare + 1, (1,), generator=crops)) if spare > 0 else 0
            chunks.append((offset // self.segment + 1, max(1, -(-wave.shape[1] // self.segment))))
            piece = wave[:, offset:offset + self.segment]
            if piece.shape[1] < self.segment:  # short clip: zero-pad at the end
                piece = np.pad(piece, ((0, 0), (0, self.segment - piece.shape[1])))
            waves.append(piece)
        return TrainingBatch(torch.from_numpy(np.stack(waves)), [self.captions[i] for i in idx.tolist()],
                             [self.clips[i].id for i in idx.tolist()], chunks)


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


def warm_start(name: str, trainable, model: torch.nn.Module, config: dict, path: str | Path) -> dict:
    """Load a checkpoint of `name` into a model built from `config` (a pre-trained start for fine-tuning);
    return what the record keeps of it. Config keys may differ only where the trainable says a fine-tune
    may change them (`fine_tune_keys`; default lr and duration_s); a trainable whose architecture grows
    with such a key (SRC-gAudio's rate set) maps the old weights onto the new model (`warm_start_state`)."""
    old_config, old_state, meta = load_generator_checkpoint(path, name)
    allowed = set(getattr(trainable, "fine_tune_keys", ("lr", "duration_s")))
    changed = {k: [old_config.get(k), config.get(k)] for k in sorted(set(old_config) | set(config))
               if old_config.get(k) != config.get(k)}
    fixed = [k for k in changed if k not in allowed]
    if fixed:
        k = fixed[0]
        raise ConfigError(f"--init-from {path}: config key {k!r} is {changed[k][0]!r} there and {changed[k][1]!r} "
                          f"now; a fine-tune of {name!r} may change only {', '.join(sorted(allowed))}")
    mapper = getattr(trainable, "warm_start_state", None)
    state = mapper(old_config, old_state, config, model.state_dict()) if mapper else old_state
    load_model_state(model, state, f"--init-from {path}")
    return {"checkpoint": str(path), "sha256": meta["sha256"], "step": meta["step"], "changed": changed}


def _resume_state(out_dir: Path, name: str, config: dict, fingerprint: str, settings: TrainSettings,
                  init_sha256: str | None = None):
    ckpts = list_checkpoints(out_dir)
    if not ckpts:
        return None
    latest = ckpts[-1]
    state = read_checkpoint(latest)
    training = state.get("training", {})
    expected = {"generator": name, "config": config, "data_fingerprint": fingerprint,
                "seed": settings.seed, "batch_size": settings.batch_size, "lr": _lr(settings, config),
                "threads": settings.threads, "grad_clip": settings.grad_clip, "init_from": init_sha256}
    found = {"generator": state["generator"], "config": state["config"],
             "init_from": (training.get("init_from") or {}).get("sha256"),
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
                    log=print, init_from: str | Path | None = None) -> TrainOutcome:
    """Train `name` on `data` (a ClipSet or a set spec) into out_dir; resumes from its latest checkpoint.
    `init_from`: start from that checkpoint's weights (fine-tuning, see `warm_start`) instead of a seeded init."""
    with pinned_threads(settings.threads):
        return _train(name, data, Path(out_dir), settings, size, overrides or {}, base_dir, progress, log, init_from)


def _train(name, data, out_dir, settings, size, overrides, base_dir, progress, log, init_from) -> TrainOutcome:
    trainable = get_trainable(name)
    config = apply_overrides(trainable.default_config(size), overrides, name)
    if isinstance(data, TrainingData):  # already loaded (by a caller that needed its fingerprint)
        dataset = data
    else:
        clipset = data if hasattr(data, "clips") else open_training_set(data, base_dir or Path.cwd())
        dataset = TrainingData(clipset, config, progress=progress)
    lr = _lr(settings, config)
    model = trainable.build(config, settings.seed)
    init = warm_start(name, trainable, model, config, init_from) if init_from is not None else None
    optimizer = build_optimizer(model, config, lr)
    # after a warm start, so the average starts from its weights
    ema = WeightsEMA(model, config["ema"]) if config.get("ema") else None
    schedule = build_lr_schedule(config, lr)
    start = 0
    resumed = _resume_state(out_dir, name, config, dataset.fingerprint, settings, init and init["sha256"])
    if resumed:
        path, state = resumed
        load_model_state(model, state["model"], str(path))
        optimizer.load_state_dict(state["optimizer"])
        if ema is not None:
            ema.load(state.get("ema"), path)
        if schedule is not None:
            schedule.load_state_dict(state["lr_schedule"])
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
    training_meta = {**asdict(settings), "lr": lr, "size": size, "data": dataset.source,
                     "optimizer": optimizer_spec(config), "ema": config.get("ema"),
                     **({"lr_schedule": config["lr_schedule"]} if schedule is not None else {}), "torch": str(torch.__version__),
                     **({"init_from": init} if init else {})}
    if init:
        log(f"initialised from {init['checkpoint']} (step {init['step']}); config changes: "
            + (", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in init["changed"].items()) or "none"))

    def step_loss(step: int) -> torch.Tensor:
        batch = dataset.batch(step, settings.batch_size, settings.seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derived_seed(settings.seed, "global", step))
            return trainable.training_loss(model, batch, derived_generator(settings.seed, "loss", step))

    def save(done: int) -> None:
        log_file.flush()
        save_checkpoint(out_dir / f"step-{done:06d}.pt", {
            "format": FORMAT, "generator": name, "config": config, "step": done,
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            **({"ema": ema.state_dict()} if ema is not None else {}),
            **({"lr_schedule": schedule.state_dict()} if schedule is not None else {}),
            "rng_state": {"scheme": "per-step sha256(seed:purpose:step) torch.Generators",
                          "seed": settings.seed, "next_step": done,
                          "next_loss_generator": derived_generator(settings.seed, "loss", done).get_state()},
            "data_fingerprint": dataset.fingerprint, "training": training_meta})

    def after_step(done: int, loss: float, log_file) -> None:
        if ema is not None:
            ema.update(model, done)
        if schedule is not None:
            schedule.observe(loss)
        log_file.write(json.dumps({"step": done, "loss": loss}) + "\n")

    with open(out_dir / LOG_NAME, "a") as log_file:
        losses = run_steps(model, optimizer, start, settings.steps, step_loss, every=settings.every, checkpoint=save,
                           desc=f"train {name}", progress=progress, grad_clip=settings.grad_clip,
                           lr_at=schedule.lr_at if schedule is not None else None, after_step=lambda done, loss: after_step(done, loss, log_file))
        if settings.steps % settings.every:
            save(settings.steps)  # the last step is always kept
    if losses:
        log(f"loss: first {losses[0]:.4f}, last {losses[-1]:.4f} (mean of last 10: {np.mean(losses[-10:]):.4f})")
    return TrainOutcome(out_dir, list_checkpoints(out_dir), start, losses, config)


def optimizer_spec(config: dict) -> dict:
    """The config's "optimizer" (name adam or adamw, betas, eps, weight_decay); none: Adam with torch's defaults."""
    spec = {"name": "adam", **(config.get("optimizer") or {})}
    unknown = set(spec) - {"name", "betas", "eps", "weight_decay"}
    if unknown or spec["name"] not in ("adam", "adamw"):
        raise ConfigError(f"config optimizer {spec!r}: name must be adam or adamw, keys only betas, eps, "
                          f"weight_decay{f' (unknown: {sorted(unknown)})' if unknown else ''}")
    return spec


def build_optimizer(model: torch.nn.Module, config: dict, lr: float) -> torch.optim.Optimizer:
    spec = optimizer_spec(config)
    kwargs = {k: tuple(v) if k == "betas" else float(v) for k, v in spec.items() if k != "name"}
    optimizer_class = torch.optim.AdamW if spec["name"] == "adamw" else torch.optim.Adam
    return optimizer_class(model.parameters(), lr=lr, **kwargs)


class WeightsEMA:
    """Exponential moving average of the weights (config "ema": {"beta", "power"}), kept in the checkpoint
    under "ema" and used for sampling. The decay warms up as ema-pytorch's: at step k it is
    min(beta, 1 - (1 + k) ** -power), so early averages are not dominated by the random initialisation."""

    def __init__(self, model: torch.nn.Module, spec: dict):
        unknown = set(spec) - {"beta", "power"}
        if unknown or not 0 < float(spec.get("beta", 0)) < 1:
            raise ConfigError(f"config ema {spec!r}: needs beta in (0, 1) and optionally power; "
                              f"unknown keys {sorted(unknown)}")
        self.beta, self.power = float(spec["beta"]), float(spec.get("power", 1.0))
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def decay(self, step: int) -> float:
        return min(self.beta, 1.0 - (1.0 + step) ** -self.power)

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        d = self.decay(step)
        for key, value in model.state_dict().items():
            if value.is_floating_point():
                self.shadow[key].mul_(d).add_(value.detach(), alpha=1.0 - d)
            else:
                self.shadow[key].copy_(value)

    def state_dict(self) -> dict:
        return {k: v.clone() for k, v in self.shadow.items()}

    def load(self, state: dict | None, path: Path) -> None:
        if state is None:
            raise ConfigError(f"{path} has no EMA weights but the config asks for an EMA; give another --out")
        self.shadow = {k: v.clone() for k, v in state.items()}


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


def run_key(name: str, data_fingerprint: str, settings: TrainSettings, size: str, overrides: dict,
            config: dict) -> str:
    """Identity of a training run (for caches keyed by content and settings). The resolved config is part of
    it: when a size's defaults change (a new architecture), a cached run of the old ones is not resumed."""
    return stable_hash({"generator": name, "data": data_fingerprint, "settings": asdict(settings), "size": size,
                        "overrides": overrides, "config": config, "format": FORMAT})
