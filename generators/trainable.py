"""What makes a reference generator trainable, and how its checkpoints are written and read.

A generator module makes itself trainable with `@register_trainable(name)` on a class with
`default_config(size)`, `build(config, seed)` and `training_loss(model, batch, rng)`; `bench train NAME`
(bench.training.generator) then trains it on any clip set (manifest, folder, builtin:synthetic).

Checkpoint = torch.save of a plain dict (loadable with weights_only=True):
{"format", "generator", "config", "step", "model", "optimizer", "rng_state", "data_fingerprint", "training"},
and "ema" (the moving average of the weights) when the config asks for one: sampling then uses it.
"""
from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from bench.core.cache import atomic_write_bytes
from bench.core.checkpoints import load_checkpoint
from bench.core.errors import CheckpointError
from bench.core.registry import Registry

FORMAT = "bench-generator-checkpoint/1"
CHECKPOINT_RE = re.compile(r"^step-(\d{6,})\.pt$")


@dataclass
class TrainingBatch:
    audio: torch.Tensor  # [B, C, N] float32 at config["sample_rate"]
    captions: list[str]
    ids: list[str]
    # (i, N) per clip: the crop is the i-th (1-based) of the N segments its clip holds; None: not known
    chunks: list[tuple[int, int]] | None = None


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
    state = load_checkpoint(path, "generator checkpoint", "retrain or re-download it")
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"generator checkpoint {path}: format {found!r}, expected {FORMAT!r} "
                              "(written by `bench train`)")
    for key in ("generator", "config", "step", "model"):
        if key not in state:
            raise CheckpointError(f"generator checkpoint {path}: missing field {key!r}")
    return state


def load_generator_checkpoint(path: str | Path, expected_generator: str) -> tuple[dict, dict, dict]:
    """(config, model state_dict, meta) of a checkpoint written for `expected_generator`; the state dict is
    the EMA weights when the checkpoint has them (what the papers sample with), else the trained ones."""
    state = read_checkpoint(path)
    if state["generator"] != expected_generator:
        raise CheckpointError(f"generator checkpoint {path} was trained for generator {state['generator']!r}, "
                              f"not {expected_generator!r}; use it with generator {state['generator']!r}")
    from bench.core.weights import sha256_file

    meta = {"path": str(path), "sha256": sha256_file(Path(path)), "step": int(state["step"]),
            "data_fingerprint": state.get("data_fingerprint"), "training": state.get("training", {}),
            "weights": "ema" if state.get("ema") is not None else "trained"}
    return dict(state["config"]), state["ema"] if state.get("ema") is not None else state["model"], meta


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
                "checkpoint": str(checkpoint), "sha256": meta["sha256"], "step": meta["step"],
                "weights": meta["weights"]}
    return model.eval(), config, info


def checkpoint_metadata(info: dict) -> dict:
    """The weights behind an output (from model_for_generator's info), for every sample's metadata."""
    out = {"checkpoint": info["checkpoint"], "checkpoint_sha256": info["sha256"], "checkpoint_step": info["step"],
           "untrained": info["untrained"]}
    if info.get("weights") == "ema":  # said only when it is so: records of checkpoints without an EMA are unchanged
        out["checkpoint_weights"] = "ema"
    return out


def list_checkpoints(directory: Path) -> list[Path]:
    """step-NNNNNN.pt files in `directory`, oldest step first."""
    found = [(int(m[1]), p) for p in Path(directory).glob("step-*.pt") if (m := CHECKPOINT_RE.match(p.name))]
    return [p for _, p in sorted(found)]


# ------------------------------------------------------------------------------------- model sizes

@dataclass(frozen=True)
class ModelDescription:
    """A trainable generator's config and parameter counts, from a model built on the meta device."""

    name: str
    size: str
    config: dict
    modules: dict[str, int]  # dotted module path -> its parameters (children included), in build order
    total: int  # every parameter of the model once (shared ones counted once)

    def count(self, path: str) -> int:
        if path not in self.modules:
            raise KeyError(f"{self.name} ({self.size}) has no module {path!r}; modules: {', '.join(self.modules)}")
        return self.modules[path]


def building_on_meta() -> bool:
    """True inside `with torch.device("meta")`: a build must then read no weights files (shapes only)."""
    return torch.empty(0).device.type == "meta"


def describe_model(name: str, size: str = "tiny", config: dict | None = None) -> ModelDescription:
    """Config and parameter counts of trainable `name` at `size` (or the given config), built on the meta
    device: shapes without memory, so a paper-sized model costs nothing to describe."""
    trainable = get_trainable(name)
    config = dict(trainable.default_config(size) if config is None else config)
    with torch.device("meta"):
        model = trainable.build(config, 0)
    modules = {path: sum(p.numel() for p in module.parameters())
               for path, module in model.named_modules() if path}
    return ModelDescription(name, size, config, modules, sum(p.numel() for p in model.parameters()))
