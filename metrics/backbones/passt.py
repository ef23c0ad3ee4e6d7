"""PaSST (hear21passt's `passt_s_swa_p16_128_ap476`) as a backbone: 32 kHz waveform -> 527 AudioSet logits.

The network is hear21passt's own PaSST, built with `pretrained=False` (its loader always downloads) and
filled from our weights cache, or with seeded random weights (untrained). The frontend is ours: it
computes what hear21passt's `AugmentMelSTFT` computes in eval mode, without its side effects (it draws
from the global torch RNG on every call, needs torchaudio, and uses the `torch.stft(return_complex=False)`
path torch has deprecated). tests/test_passt.py checks the whole waveform -> logits pipeline against
hear21passt's wrapper forward.
"""
from __future__ import annotations

import contextlib
import io
import math
import warnings
from collections.abc import Mapping
from importlib import metadata
from unittest import mock

import numpy as np

from bench.core import weights as weights_registry
from bench.core.checkpoints import load_checkpoint
from bench.core.errors import CheckpointError
from bench.core.extras import require
from metrics.backbones.blocked_linear import block_linear_rows
from metrics.backbones.base import (Backbone, declare_needs, Needs, pick_device,
                                    pretrained, register_backbone, to_device, WeightsChoice)

BACKBONE_ID = "passt-s-swa-p16-128-ap476"
ARCH = "passt_s_swa_p16_128_ap476"
# Bump when the architecture or the seeded initialisation changes: untrained cache keys depend on it.
UNTRAINED_INIT = "passt-seeded-init-v1"

SAMPLE_RATE = 32000
MAX_SAMPLES = 10 * SAMPLE_RATE  # the model was trained on 10 s clips (input_tdim=998 frames)
# The patch embedding needs 16 frames: pre-emphasis drops one sample, then 1 + (n - 1) // 320 >= 16.
MIN_SAMPLES = 4801
N_CLASSES = 527
EMBED_DIM = 768

# Frontend, as hear21passt's get_basic_model configures AugmentMelSTFT (eval mode: no augmentation).
N_FFT, WIN_LENGTH, HOP, N_MELS = 1024, 800, 320, 128
F_MIN, F_MAX = 0.0, 15000.0  # fmax=None resolves to sr // 2 - fmax_aug_range // 2 = 16000 - 1000
PREEMPHASIS = 0.97
LOG_OFFSET = 1e-5
NORM_SHIFT, NORM_SCALE = 4.5, 5.0

weights_registry.register_weights(weights_registry.WeightsCard(
    name=BACKBONE_ID,
    filename="passt-s-f128-p16-s10-ap.476-swa.pt",
    url="https://github.com/kkoutini/PaSST/releases/download/v0.0.1-audioset/passt-s-f128-p16-s10-ap.476-swa.pt",
    backbone=BACKBONE_ID,
    license="Apache-2.0 (kkoutini/PaSST; hear21passt)",
    citation="Koutini et al., Efficient Training of Audio Transformers with Patchout, Interspeech 2022",
))


# ---------------------------------------------------------------- frontend

def mel_filterbank():
    """[128, 513] float32 Kaldi-style triangular mel filters (mel = 1127 ln(1 + f/700)), 0-15 kHz,
    with a zero column for the Nyquist bin (torchaudio's kaldi.get_mel_banks, as hear21passt uses it)."""
    import torch

    low, high = 1127.0 * math.log(1.0 + F_MIN / 700.0), 1127.0 * math.log(1.0 + F_MAX / 700.0)
    delta = (high - low) / (N_MELS + 1)
    band = torch.arange(N_MELS).unsqueeze(1)
    left, center, right = low + band * delta, low + (band + 1.0) * delta, low + (band + 2.0) * delta
    bins = 1127.0 * (1.0 + SAMPLE_RATE / N_FFT * torch.arange(N_FFT / 2) / 700.0).log().unsqueeze(0)
    up = (bins - left) / (center - left)
    down = (right - bins) / (right - center)
    filters = torch.clamp(torch.minimum(up, down), min=0.0)
    return torch.nn.functional.pad(filters, (0, 1))


def log_mel(waves, filters):
    """[N, n] float32 waveforms -> [N, 128, 1 + (n - 1) // 320] normalised log-mel (AugmentMelSTFT.eval)."""
    import torch

    x = waves[:, 1:] - PREEMPHASIS * waves[:, :-1]
    window = torch.hann_window(WIN_LENGTH, periodic=False, device=x.device)
    spec = torch.stft(x, N_FFT, hop_length=HOP, win_length=WIN_LENGTH, window=window, center=True,
                      pad_mode="reflect", normalized=False, return_complex=True)
    power = torch.view_as_real(spec).pow(2).sum(-1)  # re^2 + im^2, summed as hear21passt does
    return (torch.log(filters @ power + LOG_OFFSET) + NORM_SHIFT) / NORM_SCALE


# ---------------------------------------------------------------- network

def network_module():
    from bench.core.torch_compat import ensure_torchvision_importable

    ensure_torchvision_importable()  # timm, which hear21passt.models.passt imports, needs torchvision
    return require("hear21passt.models.passt", "passt", "PaSST (kl-passt metrics)")


def construct_network():
    """hear21passt's PaSST as get_basic_model builds it, with pretrained=False. Its own random init
    is meant to be overwritten (checkpoint or seeded init)."""
    import torch

    passt = network_module()
    # The constructor prints a banner and the whole model: silence it. Its layers initialise from the
    # global RNG: leave that as it was. PaSST.init_weights (truncated normals over 86M weights, most of
    # the build time) is skipped: every tensor is overwritten afterwards.
    with torch.random.fork_rng(devices=[]), contextlib.redirect_stdout(io.StringIO()), \
            mock.patch.object(passt.PaSST, "init_weights", lambda self, mode="": None):
        return passt.get_model(arch=ARCH, pretrained=False, n_classes=N_CLASSES, in_channels=1, fstride=10,
                               tstride=10, input_fdim=N_MELS, input_tdim=998, u_patchout=0, s_patchout_t=0,
                               s_patchout_f=0)


def untrained_network(seed: int):
    """PaSST in eval mode with seeded random weights."""
    net = construct_network()
    _seeded_init_(net, seed)
    return net.eval()


def pretrained_network(path):
    """PaSST in eval mode with the weights of a checkpoint file (validated, loaded strictly)."""
    net = construct_network()
    net.load_state_dict(load_state_dict_file(path, expected_shapes(net)), strict=True)
    return net.eval()


def expected_shapes(net) -> dict[str, tuple]:
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def _seeded_init_(net, seed: int) -> None:
    # Fan-in scaled normals (clipped at 2 std) keep activations at unit scale through the 12 blocks,
    # so the untrained logits spread out and softmax/KL stay informative; LayerNorms start as identities.
    import torch
    from torch import nn

    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an int, got {seed!r}")
    generator = torch.Generator().manual_seed(seed)

    def clipped_normal_(tensor, std):
        tensor.normal_(0.0, std, generator=generator).clamp_(-2 * std, 2 * std)

    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                clipped_normal_(module.weight, module.weight[0].numel() ** -0.5)
                module.bias.zero_()
            elif isinstance(module, nn.LayerNorm):
                module.weight.fill_(1.0)
                module.bias.zero_()
        for name in ("cls_token", "dist_token", "new_pos_embed", "freq_new_pos_embed", "time_new_pos_embed"):
            clipped_normal_(getattr(net, name), 0.02)


# ---------------------------------------------------------------- checkpoints

def check_state_dict(state_dict, source: str, shapes: Mapping[str, tuple]) -> None:
    """Raise CheckpointError naming the first key that is missing, unexpected or mis-shaped."""
    import torch

    if not isinstance(state_dict, Mapping) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state_dict.items()):
        raise CheckpointError(f"{source}: not a PaSST state dict (expected a dict of tensors, got "
                              f"{type(state_dict).__name__}); use {weights_registry.get_card(BACKBONE_ID).url}")
    problems = [f"missing key '{key}'" if key not in state_dict else
                f"key '{key}' has shape {tuple(state_dict[key].shape)}, expected {shape}"
                for key, shape in shapes.items()
                if key not in state_dict or tuple(state_dict[key].shape) != shape]
    problems += [f"unexpected key '{key}'" for key in state_dict if key not in shapes]
    if problems:
        # A wrapper's state dict (hear21passt's PasstBasicWrapper saves 'net.*') fits once unprefixed.
        prefixes = sorted({k.split(".", 1)[0] + "." for k in state_dict
                           if k not in shapes and "." in k and k.split(".", 1)[1] in shapes})
        hint = (f" (keys look prefixed with {', '.join(map(repr, prefixes))}; strip the prefix)"
                if prefixes else "")
        raise CheckpointError(f"{source}: does not fit PaSST {ARCH}: {problems[0]}"
                              f"{f' and {len(problems) - 1} more' if len(problems) > 1 else ''}{hint}")


def load_state_dict_file(path, shapes: Mapping[str, tuple]) -> dict:
    """Load (tensors only) and validate a PaSST checkpoint: a plain state dict or the training code's
    {"model": state_dict}; a flattened patch projection is reshaped (both as hear21passt's loader does)."""
    import torch

    obj = load_checkpoint(path, "PaSST checkpoint", f"delete it and re-fetch it (bench weights fetch {BACKBONE_ID})")
    state = dict(obj["model"]) if isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping) else obj
    key = "patch_embed.proj.weight"
    if isinstance(state, dict) and isinstance(state.get(key), torch.Tensor) and state[key].ndim < 4 \
            and state[key].numel() == math.prod(shapes[key]):
        state[key] = state[key].reshape(shapes[key])
    check_state_dict(state, str(path), shapes)
    return dict(state)


# ---------------------------------------------------------------- the backbone

class PasstClassifier:
    """Waveforms [N, n] at 32 kHz (4801 <= n <= 320000) -> {"logits": [N, 527], "embedding": [N, 768]}.

    The embedding is the mean of the class and distillation tokens, which feeds the heads."""

    def __init__(self, net, device: str = "cpu"):
        self.net = net.to(device)
        self.device = device
        self.filters = mel_filterbank().to(device)
        self._passt = network_module()

    def __call__(self, waves) -> dict[str, np.ndarray]:
        return {name: value.cpu().numpy() for name, value in self.forward(waves).items()}

    def forward(self, waves) -> dict:
        """The same outputs as float32 tensors left on the device (no host sync)."""
        import torch

        shape = np.shape(waves)
        if len(shape) != 2 or not MIN_SAMPLES <= shape[1] <= MAX_SAMPLES:
            raise ValueError(f"PaSST takes [N, n] waveforms at 32 kHz with {MIN_SAMPLES} <= n <= {MAX_SAMPLES}, "
                             f"got shape {tuple(shape)}")
        # hear21passt prints debug shapes on the first forward of the process while this flag is set.
        self._passt.first_RUN = False
        with torch.inference_mode(), warnings.catch_warnings():
            # PatchEmbed warns whenever the frame count differs from its nominal 998 (10 s gives 1000);
            # the time positional embedding is cut to the input, which is how PaSST handles any length.
            warnings.filterwarnings("ignore", message="Input image size", category=UserWarning)
            logits, features = self.net(log_mel(to_device(waves, self.device), self.filters).unsqueeze(1))
        return {"logits": logits.float(), "embedding": features.float()}


def _library_versions() -> dict:
    out = {}
    for dist in ("hear21passt", "timm"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


@register_backbone(BACKBONE_ID)
def build(choice: WeightsChoice) -> Backbone:
    device = pick_device()
    if choice.mode == "untrained":
        net = untrained_network(choice.seed)
        provenance = {"weights": "untrained", "backbone": BACKBONE_ID, "seed": choice.seed,
                      "init": UNTRAINED_INIT, "file": None, "sha256": None}
    else:
        resolved = weights_registry.resolve(BACKBONE_ID, choice.weights_root, choice.local_file(BACKBONE_ID),
                                            allow_download=choice.allow_download)
        net = pretrained_network(resolved.path)
        provenance = {"backbone": BACKBONE_ID, **resolved.provenance()}
    provenance["architecture"] = {"arch": ARCH, **_library_versions()}
    classifier = PasstClassifier(block_linear_rows(net), device)
    return Backbone(BACKBONE_ID, {"logits": N_CLASSES, "embedding": EMBED_DIM}, provenance, classifier, device,
                    embed_tensors=classifier.forward)


declare_needs(BACKBONE_ID, lambda choice: Needs(weights=(BACKBONE_ID,) if pretrained(choice, BACKBONE_ID) else ()))
