"""A loaded embedding backbone plus the provenance every result must carry.

A backbone is built either from real weights (cache, download or a local file; sha256 recorded) or
explicitly `untrained` (seeded random init of the same architecture). `untrained` is never silent:
it is part of the provenance, the cache key, the metric key and everything downstream.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from bench.core.cache import default_cache_root, stable_hash
from bench.core.errors import ConfigError
from bench.core.registry import Registry, unknown_name_message
from bench.core.weights import UNVERIFIED

# oneDNN keeps a compiled primitive, and what it holds, for every input shape it has seen (1024 by default):
# a set of clips of distinct lengths grew the process by ~17 MiB per length, 64 kept gave the same speed
# (python -m bench.benchmarks.distinct_lengths_memory). Read when oneDNN makes its first primitive, so
# before any backbone runs; a capacity the environment names wins.
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "64")


@dataclass(frozen=True)
class WeightsChoice:
    """How to obtain backbone weights: pretrained (cache / download / local file) or untrained(seed)."""

    mode: str = "pretrained"
    seed: int = 0
    local_files: tuple[tuple[str, str], ...] = ()  # (backbone id, path) from --checkpoint NAME=PATH
    cache_root: Path | None = None  # None: bench.core.cache.default_cache_root()
    allow_download: bool | None = None  # None: unless BENCH_OFFLINE=1
    # (backbone id, path) of evaluators trained here (a suite's [evaluators], bench.training.evaluator):
    # weights "trained", loaded whatever `mode` says, so an untrained-VGGish suite can use them too.
    trained: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.mode not in ("pretrained", "untrained"):
            raise ConfigError(f"weights must be 'pretrained' or 'untrained', got {self.mode!r}")
        if self.mode == "untrained" and self.local_files:
            raise ConfigError("--checkpoint cannot be combined with --weights untrained")

    @property
    def weights_root(self) -> Path:
        return Path(self.cache_root) if self.cache_root is not None else default_cache_root()

    def local_file(self, backbone_id: str) -> str | None:
        return dict(self.local_files).get(backbone_id)

    def trained_file(self, backbone_id: str) -> str | None:
        return dict(self.trained).get(backbone_id)


@dataclass
class Backbone:
    id: str
    outputs: dict[str, int]  # output name -> dimension, e.g. {"embedding": 2048, "logits": 527}
    provenance: dict  # {"weights": "pretrained"|"untrained", "file", "sha256", ...} or {"seed": ...}
    # batched inputs -> {name: float32 [N, dim]}, or [N, frames, dim] where each input gives several rows
    embed: Callable[[np.ndarray], dict[str, np.ndarray]]
    device: str = "cpu"
    # The same forward, outputs left as torch tensors on `device` (no host sync per batch): bench.scoring
    # copies a whole chunk's outputs to the host at once. Optional; `embed` is used where it is None.
    embed_tensors: Callable[[np.ndarray], dict] | None = None
    embed_text: Callable[[list[str]], np.ndarray] | None = None  # text-audio backbones (CLAP)
    # Captioners (metrics.backbones.captioner): their "tokens" output rows -> caption strings.
    decode: Callable[[np.ndarray], list[str]] | None = None

    @property
    def untrained(self) -> bool:
        return self.provenance["weights"] == "untrained"

    @property
    def unverified(self) -> bool:
        """A local checkpoint whose sha256 does not match a published one (bench.core.weights)."""
        return self.provenance["weights"] == UNVERIFIED

    @property
    def weights_label(self) -> str | None:
        return "untrained" if self.untrained else "unverified" if self.unverified else None

    @property
    def card_key(self) -> dict:
        """What determines this backbone's outputs (cache keys use it; paths and sources do not)."""
        if self.untrained:
            return {"backbone": self.id, "weights": "untrained", "seed": self.provenance["seed"],
                    "init": self.provenance["init"]}
        return {"backbone": self.id, "weights": self.provenance["weights"], "sha256": self.provenance["sha256"]}

    @property
    def card_hash(self) -> str:
        return stable_hash(self.card_key)


@dataclass(frozen=True)
class Needs:
    """What a backbone reads from disk for a weights choice, declared so that a preflight can check all of
    it (every missing file at once) without building anything."""

    weights: tuple[str, ...] = ()  # weights cards (bench.core.weights): a --checkpoint file, the cache or a download
    hf_files: tuple[tuple[str, str], ...] = ()  # (repo, filename) read from the Hugging Face cache


def pretrained(choice: WeightsChoice, backbone_id: str) -> bool:
    """Whether `backbone_id` loads published weights under this choice (not untrained, not trained here)."""
    return choice.mode == "pretrained" and choice.trained_file(backbone_id) is None


# backbone id -> (WeightsChoice) -> Needs; each backbone module declares its own.
BACKBONE_NEEDS: dict[str, Callable[[WeightsChoice], Needs]] = {}


def declare_needs(backbone_id: str, needs: Callable[[WeightsChoice], Needs]) -> None:
    BACKBONE_NEEDS[backbone_id] = needs


def backbone_needs(backbone_id: str, choice: WeightsChoice) -> Needs:
    BACKBONES.lookup(backbone_id)  # imports the modules, which declare their needs
    return BACKBONE_NEEDS.get(backbone_id, lambda c: Needs())(choice)


BackboneBuilder = Callable[[WeightsChoice], Backbone]
# name -> builder; plugins: entry-point group "bench.backbones".
BACKBONES = Registry("backbone", ("metrics.backbones.vggish", "metrics.backbones.panns",
                                  "metrics.backbones.passt", "metrics.backbones.clap", "metrics.backbones.openl3",
                                  "metrics.backbones.mel_inception", "metrics.backbones.captioner_whisper",
                                  "metrics.backbones.captioner_small", "metrics.backbones.encodec",
                                  "metrics.backbones.dac_latents", "metrics.backbones.audiobox",
                                  "metrics.backbones.mert"),
                    "bench.backbones")
register_backbone = BACKBONES.register
_LOADED: dict[tuple, Backbone] = {}


def check_backbone_names(names, where: str) -> None:
    """Every name (e.g. the keys of `[weights] checkpoints`, --checkpoint NAME=...) is a known backbone;
    a typo would otherwise be ignored in silence while the official weights are used."""
    known = BACKBONES.load()
    for name in names:
        if name not in known:
            raise ConfigError(f"{where}: {unknown_name_message('backbone', str(name), known)}")


def load_backbone(name: str, choice: WeightsChoice) -> Backbone:
    """Build (once per process and weights choice) the backbone `name`."""
    builder = BACKBONES.lookup(name)
    # Untrained weights depend only on the seed; pretrained ones on where they are resolved from.
    untrained = choice.mode == "untrained" and choice.trained_file(name) is None
    key = (name, "untrained", choice.seed) if untrained else (name, choice)
    if key not in _LOADED:
        _LOADED[key] = builder(choice)
    return _LOADED[key]


def to_device(batch, device: str):
    """A float32 batch (numpy or tensor) as a tensor on `device`; to CUDA through pinned memory without
    blocking the host (the copy is ordered before the kernels that read it)."""
    import torch

    x = torch.as_tensor(np.asarray(batch), dtype=torch.float32)
    if torch.device(device).type == "cuda":
        return x.pin_memory().to(device, non_blocking=True)
    return x.to(device)


def pick_device() -> str:
    import os

    import torch

    wanted = os.environ.get("BENCH_DEVICE")
    if wanted:
        return wanted
    return "cuda" if torch.cuda.is_available() else "cpu"
