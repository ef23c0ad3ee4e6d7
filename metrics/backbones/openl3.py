"""OpenL3 (Cramer et al. 2019) as backbones: torchopenl3's PyTorch port of the network, its converted
checkpoints, or seeded random weights (untrained).

Two backbones, one per content type stable-audio-metrics uses (mel256 input, 512-d embedding, as its
`openl3.models.load_audio_embedding_model(input_repr="mel256", content_type=..., embedding_size=512)`):
- "openl3-mel256-music-512": trained on music (stable-audio-metrics' MusicCaps / Song Describer examples)
- "openl3-mel256-env-512": trained on environmental sound (its AudioCaps example)

Each input is one stereo pair of 1 s frames [2, 48000] at 48 kHz (the left and the right channel's frame
at the same time); the output "embedding" is the 1024-d concatenation [left 512, right 512], which is
how stable-audio-metrics builds its stereo embeddings (src/openl3_fd.py, channels=2). The network, with
its mel front end (kapre 0.1.4 semantics: Hann DFT kernels n_dft 2048, hop 242, "same" padding, 256 HTK
mel bands 0-24 kHz, amplitude in dB relative to each frame's maximum, floor -80 dB), is torchopenl3's
`PytorchOpenl3`; its STFT kernels and mel filterbank are buffers stored in the checkpoint.
"""
from __future__ import annotations

import functools
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata

import numpy as np
import torch
from torch import nn

from bench.core import weights as weights_registry
from bench.core.checkpoints import load_checkpoint
from bench.core.errors import CheckpointError
from bench.core.extras import require
from metrics.backbones.base import (Backbone, declare_needs, Needs, pick_device,
                                    pretrained, register_backbone, to_device, WeightsChoice)

SAMPLE_RATE = 48000  # openl3's TARGET_SR: every frame is 1 s at 48 kHz
FRAME = SAMPLE_RATE
EMBED_DIM = 512  # per channel
CHANNELS = 2
INPUT_REPR = "mel256"
# Bump when the architecture or the seeded initialisation changes: untrained cache keys depend on it.
UNTRAINED_INIT = "openl3-seeded-init-v1"
_URL = "https://github.com/torchopenl3/torchopenl3-models/raw/master/"


@dataclass(frozen=True)
class OpenL3Spec:
    backbone: str
    content_type: str  # "music" | "env"

    @property
    def filename(self) -> str:
        return f"torchopenl3_{INPUT_REPR}_{self.content_type}_{EMBED_DIM}.pth.tar"  # torchopenl3 core.get_model_path


SPECS = {s.backbone: s for s in (OpenL3Spec("openl3-mel256-music-512", "music"),
                                  OpenL3Spec("openl3-mel256-env-512", "env"))}

for _spec in SPECS.values():
    weights_registry.register_weights(weights_registry.WeightsCard(
        name=_spec.backbone, filename=_spec.filename, url=_URL + _spec.filename, backbone=_spec.backbone,
        license="MIT (OpenL3 models, marl/openl3; PyTorch conversion torchopenl3/torchopenl3-models)",
        citation="Cramer, Wu, Salamon, Bello, Look, Listen and Learn More: Design Choices for Deep Audio "
                 "Embeddings, ICASSP 2019; torchopenl3 (Gyanendra Das, Humair Raj Khan, Joseph Turian)"))


def network_class():
    return require("torchopenl3.models", "openl3", "OpenL3 (fd-openl3 metrics)").PytorchOpenl3


def construct_network(spec: OpenL3Spec) -> nn.Module:
    """torchopenl3's PytorchOpenl3, its layers' own init left to the weights that replace it."""
    # librosa warns that some of the 256 HTK mel bands are empty at n_dft 2048: they are, in OpenL3 too.
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Empty filters detected", category=UserWarning)
        return network_class()(content_type=spec.content_type, input_repr=INPUT_REPR, embedding_size=EMBED_DIM)


def _seeded_init_(net: nn.Module, seed: int) -> None:
    # He-normal convolutions (ReLU network), zero biases, identity batch norms, except the first one, which
    # sees the dB spectrogram (0 down to -80): centred at -40 with spread 20, so activations stay at unit
    # scale. The STFT kernels and the mel filterbank (buffers) are fixed functions of the settings: kept.
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an int, got {seed!r}")
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, module in net.named_modules():
            if isinstance(module, nn.Conv2d):
                module.weight.normal_(0.0, (2.0 / module.weight[0].numel()) ** 0.5, generator=generator)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.BatchNorm2d):
                module.reset_parameters()
                if name == "batch_normalization_1":
                    module.running_mean.fill_(-40.0)
                    module.running_var.fill_(400.0)


def untrained_network(spec: OpenL3Spec, seed: int) -> nn.Module:
    net = construct_network(spec)
    _seeded_init_(net, seed)
    return net.eval()


def check_state_dict(state, source: str, shapes: Mapping[str, tuple], spec: OpenL3Spec) -> None:
    """CheckpointError naming the first key that is missing, unexpected or mis-shaped."""
    if not isinstance(state, Mapping) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                 for k, v in state.items()):
        raise CheckpointError(f"{source}: not an OpenL3 state dict (expected a dict of tensors, got "
                              f"{type(state).__name__}); use {spec.filename} from {_URL + spec.filename}")
    problems = [f"missing key '{k}'" if k not in state else
                f"key '{k}' has shape {tuple(state[k].shape)}, expected {shape}"
                for k, shape in shapes.items() if k not in state or tuple(state[k].shape) != shape]
    problems += [f"unexpected key '{k}'" for k in state if k not in shapes]
    if problems:
        raise CheckpointError(f"{source}: does not fit torchopenl3 PytorchOpenl3 ({INPUT_REPR}, "
                              f"{spec.content_type}, {EMBED_DIM}): {problems[0]}"
                              f"{f' and {len(problems) - 1} more' if len(problems) > 1 else ''}. "
                              f"Expected {spec.filename} ({_URL + spec.filename})")


def pretrained_network(spec: OpenL3Spec, path) -> nn.Module:
    """PytorchOpenl3 in eval mode with a checkpoint's weights (tensors-only loading, validated, strict)."""
    net = construct_network(spec)
    state = load_checkpoint(path, "OpenL3 checkpoint", f"delete it and run `bench weights fetch {spec.backbone}`")
    check_state_dict(state, str(path), {k: tuple(v.shape) for k, v in net.state_dict().items()}, spec)
    net.load_state_dict(state, strict=True)
    return net.eval()


class StereoEmbedder:
    """[N, 2, 48000] stereo frame pairs -> {"embedding": [N, 1024]} = [left 512, right 512]."""

    def __init__(self, net: nn.Module, device: str):
        self.net = net.to(device)
        self.device = device

    def forward(self, frames) -> dict:
        shape = np.shape(frames)
        if len(shape) != 3 or shape[1:] != (CHANNELS, FRAME):
            raise ValueError(f"OpenL3 takes [N, {CHANNELS}, {FRAME}] stereo frame pairs, got {tuple(shape)}")
        x = to_device(frames, self.device)
        n = x.shape[0]
        with torch.inference_mode():
            # Both channels' frames in one batch: [left of every pair, right of every pair].
            out = self.net(torch.cat([x[:, 0], x[:, 1]]).unsqueeze(1))
        return {"embedding": torch.cat([out[:n], out[n:]], dim=1).float()}

    def __call__(self, frames) -> dict[str, np.ndarray]:
        return {k: v.cpu().numpy() for k, v in self.forward(frames).items()}


def _versions() -> dict:
    try:
        return {"torchopenl3": metadata.version("torchopenl3")}
    except metadata.PackageNotFoundError:
        return {"torchopenl3": None}


def build(spec: OpenL3Spec, choice: WeightsChoice) -> Backbone:
    if choice.mode == "untrained":
        net = untrained_network(spec, choice.seed)
        provenance = {"weights": "untrained", "backbone": spec.backbone, "seed": choice.seed,
                      "init": UNTRAINED_INIT, "file": None, "sha256": None}
    else:
        resolved = weights_registry.resolve(spec.backbone, choice.weights_root, choice.local_file(spec.backbone),
                                            allow_download=choice.allow_download)
        net = pretrained_network(spec, resolved.path)
        provenance = {"backbone": spec.backbone, **resolved.provenance()}
    provenance["architecture"] = {"code": "torchopenl3.models.PytorchOpenl3", "input_repr": INPUT_REPR,
                                  "content_type": spec.content_type, "embedding_size": EMBED_DIM,
                                  "stereo": "left and right frame embeddings concatenated", **_versions()}
    embedder = StereoEmbedder(net, pick_device())
    return Backbone(spec.backbone, {"embedding": CHANNELS * EMBED_DIM}, provenance, embedder, embedder.device,
                    embed_tensors=embedder.forward)


for _spec in SPECS.values():
    register_backbone(_spec.backbone)(functools.partial(build, _spec))
    declare_needs(_spec.backbone, lambda choice, b=_spec.backbone: Needs(weights=(b,) if pretrained(choice, b) else ()))
