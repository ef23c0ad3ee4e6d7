"""Mel spectrograms and the way back to audio, shared by the mel-domain reference generators.

- `MelSpec`: log-mel (Hann STFT, Slaney mel filters from librosa, log of clamped power), scaled to
  roughly [-1, 1] so autoencoders see unit-range inputs.
- `MelVocoder`: a small trainable vocoder (conv stack + transposed-conv upsampling by the hop), trained
  with a multi-resolution STFT loss (`stft_loss`). Far smaller than HiFi-GAN; same job.
- `griffin_lim`: phase reconstruction from the mel (pseudo-inverse of the filterbank, then Griffin-Lim
  from a zero initial phase, so it is deterministic). Only a fallback: results using it say so.
- `mel_to_wave`: the learned vocoder if the model has one, else Griffin-Lim, and the label to record.
- `grid_positions`: 2-D sinusoidal positions over a (mel, frame) token grid, for mel-domain transformers.
"""
from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.core.errors import ConfigError
from bench.core.extras import require
from generators.text_encoders import sinusoid

LOG_FLOOR = 1e-5
# log-mel of speech/sound sits roughly in [log(1e-5), log(100)] = [-11.5, 4.6]: map it to about [-1, 1]
LOG_CENTER, LOG_SCALE = -3.5, 8.0
VOCODERS = ("learned", "griffin-lim")
GRIFFIN_LIM_LABEL = "griffin-lim (phase reconstruction fallback, no trained vocoder)"


@functools.lru_cache(maxsize=16)
def mel_filters(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None) -> np.ndarray:
    librosa = require("librosa", "generators", "the mel vocoder (diffsound, srcgaudio)")
    return librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax,
                               htk=False, norm="slaney").astype(np.float32)


class MelSpec(nn.Module):
    """Waveform [B, N] -> normalized log-mel [B, n_mels, frames], frames = N // hop + 1 (centered STFT)."""

    def __init__(self, sample_rate: int, n_fft: int, hop: int, n_mels: int, fmin: float = 0.0,
                 fmax: float | None = None):
        super().__init__()
        self.sample_rate, self.n_fft, self.hop, self.n_mels = sample_rate, n_fft, hop, n_mels
        self.register_buffer("filters", torch.from_numpy(mel_filters(sample_rate, n_fft, n_mels, fmin, fmax)),
                             persistent=False)
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def magnitude(self, wave: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(wave, self.n_fft, self.hop, window=self.window, center=True, return_complex=True)
        return spec.abs()

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        mel = self.filters @ self.magnitude(wave).pow(2)
        return (torch.log(mel.clamp_min(LOG_FLOOR)) - LOG_CENTER) / LOG_SCALE

    def to_power(self, logmel: torch.Tensor) -> torch.Tensor:
        return torch.exp(logmel * LOG_SCALE + LOG_CENTER)


def griffin_lim(mel: MelSpec, logmel: torch.Tensor, n_samples: int, iterations: int = 32) -> torch.Tensor:
    """Phase reconstruction fallback: normalized log-mel [B, n_mels, frames] -> waveform [B, n_samples]."""
    power = mel.to_power(logmel)
    inverse = torch.linalg.pinv(mel.filters)  # [n_freq, n_mels]
    magnitude = (inverse @ power).clamp_min(0).sqrt()
    phase = torch.ones_like(magnitude, dtype=torch.complex64)  # zero phase: deterministic start
    for _ in range(iterations):
        wave = torch.istft(magnitude * phase, mel.n_fft, mel.hop, window=mel.window, length=n_samples)
        spec = torch.stft(wave, mel.n_fft, mel.hop, window=mel.window, center=True, return_complex=True)
        phase = spec / spec.abs().clamp_min(1e-8)
    return torch.istft(magnitude * phase, mel.n_fft, mel.hop, window=mel.window, length=n_samples)


def check_vocoder(generator: str, config: dict) -> None:
    if config.get("vocoder") not in VOCODERS:
        raise ConfigError(f"{generator} config vocoder={config.get('vocoder')!r}; use one of {VOCODERS}")


def pad_frames(logmel: torch.Tensor, frames: int) -> torch.Tensor:
    """Pad (with the clip's floor) or crop a log-mel [..., T] to exactly `frames` frames."""
    return F.pad(logmel, (0, max(0, frames - logmel.shape[-1])), value=float(logmel.min()))[..., :frames]


def mel_to_wave(logmel: torch.Tensor, n_samples: int, spec: MelSpec, vocoder: nn.Module | None,
                vocoder_label: str = "learned mel vocoder") -> tuple[np.ndarray, str]:
    """Normalized log-mel [1, n_mels, frames] -> (float32 waveform [1, n_samples], vocoder label to record)."""
    if vocoder is not None:
        wave, label = vocoder(logmel)[:, :n_samples], vocoder_label
    else:
        wave, label = griffin_lim(spec, logmel, n_samples), GRIFFIN_LIM_LABEL
    return F.pad(wave, (0, n_samples - wave.shape[-1])).numpy().astype(np.float32), label


def grid_positions(mels: int, frames: int, dim: int) -> torch.Tensor:
    """Sinusoidal positions of a flattened (mel, frame) grid -> [mels * frames, dim]: half the channels
    encode the mel row, half the frame."""
    half = dim // 2
    return torch.cat([sinusoid(torch.arange(mels)[:, None].expand(mels, frames), half),
                      sinusoid(torch.arange(frames)[None, :].expand(mels, frames), half)], -1).reshape(-1, dim)


def _upsample_factors(hop: int) -> list[int]:
    """Split the hop into small upsampling factors (largest first), e.g. 160 -> [5, 4, 4, 2]."""
    factors, rest = [], hop
    for f in (5, 4, 3, 2):
        while rest % f == 0 and rest > 1:
            factors.append(f)
            rest //= f
    if rest > 1:
        factors.append(rest)
    return sorted(factors, reverse=True)


class MelVocoder(nn.Module):
    """Normalized log-mel [B, n_mels, frames] -> waveform [B, frames * hop] (a tiny HiFi-GAN-like generator)."""

    def __init__(self, n_mels: int, hop: int, width: int = 64):
        super().__init__()
        self.hop = hop
        self.pre = nn.Conv1d(n_mels, width, 7, padding=3)
        ups, ch = [], width
        for f in _upsample_factors(hop):
            out = max(ch // 2, 8)
            ups += [nn.LeakyReLU(0.1), nn.ConvTranspose1d(ch, out, 2 * f, stride=f, padding=f // 2 + f % 2,
                                                          output_padding=f % 2),
                    nn.LeakyReLU(0.1), nn.Conv1d(out, out, 3, padding=1)]
            ch = out
        self.ups = nn.Sequential(*ups)
        self.post = nn.Conv1d(ch, 1, 7, padding=3)

    def forward(self, logmel: torch.Tensor) -> torch.Tensor:
        x = self.post(self.ups(self.pre(logmel)))
        return torch.tanh(x[:, 0, :logmel.shape[-1] * self.hop])


def stft_loss(pred: torch.Tensor, target: torch.Tensor, ffts: tuple[int, ...] = (256, 512, 1024)) -> torch.Tensor:
    """Multi-resolution STFT loss (spectral convergence + log magnitude), as in Parallel WaveGAN."""
    total = pred.new_zeros(())
    for n_fft in ffts:
        window = torch.hann_window(n_fft, device=pred.device)
        p = torch.stft(pred, n_fft, n_fft // 4, window=window, return_complex=True).abs().clamp_min(1e-7)
        t = torch.stft(target, n_fft, n_fft // 4, window=window, return_complex=True).abs().clamp_min(1e-7)
        total = total + torch.linalg.norm(t - p) / torch.linalg.norm(t).clamp_min(1e-7)
        total = total + F.l1_loss(p.log(), t.log())
    return total / len(ffts)
