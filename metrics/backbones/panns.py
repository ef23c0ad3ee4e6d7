"""PANNs Cnn14 (Kong et al. 2020) as backbones: the model code vendored in frechet-audio-distance, the
Zenodo checkpoints, or seeded random weights (untrained).

Two backbones, one per published checkpoint:
- "panns-cnn14-16k": Cnn14_16k, 16 kHz, window 512, hop 160, 64 mels 50-8000 Hz (Cnn14_16k_mAP=0.438.pth).
- "panns-cnn14-32k": Cnn14, 32 kHz, window 1024, hop 320, 64 mels 50-14000 Hz (Cnn14_mAP=0.431.pth);
  fmax 14000 as PANNs and audioldm_eval build it (frechet-audio-distance builds it with 16000).
The STFT kernels and the mel filterbank are parameters of the model, so a checkpoint brings its own and
replaces the ones built from these settings; the settings alone decide them for untrained weights.

Each input is one whole waveform [n] at the backbone's rate; outputs per input:
- "embedding": the 2048-d ReLU(fc1(max-over-time + mean-over-time)) vector, the vendored forward's
  "embedding" (dropout is off in eval mode).
- "logits": the 527 pre-sigmoid AudioSet scores. The vendored forward only returns their sigmoid
  ("clipwise_output"), which saturates to exactly 0 or 1 in float32, so the logits are computed from
  the embedding with the model's own fc_audioset layer: the same operation on the same tensor the
  forward applies the sigmoid to (and what audioldm_eval's Cnn14 returns as "logits").
"""
from __future__ import annotations

import functools
import importlib
import importlib.util
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bench.core import weights as weights_registry
from bench.core.checkpoints import load_checkpoint as load_checkpoint_file
from bench.core.errors import AudioError, CheckpointError
from bench.core.extras import missing_extra
from metrics.backbones.blocked_linear import block_linear_rows
from metrics.backbones.base import (Backbone, declare_needs, Needs, pick_device,
                                    pretrained, register_backbone, to_device, WeightsChoice)

EMBEDDING_DIM = 2048
NUM_CLASSES = 527
# Bump when the architecture or the seeded initialisation changes: untrained cache keys depend on it.
UNTRAINED_INIT = "panns-cnn14-xavier-seeded-v1"
# Cnn14 halves the time axis in five 2x2 poolings: fewer than 32 STFT frames leave nothing to pool.
_MIN_FRAMES = 32


@dataclass(frozen=True)
class Cnn14Spec:
    backbone: str  # backbone id, also the weights card name (--checkpoint NAME=PATH)
    model_class: str  # class in the vendored models/pann.py
    sample_rate: int
    window: int
    hop: int
    fmax: int
    filename: str
    url: str
    mel_bins: int = 64
    fmin: int = 50

    def model_kwargs(self) -> dict:
        return {"sample_rate": self.sample_rate, "window_size": self.window, "hop_size": self.hop,
                "mel_bins": self.mel_bins, "fmin": self.fmin, "fmax": self.fmax, "classes_num": NUM_CLASSES}

    @property
    def min_samples(self) -> int:
        """Shortest input that yields an output: 1 + n // hop STFT frames (centred) must reach 32."""
        return (_MIN_FRAMES - 1) * self.hop


_ZENODO = "https://zenodo.org/record/3987831/files/"
SPECS = {spec.backbone: spec for spec in (
    Cnn14Spec("panns-cnn14-16k", "Cnn14_16k", 16000, 512, 160, 8000, "Cnn14_16k_mAP=0.438.pth",
              _ZENODO + "Cnn14_16k_mAP%3D0.438.pth"),
    Cnn14Spec("panns-cnn14-32k", "Cnn14", 32000, 1024, 320, 14000, "Cnn14_mAP=0.431.pth",
              _ZENODO + "Cnn14_mAP%3D0.431.pth"),
)}

for _spec in SPECS.values():
    weights_registry.register_weights(weights_registry.WeightsCard(
        name=_spec.backbone, filename=_spec.filename, url=_spec.url, backbone=_spec.backbone,
        license="CC-BY-4.0 (PANNs checkpoints, Zenodo record 3987831; model code MIT)",
        citation="Kong et al., PANNs: Large-Scale Pretrained Audio Neural Networks for Audio Pattern "
                 "Recognition, IEEE/ACM TASLP 28, 2020"))


@functools.lru_cache(maxsize=1)
def vendored_models():
    """frechet-audio-distance's copy of the PANNs model code (frechet_audio_distance/models/pann.py).

    Imported by file location under a private package name. `import frechet_audio_distance.models.pann`
    would first run the package's __init__, which imports laion_clap (-> transformers -> torchaudio,
    whose compiled extension fails on CPU-only installs; HF tokenizers fetched from the network at
    import) and encodec, none of which Cnn14 uses. The models folder itself needs only torch and
    torchlibrosa.
    """
    found = importlib.util.find_spec("frechet_audio_distance")  # locates the package, runs nothing
    if found is None or not found.submodule_search_locations:
        raise missing_extra("panns", "PANNs backbones (the Cnn14 code vendored in frechet-audio-distance)",
                            "frechet_audio_distance")
    models_dir = Path(list(found.submodule_search_locations)[0]) / "models"
    name = "_bench_fad_models"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, models_dir / "__init__.py",
                                                      submodule_search_locations=[str(models_dir)])
        package = importlib.util.module_from_spec(spec)
        sys.modules[name] = package
        spec.loader.exec_module(package)
    return importlib.import_module(f"{name}.pann")


def architecture_info(spec: Cnn14Spec) -> dict:
    """Where the network code comes from (recorded with every result)."""
    try:
        version = metadata.version("frechet_audio_distance")
    except metadata.PackageNotFoundError:
        version = None
    return {"code": f"frechet_audio_distance {version} models/pann.py:{spec.model_class}",
            **spec.model_kwargs()}


def _new_model(spec: Cnn14Spec) -> nn.Module:
    # The vendored constructor draws its Xavier init from the global RNG; forking keeps that RNG's
    # state untouched (the weights are replaced by a checkpoint or by the seeded init anyway).
    with torch.random.fork_rng(devices=[]):
        return getattr(vendored_models(), spec.model_class)(**spec.model_kwargs())


def _seeded_init_(model: nn.Module, seed: int) -> None:
    # PANNs' own init scheme (Xavier-uniform weights, zero biases, identity batch norms), drawn from a
    # seeded generator. The STFT kernels and mel filterbank are fixed functions of the settings: kept.
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(module.weight, generator=generator)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.BatchNorm2d):
                module.reset_parameters()


def build_cnn14(spec: Cnn14Spec, state_dict: Mapping | None = None, seed: int | None = None,
                source: str = "state dict") -> nn.Module:
    """Cnn14 in eval mode, from a state dict (checked, strict) or seeded random weights."""
    if (state_dict is None) == (seed is None):
        raise ValueError("build_cnn14 needs exactly one of state_dict or seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError(f"seed must be an int, got {seed!r}")
    model = _new_model(spec)
    if state_dict is None:
        _seeded_init_(model, seed)
    else:
        check_state_dict(state_dict, model, spec, source)
        model.load_state_dict(state_dict, strict=True)
    # Default (contiguous) layout: channels-last was 0.79x (VGGish) / 0.94x (Cnn14) the CPU time, but its
    # outputs moved by ~1e-13 between runs of one set (a reference scored against itself gave FAD 1.1e-13).
    return model.eval()


def check_state_dict(state_dict, model: nn.Module, spec: Cnn14Spec, source: str) -> None:
    """CheckpointError naming the first key (in the model's order) that is missing or misshapen."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if not isinstance(state_dict, Mapping) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state_dict.items()):
        raise CheckpointError(f"{source}: the weights are not a state dict of tensors "
                              f"(got {type(state_dict).__name__}); use {spec.filename} from {spec.url}")
    problem = None
    for key, shape in expected.items():
        if key not in state_dict:
            problem = f"missing key '{key}'"
        elif tuple(state_dict[key].shape) != shape:
            problem = f"key '{key}' has shape {tuple(state_dict[key].shape)}, expected {shape}"
        if problem:
            break
    if problem is None:
        unexpected = [k for k in state_dict if k not in expected]
        problem = f"unexpected key '{unexpected[0]}'" if unexpected else None
    if problem:
        raise CheckpointError(f"{source}: does not fit {spec.model_class} ({spec.backbone}, "
                              f"{spec.sample_rate} Hz): {problem}. Expected {spec.filename} ({spec.url})")


def load_checkpoint(path, spec: Cnn14Spec) -> dict:
    """The weights of a PANNs checkpoint file ({"model": state_dict, ...}), tensors-only loading."""
    checkpoint = load_checkpoint_file(path, "PANNs checkpoint", f"delete it and run `bench weights fetch "
                                      f"{spec.backbone}` (or download {spec.url}; the published {spec.filename})")
    if not isinstance(checkpoint, Mapping) or "model" not in checkpoint:
        keys = sorted(map(str, checkpoint))[:5] if isinstance(checkpoint, Mapping) else None
        hint = (" (the weights look stored at the top level: save them as {'model': state_dict})"
                if keys and any(k.startswith("conv_block1.") for k in map(str, checkpoint)) else "")
        raise CheckpointError(f"{path}: a PANNs checkpoint is a dict with the weights under 'model' "
                              f"(found {type(checkpoint).__name__}{f' with keys {keys}' if keys else ''})"
                              f"{hint}; expected {spec.filename} ({spec.url})")
    return checkpoint["model"]


def load_cnn14_file(path, spec: Cnn14Spec) -> nn.Module:
    """Cnn14 from a checkpoint file; any unfit file is a CheckpointError naming the file."""
    return build_cnn14(spec, state_dict=load_checkpoint(path, spec), source=str(path))


def forward(model: nn.Module, spec: Cnn14Spec, waveforms) -> dict[str, torch.Tensor]:
    """{"embedding": [N, 2048], "logits": [N, 527]} float32 tensors on the model's device for waveforms
    [N, n] at the backbone's rate (one forward for the batch; equal lengths)."""
    shape = np.shape(waveforms)
    if len(shape) != 2:
        raise ValueError(f"{spec.backbone}: expected waveforms [N, samples], got {tuple(shape)}")
    if shape[1] < spec.min_samples:
        raise AudioError(f"{spec.backbone}: inputs of {shape[1]} samples are shorter than the "
                         f"{spec.min_samples} ({spec.min_samples / spec.sample_rate:.2f} s at "
                         f"{spec.sample_rate} Hz) Cnn14 needs; pad them first")
    param = next(model.parameters())
    with torch.inference_mode():
        embedding = model(to_device(waveforms, str(param.device)).to(param.dtype))["embedding"]
        logits = model.fc_audioset(embedding)
    return {"embedding": embedding.float(), "logits": logits.float()}


def embed(model: nn.Module, spec: Cnn14Spec, waveforms) -> dict[str, np.ndarray]:
    """forward(), as float32 numpy arrays."""
    return {name: value.cpu().numpy() for name, value in forward(model, spec, waveforms).items()}


def build(spec: Cnn14Spec, choice: WeightsChoice) -> Backbone:
    if choice.mode == "untrained":
        model = build_cnn14(spec, seed=choice.seed)
        provenance = {"weights": "untrained", "backbone": spec.backbone, "seed": choice.seed,
                      "init": UNTRAINED_INIT, "file": None, "sha256": None}
    else:
        resolved = weights_registry.resolve(spec.backbone, choice.weights_root,
                                            choice.local_file(spec.backbone), allow_download=choice.allow_download)
        model = load_cnn14_file(resolved.path, spec)
        provenance = {"backbone": spec.backbone, **resolved.provenance()}
    provenance["architecture"] = architecture_info(spec)
    device = pick_device()
    model = block_linear_rows(model.to(device))
    return Backbone(spec.backbone, {"embedding": EMBEDDING_DIM, "logits": NUM_CLASSES}, provenance,
                    lambda x: embed(model, spec, x), device, embed_tensors=lambda x: forward(model, spec, x))


for _spec in SPECS.values():
    register_backbone(_spec.backbone)(functools.partial(build, _spec))
    declare_needs(_spec.backbone, lambda choice, b=_spec.backbone: Needs(weights=(b,) if pretrained(choice, b) else ()))
