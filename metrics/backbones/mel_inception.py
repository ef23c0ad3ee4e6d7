"""Diffsound's evaluator: an InceptionV3 adapted to log-mel spectrograms ("Melception"), as a backbone.

Diffsound (section V-B) computes FID from the pooled features of an InceptionV3 whose input conv takes
1 channel instead of 3 and whose two stem max-pools are removed (80 mel bins are too few rows to pool),
and KL from its class outputs. Its evaluation code (yangdongchao/Text-to-sound-Synthesis,
Codebook/evaluation) uses SpecVQGAN's "melception" checkpoint: torchvision's Inception3 layout,
309 VGGSound classes, inputs standardised per mel bin with VGGSound training statistics.

This module holds
- the log-mel frontend (SpecVQGAN's `melspec_10s_22050hz` transform, our own numpy implementation),
- the architecture, with torchvision's module names so the published checkpoint loads unchanged, and a
  width multiplier and per-stage block counts so a `tiny` config trains in minutes on a CPU,
- the checkpoint format written by `bench train-evaluator` (tensors only, config and classes inside),
- the registered backbone "mel-inception": weights "trained" (a checkpoint trained here), "pretrained"
  (SpecVQGAN's melception + its normalisation file) or "untrained" (seeded, full config).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.core import weights as weights_registry
from bench.core.checkpoints import load_checkpoint
from bench.core.errors import CheckpointError
from metrics.backbones.blocked_linear import block_linear_rows
from metrics.backbones.base import Backbone, Needs, WeightsChoice, declare_needs, pick_device, pretrained, register_backbone

BACKBONE = "mel-inception"

# ------------------------------------------------------------------------------------------ frontend
# SpecVQGAN/Diffsound feature_extraction/extract_mel_spectrogram.py: librosa.load(sr=22050) (mono mean,
# resampy kaiser_best under librosa 0.8), zero-pad or cut to 10 s, |STFT| (1024-point periodic Hann,
# hop 256, centred with reflect padding), Slaney-normalised mel filters 125-7600 Hz (80 bands),
# max(1e-5, .), 20 log10 - 20, (+100) / 100, clip to [0, 1], first 860 frames.
SAMPLE_RATE = 22050
CLIP_SAMPLES = 220500
N_FFT = 1024
HOP = 256
N_MELS = 80
F_MIN, F_MAX = 125.0, 7600.0
N_FRAMES = 860
_AMIN = 1e-5


def _hz_to_mel(hz):
    """Slaney's mel scale (librosa's default, htk=False): linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, np.float64)
    lin = hz / (200.0 / 3)
    log = 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(hz >= 1000.0, log, lin)


def _mel_to_hz(mel):
    mel = np.asarray(mel, np.float64)
    return np.where(mel >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0)), mel * (200.0 / 3))


def mel_filterbank(sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS,
                   f_min: float = F_MIN, f_max: float = F_MAX) -> np.ndarray:
    """Triangular filters [n_mels, 1 + n_fft // 2] on the Slaney scale, each normalised to unit area."""
    edges = _mel_to_hz(np.linspace(_hz_to_mel(f_min), _hz_to_mel(f_max), n_mels + 2))
    freqs = np.linspace(0.0, sample_rate / 2, 1 + n_fft // 2)
    ramps = edges[:, None] - freqs[None, :]
    widths = np.diff(edges)
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    return weights * (2.0 / (edges[2:] - edges[:-2]))[:, None]


_MEL_BASIS = mel_filterbank()
_WINDOW = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)  # periodic Hann


def log_mel(samples: np.ndarray) -> np.ndarray:
    """Float32 [80, 860] in [0, 1] from a 1-D 22.05 kHz signal already padded/cut to 10 s."""
    x = np.pad(np.asarray(samples, np.float64), N_FFT // 2, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(x, N_FFT)[::HOP]
    magnitude = np.abs(np.fft.rfft(frames * _WINDOW, axis=-1)).T  # [513, frames]
    db = 20.0 * np.log10(np.maximum(_AMIN, _MEL_BASIS @ magnitude)) - 20.0
    return np.clip((db + 100.0) / 100.0, 0.0, 1.0)[:, :N_FRAMES].astype(np.float32)


def fit_length(samples: np.ndarray, n: int = CLIP_SAMPLES) -> np.ndarray:
    """Zero-pad at the end or cut to exactly n samples (Diffsound pads every clip to 10 s)."""
    out = np.zeros(n, np.float64)
    out[:min(n, len(samples))] = samples[:n]
    return out


# Floor on a bin's std (1% of the [0, 1] log-mel range): a band that is silent throughout the training
# data (band-limited audio) must not turn inputs with energy there into huge values.
MIN_STD = 0.01


def band_statistics(mels: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """SpecVQGAN's StandardNormalizeAudio statistics: per mel bin, the mean over clips of each clip's
    time-mean, and the mean over clips of each clip's time-std (floored at MIN_STD)."""
    stacked = np.stack([np.asarray(m, np.float64) for m in mels])  # [clips, 80, frames]
    return stacked.mean(axis=2).mean(axis=0), np.maximum(stacked.std(axis=2).mean(axis=0), MIN_STD)


# -------------------------------------------------------------------------------------- architecture

@dataclass(frozen=True)
class InceptionConfig:
    """InceptionV3 widths scaled by `width`; `blocks` = (A blocks at the first resolution, C blocks
    after the first reduction, E blocks after the second). `full` is torchvision's Inception3."""

    name: str
    width: float
    blocks: tuple[int, int, int]
    dropout: float  # before the classifier, during training only
    # Inception3's two stem max-pools (3x3, stride 2). Melception removes them to keep resolution on 80
    # mel rows; a small config keeps them: 16x fewer positions in every Inception block.
    stem_pools: bool = False

    def to_dict(self) -> dict:
        return {**asdict(self), "blocks": list(self.blocks)}

    @classmethod
    def from_dict(cls, d: dict) -> "InceptionConfig":
        return cls(str(d["name"]), float(d["width"]), tuple(int(b) for b in d["blocks"]), float(d["dropout"]),
                   bool(d["stem_pools"]))


CONFIGS = {
    "full": InceptionConfig("full", 1.0, (3, 4, 2), 0.5),
    "tiny": InceptionConfig("tiny", 0.125, (1, 1, 1), 0.2, stem_pools=True),
}
_LETTERS = "bcdefghij"  # torchvision names the blocks of a stage Mixed_5b, Mixed_5c, ...
# Melception, the published checkpoint's shape (and the untrained backbone's).
MELCEPTION_CLASSES = 309


class BasicConv2d(nn.Module):
    def __init__(self, cin: int, cout: int, kernel, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class InceptionBlock(nn.Module):
    """Parallel branches concatenated along channels. A branch may start with a pool ("avg": 3x3 stride
    1, "max": 3x3 stride 2) and then runs named convs in order; a tuple of names forks the branch into
    convs whose outputs are concatenated (InceptionE's 1x3 / 3x1 pairs)."""

    def __init__(self, cin: int, convs: dict[str, tuple], branches: list[tuple[str | None, tuple]]):
        super().__init__()
        for name, (c_in, c_out, kernel, *rest) in convs.items():
            self.add_module(name, BasicConv2d(c_in, c_out, kernel, *rest))
        self.branches = branches
        self.out_channels = 0
        for _, chain in branches:
            last = chain[-1] if chain else None
            names = last if isinstance(last, tuple) else (last,)
            self.out_channels += cin if last is None else sum(convs[n][1] for n in names)

    def forward(self, x):
        outs = []
        for pool, chain in self.branches:
            y = x
            if pool == "avg":
                y = F.avg_pool2d(y, 3, stride=1, padding=1)
            elif pool == "max":
                y = F.max_pool2d(y, 3, stride=2)
            for step in chain:
                y = (torch.cat([self._modules[n](y) for n in step], 1) if isinstance(step, tuple)
                     else self._modules[step](y))
            outs.append(y)
        return torch.cat(outs, 1)


def _block_a(cin, pool_features, c):
    convs = {"branch1x1": (cin, c(64), 1), "branch5x5_1": (cin, c(48), 1),
             "branch5x5_2": (c(48), c(64), 5, 1, 2), "branch3x3dbl_1": (cin, c(64), 1),
             "branch3x3dbl_2": (c(64), c(96), 3, 1, 1), "branch3x3dbl_3": (c(96), c(96), 3, 1, 1),
             "branch_pool": (cin, pool_features, 1)}
    return InceptionBlock(cin, convs, [(None, ("branch1x1",)), (None, ("branch5x5_1", "branch5x5_2")),
                                       (None, ("branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3")),
                                       ("avg", ("branch_pool",))])


def _block_b(cin, c):
    convs = {"branch3x3": (cin, c(384), 3, 2), "branch3x3dbl_1": (cin, c(64), 1),
             "branch3x3dbl_2": (c(64), c(96), 3, 1, 1), "branch3x3dbl_3": (c(96), c(96), 3, 2)}
    return InceptionBlock(cin, convs, [(None, ("branch3x3",)),
                                       (None, ("branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3")),
                                       ("max", ())])


def _block_c(cin, c7, c):
    row, col = ((1, 7), 1, (0, 3)), ((7, 1), 1, (3, 0))
    convs = {"branch1x1": (cin, c(192), 1), "branch7x7_1": (cin, c7, 1), "branch7x7_2": (c7, c7, *row),
             "branch7x7_3": (c7, c(192), *col), "branch7x7dbl_1": (cin, c7, 1),
             "branch7x7dbl_2": (c7, c7, *col), "branch7x7dbl_3": (c7, c7, *row),
             "branch7x7dbl_4": (c7, c7, *col), "branch7x7dbl_5": (c7, c(192), *row),
             "branch_pool": (cin, c(192), 1)}
    dbl = tuple(f"branch7x7dbl_{i}" for i in range(1, 6))
    return InceptionBlock(cin, convs, [(None, ("branch1x1",)),
                                       (None, ("branch7x7_1", "branch7x7_2", "branch7x7_3")),
                                       (None, dbl), ("avg", ("branch_pool",))])


def _block_d(cin, c):
    convs = {"branch3x3_1": (cin, c(192), 1), "branch3x3_2": (c(192), c(320), 3, 2),
             "branch7x7x3_1": (cin, c(192), 1), "branch7x7x3_2": (c(192), c(192), (1, 7), 1, (0, 3)),
             "branch7x7x3_3": (c(192), c(192), (7, 1), 1, (3, 0)), "branch7x7x3_4": (c(192), c(192), 3, 2)}
    return InceptionBlock(cin, convs, [(None, ("branch3x3_1", "branch3x3_2")),
                                       (None, tuple(f"branch7x7x3_{i}" for i in range(1, 5))),
                                       ("max", ())])


def _block_e(cin, c):
    row, col = ((1, 3), 1, (0, 1)), ((3, 1), 1, (1, 0))
    convs = {"branch1x1": (cin, c(320), 1), "branch3x3_1": (cin, c(384), 1),
             "branch3x3_2a": (c(384), c(384), *row), "branch3x3_2b": (c(384), c(384), *col),
             "branch3x3dbl_1": (cin, c(448), 1), "branch3x3dbl_2": (c(448), c(384), 3, 1, 1),
             "branch3x3dbl_3a": (c(384), c(384), *row), "branch3x3dbl_3b": (c(384), c(384), *col),
             "branch_pool": (cin, c(192), 1)}
    return InceptionBlock(cin, convs, [(None, ("branch1x1",)),
                                       (None, ("branch3x3_1", ("branch3x3_2a", "branch3x3_2b"))),
                                       (None, ("branch3x3dbl_1", "branch3x3dbl_2",
                                               ("branch3x3dbl_3a", "branch3x3dbl_3b"))),
                                       ("avg", ("branch_pool",))])


def _c7_widths(n: int) -> list[int]:
    """InceptionC bottleneck widths: torchvision's 128, 160, 160, 192 generalised to n blocks."""
    return [128] if n == 1 else [128] + [160] * (n - 2) + [192]


class MelInception(nn.Module):
    """[N, 80, T] log-mels -> pooled features [N, D] and class logits [N, n_classes]."""

    def __init__(self, config: InceptionConfig, n_classes: int):
        super().__init__()
        for stage, n in zip("ACE", config.blocks):
            if not 1 <= n <= len(_LETTERS):
                raise ValueError(f"config {config.name!r}: {n} {stage} blocks; use 1 to {len(_LETTERS)}")
        self.config, self.n_classes = config, n_classes

        def c(channels: int) -> int:
            return max(1, int(round(channels * config.width)))

        self.Conv2d_1a_3x3 = BasicConv2d(1, c(32), 3, 2)  # 1 input channel instead of RGB
        self.Conv2d_2a_3x3 = BasicConv2d(c(32), c(32), 3)
        self.Conv2d_2b_3x3 = BasicConv2d(c(32), c(64), 3, 1, 1)
        self.maxpool1 = nn.MaxPool2d(3, 2) if config.stem_pools else nn.Identity()
        self.Conv2d_3b_1x1 = BasicConv2d(c(64), c(80), 1)
        self.Conv2d_4a_3x3 = BasicConv2d(c(80), c(192), 3)
        self.maxpool2 = nn.MaxPool2d(3, 2) if config.stem_pools else nn.Identity()
        cin = c(192)
        self.stages: list[str] = []

        def add(name: str, block: InceptionBlock) -> int:
            self.add_module(name, block)
            self.stages.append(name)
            return block.out_channels

        for i in range(config.blocks[0]):
            cin = add(f"Mixed_5{_LETTERS[i]}", _block_a(cin, c(32 if i == 0 else 64), c))
        cin = add("Mixed_6a", _block_b(cin, c))
        for i, c7 in enumerate(_c7_widths(config.blocks[1])):
            cin = add(f"Mixed_6{_LETTERS[i]}", _block_c(cin, c(c7), c))
        cin = add("Mixed_7a", _block_d(cin, c))
        for i in range(config.blocks[2]):
            cin = add(f"Mixed_7{_LETTERS[i]}", _block_e(cin, c))
        self.embedding_dim = cin
        self.fc = nn.Linear(cin, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = x.unsqueeze(1)
        for name in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1",
                     "Conv2d_4a_3x3", "maxpool2", *self.stages):
            x = self._modules[name](x)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.features(x)
        return feats, self.fc(feats)


def empty_model(config: InceptionConfig, n_classes: int) -> MelInception:
    # On the meta device: no memory, and PyTorch's default init never draws from the global RNG.
    with torch.device("meta"):
        return MelInception(config, n_classes)


def seeded_init_(model: MelInception, generator: torch.Generator, scheme: str = "inception3") -> MelInception:
    """Weights drawn from `generator` (batch norm at identity, classifier bias zero).

    "inception3": torchvision's Inception3 init (truncated normal, std 0.1), for training from scratch,
    where batch norm in training mode normalises the scale. "he": normal with std sqrt(2 / fan_in), for
    the untrained backbone: in eval mode batch norm is the identity at init, and only a scale-preserving
    init keeps activations O(1) through the ~20 convolutions (std 0.1 grows them to ~1e12)."""
    if scheme not in ("inception3", "he"):
        raise ValueError(f"unknown init scheme {scheme!r}")
    model.to_empty(device="cpu")
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                if scheme == "he":
                    module.weight.normal_(0.0, (2.0 / module.weight[0].numel()) ** 0.5, generator=generator)
                else:
                    nn.init.trunc_normal_(module.weight, std=0.1, a=-2.0, b=2.0, generator=generator)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.BatchNorm2d):
                module.reset_parameters()  # weight 1, bias 0, running mean 0 / var 1 (no RNG)
    return model


# ---------------------------------------------------------------------------------- checkpoints
# A trained-here checkpoint is one torch.save'd dict of tensors: the model's state under "model.",
# the per-bin normalisation under "frontend.mean" / "frontend.std", and "card": UTF-8 JSON bytes
# (config, classes, training provenance) as a uint8 tensor, so one file is self-describing and
# loads with weights_only=True.
FORMAT = "bench.mel-inception/1"


@dataclass
class Evaluator:
    model: MelInception
    mean: np.ndarray  # [80] per-bin standardisation
    std: np.ndarray
    classes: list[str]
    card: dict


def _json_tensor(obj) -> torch.Tensor:
    return torch.tensor(list(json.dumps(obj, sort_keys=True).encode()), dtype=torch.uint8)


def checkpoint_tensors(model: MelInception, mean, std, card: dict) -> dict[str, torch.Tensor]:
    state = {f"model.{k}": v.detach().cpu().clone() for k, v in model.state_dict().items()}
    state["frontend.mean"] = torch.as_tensor(np.asarray(mean, np.float32))
    state["frontend.std"] = torch.as_tensor(np.asarray(std, np.float32))
    state["card"] = _json_tensor({**card, "format": FORMAT})
    return state


def read_checkpoint(path, what: str = "mel-inception checkpoint") -> dict:
    """torch.load(weights_only=True) with a CheckpointError naming the file when it cannot be read."""
    return load_checkpoint(path, what, "re-fetch it, or retrain it with `bench train-evaluator`")


def check_state(state, expected: dict[str, tuple], source: str, what: str) -> None:
    """CheckpointError naming the first key (sorted) that is missing, unexpected or of another shape."""
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{source}: not a {what} (expected a dict of tensors)")
    for key in sorted(set(expected) | set(state)):
        if key not in state:
            problem = f"missing key '{key}'"
        elif key not in expected:
            problem = f"unexpected key '{key}'"
        elif tuple(state[key].shape) != tuple(expected[key]):
            problem = f"key '{key}' has shape {tuple(state[key].shape)}, expected {tuple(expected[key])}"
        else:
            continue
        raise CheckpointError(f"{source}: does not fit {what}: {problem}")


def is_trained_checkpoint(state) -> bool:
    return isinstance(state, dict) and "card" in state


def load_trained(path, state: dict | None = None) -> Evaluator:
    """A checkpoint written by `bench train-evaluator` (`state`: its already loaded contents)."""
    state = read_checkpoint(path) if state is None else state
    if not is_trained_checkpoint(state):
        raise CheckpointError(f"{path}: not a mel-inception checkpoint written by `bench train-evaluator` "
                              "(no 'card' entry)")
    try:
        card = json.loads(bytes(state["card"].tolist()).decode())
        config = InceptionConfig.from_dict(card["config"])
        classes = [str(c) for c in card["classes"]]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{path}: its 'card' entry is unreadable ({exc}); retrain it") from exc
    if card.get("format") != FORMAT:
        raise CheckpointError(f"{path}: format {card.get('format')!r}, this version reads {FORMAT!r}; retrain it")
    model = empty_model(config, len(classes))
    expected = {f"model.{k}": tuple(v.shape) for k, v in model.state_dict().items()}
    expected |= {"frontend.mean": (N_MELS,), "frontend.std": (N_MELS,), "card": tuple(state["card"].shape)}
    check_state(state, expected, str(path), f"mel-inception ({config.name} config, {len(classes)} classes)")
    model.to_empty(device="cpu").load_state_dict(
        {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}, strict=True)
    return Evaluator(model.eval(), state["frontend.mean"].double().numpy(), state["frontend.std"].double().numpy(),
                     classes, card)


# SpecVQGAN's published Melception (VGGSound, 309 classes); Diffsound's eval config loads this model.
# Their README publishes MD5s (not sha256) for both files: melception a71a41041e945b457c7d3d814bbcf72d,
# stats f449c6fd0e248936c16f6d22492bb625; we record the observed sha256.
_SPECVQGAN = "https://a3s.fi/swift/v1/AUTH_a235c0f452d648828f745589cde1219a/specvqgan_public"
_CITATION = ("Iashin & Rahtu, Taming Visually Guided Sound Generation, BMVC 2021 (SpecVQGAN); used by "
             "Yang et al., Diffsound, IEEE/ACM TASLP 2023")
weights_registry.register_weights(weights_registry.WeightsCard(
    name="melception", filename="melception-21-05-10T09-28-40.pt",
    url=f"{_SPECVQGAN}/melception-21-05-10T09-28-40.pt", backbone=BACKBONE,
    license="MIT (v-iashin/SpecVQGAN)", citation=_CITATION, size_bytes=None))
weights_registry.register_weights(weights_registry.WeightsCard(
    name="melception-stats", filename="train_means_stds_melspec_10s_22050hz.txt",
    url=f"{_SPECVQGAN}/train_means_stds_melspec_10s_22050hz.txt", backbone=BACKBONE,
    license="MIT (v-iashin/SpecVQGAN)", citation=_CITATION))


def load_melception_state(raw, source: str) -> MelInception:
    """Melception from SpecVQGAN's checkpoint contents ({'model': Inception3 state dict}, maybe with
    DataParallel's 'module.' prefix). The auxiliary classifier (AuxLogits.*) only serves training: dropped."""
    state = raw.get("model", raw) if isinstance(raw, dict) else raw
    if not isinstance(state, dict):
        raise CheckpointError(f"{source}: not a melception checkpoint (expected {{'model': state dict}})")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith("AuxLogits.")}
    model = empty_model(CONFIGS["full"], MELCEPTION_CLASSES)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    check_state(state, expected, source, "Melception (torchvision Inception3, 1 input channel, 309 classes)")
    model.to_empty(device="cpu").load_state_dict(state, strict=True)
    return model.eval()


def load_melception(path, stats_path, raw=None) -> Evaluator:
    """SpecVQGAN's melception .pt plus its 80 x (mean, std) text file (VGGSound training statistics)."""
    raw = read_checkpoint(path, "melception checkpoint") if raw is None else raw
    model = load_melception_state(raw, str(path))
    try:
        stats = np.loadtxt(stats_path, dtype=np.float64)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read melception statistics {stats_path} ({exc}); re-fetch it") from exc
    if stats.shape != (N_MELS, 2):
        raise CheckpointError(f"{stats_path}: expected {N_MELS} rows of 'mean std', got shape {stats.shape}")
    return Evaluator(model, stats[:, 0], stats[:, 1], [f"vggsound-{i}" for i in range(MELCEPTION_CLASSES)],
                     {"source": "SpecVQGAN melception (VGGSound)"})


# ---------------------------------------------------------------------------------------- backbone
# Bump when the architecture or the seeded initialisation changes: untrained cache keys depend on it.
UNTRAINED_INIT = "mel-inception-full-309-he-normal-v1"


def embed_fn(evaluator: Evaluator, device: str):
    model = evaluator.model.to(device)
    mean = torch.as_tensor(evaluator.mean, dtype=torch.float32, device=device)[:, None]
    std = torch.as_tensor(evaluator.std, dtype=torch.float32, device=device)[:, None]

    def embed(batch: np.ndarray) -> dict[str, np.ndarray]:
        x = torch.as_tensor(batch, dtype=torch.float32, device=device)
        if x.ndim != 3 or x.shape[1] != N_MELS:
            raise ValueError(f"expected log-mels [N, {N_MELS}, frames], got {tuple(x.shape)}")
        with torch.inference_mode():
            feats, logits = model((x - mean) / std)
        return {"embedding": feats.float().cpu().numpy(), "logits": logits.float().cpu().numpy()}

    return embed


def trained_provenance(path: Path, sha256: str, card: dict, source: str) -> dict:
    training = card.get("training", {})
    return {"weights": "trained", "backbone": BACKBONE, "name": f"{BACKBONE} (trained with bench train-evaluator)",
            "file": path.name, "sha256": sha256, "source": source, "url": None, "hash_published": False,
            "config": card["config"]["name"], "n_classes": len(card["classes"]),
            "training": {k: training.get(k) for k in ("data", "fingerprint", "steps", "seed", "batch_size",
                                                       "train_accuracy", "val_accuracy")}}


@register_backbone(BACKBONE)
def build(choice: WeightsChoice) -> Backbone:
    device = pick_device()
    trained = choice.trained_file(BACKBONE)  # a suite's [evaluators] entry: loads under any mode
    local = choice.local_file(BACKBONE)  # --checkpoint mel-inception=PATH: trained here or melception
    if trained is None and local is not None and not Path(local).expanduser().is_file():
        raise CheckpointError(f"--checkpoint {BACKBONE}={local}: no such file")
    state = read_checkpoint(Path(local).expanduser()) if trained is None and local is not None else None
    if trained is not None or is_trained_checkpoint(state):
        path = Path(trained or local).expanduser()
        evaluator = load_trained(path, state)
        provenance = trained_provenance(path, weights_registry.sha256_file(path), evaluator.card,
                                        "suite evaluator (trained here)" if trained else "local file")
    elif choice.mode == "untrained":
        model = seeded_init_(empty_model(CONFIGS["full"], MELCEPTION_CLASSES),
                             torch.Generator().manual_seed(choice.seed), scheme="he")
        evaluator = Evaluator(model.eval(), np.zeros(N_MELS), np.ones(N_MELS), [], {})
        provenance = {"weights": "untrained", "backbone": BACKBONE, "seed": choice.seed, "init": UNTRAINED_INIT,
                      "file": None, "sha256": None}
    else:
        resolved = weights_registry.resolve("melception", choice.weights_root, local,
                                            allow_download=choice.allow_download)
        stats = weights_registry.resolve("melception-stats", choice.weights_root,
                                         choice.local_file("melception-stats"), allow_download=choice.allow_download)
        evaluator = load_melception(resolved.path, stats.path, state)
        provenance = {"backbone": BACKBONE, **resolved.provenance(),
                      "normalisation": {"file": stats.path.name, "sha256": stats.sha256}}
    model = block_linear_rows(evaluator.model)
    return Backbone(BACKBONE, {"embedding": model.embedding_dim, "logits": model.n_classes}, provenance,
                    embed_fn(evaluator, device), device)


def _needs(choice: WeightsChoice) -> Needs:
    # a --checkpoint mel-inception=PATH may be a model trained here (no stats file then): checked when loaded
    if not pretrained(choice, BACKBONE) or choice.local_file(BACKBONE) is not None:
        return Needs()
    return Needs(weights=("melception", "melception-stats"))


declare_needs(BACKBONE, _needs)
