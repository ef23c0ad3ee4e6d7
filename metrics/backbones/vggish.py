"""VGGish, the one file: AudioSet's log-mel frontend, the network, its checkpoint card and the backbone.

- Frontend: matches AudioSet's ``mel_features`` / ``vggish_input`` numerics; float64 until the final
  examples, which are float32 like the network input.
- Network: the parameter layout of torchvggish's ``vggish-10086976.pth``; ``forward`` returns the 128-d
  embedding BEFORE the final ReLU (what both FAD presets use), without PCA or quantization.
- Backbone: torchvggish's checkpoint, or seeded random weights (untrained).
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from bench.core import weights as weights_registry
from bench.core.checkpoints import load_checkpoint
from bench.core.errors import CheckpointError
from metrics.backbones.blocked_linear import block_linear_rows
from metrics.backbones.base import (Backbone, declare_needs, Needs, pick_device,
                                    pretrained, register_backbone, to_device, WeightsChoice)


# ------------------------------------------------------------------------------------------ frontend

SAMPLE_RATE = 16000
NUM_BANDS = 64
EXAMPLE_FRAMES = 96

_WINDOW_SECONDS = 0.025
_HOP_SECONDS = 0.010
_LOWER_HZ = 125.0
_UPPER_HZ = 7500.0
_LOG_OFFSET = 0.01  # keeps log() finite on silence


def frame(data: np.ndarray, window_length: int, hop_length: int) -> np.ndarray:
    """Full frames along axis 0: shape ``(num_frames, window_length, *data.shape[1:])``.

    Returns a read-only strided view (frames overlap in memory, so writing would corrupt neighbours).
    """
    if window_length < 1 or hop_length < 1:
        raise ValueError(f"window_length and hop_length must be >= 1, got {window_length}, {hop_length}")
    data = np.asarray(data)
    num_frames = max(0, 1 + (data.shape[0] - window_length) // hop_length)
    shape = (num_frames, window_length) + data.shape[1:]
    strides = (data.strides[0] * hop_length,) + data.strides
    return np.lib.stride_tricks.as_strided(data, shape=shape, strides=strides, writeable=False)


def periodic_hann(n: int) -> np.ndarray:
    """Periodic Hann window (the DFT-even variant TF uses, unlike ``np.hanning``)."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi / n * np.arange(n))


def stft_magnitude(signal: np.ndarray, fft_length: int, hop_length: int, window_length: int) -> np.ndarray:
    """Magnitude STFT, ``[frames, fft_length // 2 + 1]``; no padding, so only full windows count."""
    frames = frame(np.asarray(signal, dtype=np.float64), window_length, hop_length)
    windowed = frames * periodic_hann(window_length)
    return np.abs(np.fft.rfft(windowed, int(fft_length)))


def hertz_to_mel(frequencies_hz):
    """HTK-style mel scale: ``1127 * ln(1 + f / 700)``."""
    return 1127.0 * np.log(1.0 + np.asarray(frequencies_hz, dtype=np.float64) / 700.0)


def mel_matrix(num_mel_bins: int = NUM_BANDS, num_spectrogram_bins: int = 257,
               sample_rate: float = SAMPLE_RATE, lower_hz: float = _LOWER_HZ,
               upper_hz: float = _UPPER_HZ) -> np.ndarray:
    """``[num_spectrogram_bins, num_mel_bins]`` triangular weights, interpolated in mel space."""
    nyquist = sample_rate / 2.0
    if lower_hz < 0.0:
        raise ValueError(f"lower_hz must be >= 0, got {lower_hz}")
    if lower_hz >= upper_hz:
        raise ValueError(f"lower_hz ({lower_hz}) must be below upper_hz ({upper_hz})")
    if upper_hz > nyquist:
        raise ValueError(f"upper_hz ({upper_hz}) must not exceed the Nyquist frequency ({nyquist})")
    bins_mel = hertz_to_mel(np.linspace(0.0, nyquist, num_spectrogram_bins))[:, None]
    edges = np.linspace(hertz_to_mel(lower_hz), hertz_to_mel(upper_hz), num_mel_bins + 2)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins_mel - lower) / (center - lower)
    falling = (upper - bins_mel) / (upper - center)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    # The reference zeroes the DC bin whatever lower_hz is.
    weights[0, :] = 0.0
    return weights


def log_mel_spectrogram(samples_16k: np.ndarray) -> np.ndarray:
    """``[frames, 64]`` log-mel of a 16 kHz mono waveform (25 ms window, 10 ms hop)."""
    samples = np.asarray(samples_16k, dtype=np.float64)
    if samples.ndim != 1:
        raise ValueError(f"expected a 1-D waveform, got shape {samples.shape}")
    window = int(round(SAMPLE_RATE * _WINDOW_SECONDS))
    hop = int(round(SAMPLE_RATE * _HOP_SECONDS))
    fft_length = 2 ** int(np.ceil(np.log2(window)))
    spectrogram = stft_magnitude(samples, fft_length, hop, window)
    mel = spectrogram @ mel_matrix(NUM_BANDS, spectrogram.shape[1], SAMPLE_RATE)
    return np.log(mel + _LOG_OFFSET)


def examples(log_mel: np.ndarray, window_frames: int = EXAMPLE_FRAMES,
             hop_frames: int = EXAMPLE_FRAMES) -> np.ndarray:
    """Float32 network input ``[k, 1, window_frames, bands]`` cut from ``[frames, bands]`` (k may be 0)."""
    log_mel = np.asarray(log_mel, dtype=np.float64)
    if log_mel.ndim != 2:
        raise ValueError(f"expected a [frames, bands] log-mel, got shape {log_mel.shape}")
    return frame(log_mel, window_frames, hop_frames)[:, None].astype(np.float32)


# ------------------------------------------------------------------------------------------- network

_FEATURE_CONFIG = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M")
EMBEDDING_DIM = 128


class ExampleStream:
    """`examples(log_mel_spectrogram(x))` for a long 16 kHz signal fed in pieces: example j covers samples
    [15360 j, 15360 j + 15600), so complete examples are cut as soon as their samples have arrived (the
    same frames, FFTs and filterbank products as on the whole signal); a tail too short for an example
    yields nothing, as on the whole signal."""

    _HOP = int(round(SAMPLE_RATE * _HOP_SECONDS))
    _WINDOW = int(round(SAMPLE_RATE * _WINDOW_SECONDS))
    _SPAN = EXAMPLE_FRAMES * _HOP  # samples between example starts
    _BATCH = 64  # examples cut per step

    def __init__(self):
        self.buffer = np.zeros(0)

    def push(self, samples: np.ndarray):
        self.buffer = np.concatenate([self.buffer, np.asarray(samples, dtype=np.float64)])
        overhang = self._WINDOW - self._HOP  # the last frame of an example reaches past the next start
        while (k := min(self._BATCH, (len(self.buffer) - overhang) // self._SPAN)) > 0:
            yield examples(log_mel_spectrogram(self.buffer[:k * self._SPAN + overhang]))
            self.buffer = self.buffer[k * self._SPAN:]


def _make_features() -> nn.Sequential:
    layers: list[nn.Module] = []
    in_channels = 1
    for v in _FEATURE_CONFIG:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(in_channels, v, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            in_channels = v
    return nn.Sequential(*layers)


class VGGish(nn.Module):
    """VGGish up to the pre-activation 128-d embedding."""

    def __init__(self):
        super().__init__()
        self.features = _make_features()
        # A [N,1,96,64] input leaves the features as [N,512,6,4].
        self.embeddings = nn.Sequential(
            nn.Linear(512 * 4 * 6, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, EMBEDDING_DIM),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        # The weights were ported from TF, which flattens channels-last ([N,H,W,C]); the same two
        # transposes as torchvggish keep the flattened order identical.
        x = torch.transpose(x, 1, 3)
        x = torch.transpose(x, 1, 2)
        x = x.contiguous().view(x.size(0), -1)
        return self.embeddings(x)


def _empty_model() -> VGGish:
    # Built on the meta device: no memory, and the default init never draws from the global RNG.
    with torch.device("meta"):
        return VGGish()


EXPECTED_SHAPES: dict[str, tuple] = {k: tuple(v.shape) for k, v in _empty_model().state_dict().items()}


def _check_state_dict(state_dict, source: str) -> None:
    """Raise CheckpointError unless ``state_dict`` has exactly the expected keys and shapes."""
    if not isinstance(state_dict, Mapping) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state_dict.items()):
        raise CheckpointError(f"{source}: not a VGGish state dict (expected a dict of tensors, "
                              f"got {type(state_dict).__name__}); use torchvggish's vggish-10086976.pth")
    for key in sorted(set(EXPECTED_SHAPES) | set(state_dict)):
        if key not in state_dict:
            problem = f"missing key '{key}'"
        elif key not in EXPECTED_SHAPES:
            problem = f"unexpected key '{key}'"
        elif tuple(state_dict[key].shape) != EXPECTED_SHAPES[key]:
            problem = (f"key '{key}' has shape {tuple(state_dict[key].shape)}, "
                       f"expected {EXPECTED_SHAPES[key]}")
        else:
            continue
        raise CheckpointError(f"{source}: does not fit VGGish: {problem}{_prefix_hint(state_dict)}")


def _prefix_hint(state_dict: Mapping) -> str:
    # Wrappers such as DataParallel save 'module.features.0.weight'; say so rather than strip silently.
    prefixes = {k.split(".", 1)[0] + "." for k in state_dict
                if k not in EXPECTED_SHAPES and "." in k and k.split(".", 1)[1] in EXPECTED_SHAPES}
    if not prefixes:
        return ""
    return f" (keys look prefixed with {', '.join(repr(p) for p in sorted(prefixes))}; strip the prefix)"


def load_state_dict_file(path) -> dict[str, torch.Tensor]:
    """Load and validate a VGGish checkpoint (tensors only: never unpickles arbitrary objects)."""
    state_dict = load_checkpoint(path, "VGGish checkpoint", "re-fetch it (bench weights fetch vggish) or pass "
                                 "the right file")
    _check_state_dict(state_dict, str(path))
    return dict(state_dict)


def _seeded_init_(model: VGGish, seed: int) -> None:
    # He-uniform weights keep activations at a usable scale through the ReLUs, so the untrained
    # backbone still gives non-degenerate embeddings; biases use PyTorch's default 1/sqrt(fan_in).
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                fan_in = module.weight[0].numel()
                module.weight.uniform_(-math.sqrt(6.0 / fan_in), math.sqrt(6.0 / fan_in), generator=generator)
                module.bias.uniform_(-1.0 / math.sqrt(fan_in), 1.0 / math.sqrt(fan_in), generator=generator)


def build_vggish(state_dict: Mapping | None = None, seed: int | None = None) -> VGGish:
    """VGGish in eval mode, from a state dict (strict) or, for tests/smoke runs, seeded random weights."""
    if (state_dict is None) == (seed is None):
        raise ValueError("build_vggish needs exactly one of state_dict or seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError(f"seed must be an int, got {seed!r}")
    model = _empty_model().to_empty(device="cpu")
    if state_dict is not None:
        _check_state_dict(state_dict, "state dict")
        model.load_state_dict(state_dict, strict=True)
    else:
        _seeded_init_(model, seed)
    # Default (contiguous) layout: channels-last was 0.79x (VGGish) / 0.94x (Cnn14) the CPU time, but its
    # outputs moved by ~1e-13 between runs of one set (a reference scored against itself gave FAD 1.1e-13).
    return model.eval()


def _checked(examples) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(examples) if not isinstance(examples, torch.Tensor) else examples,
                        dtype=torch.float32)
    if x.ndim != 4 or tuple(x.shape[1:]) != (1, 96, 64):
        raise ValueError(f"expected examples of shape [N, 1, 96, 64], got {tuple(x.shape)}")
    return x


def forward(model: VGGish, examples) -> torch.Tensor:
    """Float32 ``[N, 128]`` embeddings of ``[N, 1, 96, 64]`` examples in one batch, left on the model's device."""
    x = _checked(examples)
    param = next(model.parameters())
    with torch.inference_mode():
        return model(to_device(x, str(param.device)).to(param.dtype)).float()


def embed(model: VGGish, examples, batch_size: int = 64) -> np.ndarray:
    """Float32 ``[N, 128]`` embeddings of ``[N, 1, 96, 64]`` examples, computed in batches."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    x = _checked(examples)
    out = [np.zeros((0, EMBEDDING_DIM), dtype=np.float32)]
    for start in range(0, x.shape[0], batch_size):
        out.append(forward(model, x[start:start + batch_size]).cpu().numpy())
    return np.concatenate(out)


# ------------------------------------------------------------------------------------------ backbone

# Bump when the architecture or the seeded initialisation changes: untrained cache keys depend on it.
UNTRAINED_INIT = "vggish-seeded-init-v1"

weights_registry.register_weights(weights_registry.WeightsCard(
    name="vggish",
    filename="vggish-10086976.pth",
    url="https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish-10086976.pth",
    backbone="vggish",
    license="Apache-2.0 (TensorFlow models VGGish, ported by harritaylor/torchvggish)",
    citation="Hershey et al., CNN Architectures for Large-Scale Audio Classification, ICASSP 2017",
    sha256_prefix="10086976",
))


@register_backbone("vggish")
def build(choice: WeightsChoice) -> Backbone:
    device = pick_device()
    if choice.mode == "untrained":
        model = build_vggish(seed=choice.seed)
        provenance = {"weights": "untrained", "backbone": "vggish", "seed": choice.seed,
                      "init": UNTRAINED_INIT, "file": None, "sha256": None}
    else:
        resolved = weights_registry.resolve("vggish", choice.weights_root, choice.local_file("vggish"),
                                            allow_download=choice.allow_download)
        model = build_vggish(state_dict=load_state_dict_file(resolved.path))
        provenance = {"backbone": "vggish", **resolved.provenance()}
    model = block_linear_rows(model.to(device))
    return Backbone("vggish", {"embedding": 128}, provenance, lambda x: {"embedding": embed(model, x)},
                    device, embed_tensors=lambda x: {"embedding": forward(model, x)})


declare_needs("vggish", lambda choice: Needs(weights=("vggish",) if pretrained(choice, "vggish") else ()))
