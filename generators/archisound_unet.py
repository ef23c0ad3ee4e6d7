"""The ArchiSound network: learned waveform transform + 1D U-Net + text encoder (thesis ch. 3-4).

- Transform: the U-Net does not run on raw samples. "patch" folds p consecutive samples into channels
  ([C, N] -> [C*p, N/p], audio-diffusion-pytorch's patching); "learned" is a strided Conv1d with kernel
  2p and stride p initialised to a Hann-windowed Fourier basis (an STFT-like analysis) and its
  transposed convolution as synthesis, both trained end to end.
- U-Net: residual conv blocks modulated (FiLM) by the diffusion time and the pooled text embedding,
  stride-2 down/upsampling with skip connections, cross-attention to the text tokens at the
  bottleneck (where it is cheapest), as Mousai's text-conditioned U-Net.
- Extra conditioning for the upsampler and vocoder: channels concatenated to the waveform before the
  transform (`wave_cond_channels`, the interpolated low-rate audio) or to the transformed frames
  (`frame_cond_channels`, a mel spectrogram at the transform's frame rate).
- Text encoders are pluggable (generators.text_encoders); the default "hashed-words" is trained with the
  model: nothing to download.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from bench.core.errors import ConfigError
from generators.text_encoders import build_text_encoder, mean_pool, sinusoid


# ------------------------------------------------------------------------------------- transforms

class Transform(nn.Module):
    def __init__(self, kind: str, in_channels: int, out_channels: int, patch: int, width: int):
        super().__init__()
        if patch < 1 or (kind == "learned" and patch % 2):
            raise ConfigError(f"patch must be >= 1 (and even for the learned transform), got {patch}")
        self.kind, self.patch = kind, patch
        if kind == "patch":
            self.features = in_channels * patch
        elif kind == "learned":
            self.features = width
            self.analysis = nn.Conv1d(in_channels, width, 2 * patch, stride=patch, padding=patch // 2, bias=False)
            self.synthesis = nn.ConvTranspose1d(width, out_channels, 2 * patch, stride=patch, padding=patch // 2,
                                                bias=False)
            with torch.no_grad():  # start from a windowed Fourier basis: an STFT with hop p, window 2p
                n = torch.arange(2 * patch, dtype=torch.float64)
                window = torch.sin(math.pi * (n + 0.5) / (2 * patch)) ** 2
                rows = []
                for k in range(width):
                    freq = (k // 2) * math.pi / patch * (patch / max(1, width // 2))
                    rows.append(window * (torch.cos(freq * n) if k % 2 == 0 else torch.sin(freq * n)))
                basis = torch.stack(rows).float() / math.sqrt(patch)
                self.analysis.weight.copy_(basis[:, None, :].repeat(1, in_channels, 1) / in_channels)
                self.synthesis.weight.copy_(basis[:, None, :].repeat(1, out_channels, 1) / math.sqrt(width))
        else:
            raise ConfigError(f"transform must be 'patch' or 'learned', got {kind!r}")
        self.out_channels = out_channels

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "patch":
            b, c, n = x.shape
            return x.reshape(b, c, n // self.patch, self.patch).permute(0, 1, 3, 2).reshape(b, c * self.patch, -1)
        return self.analysis(x)

    def decode(self, h: torch.Tensor) -> torch.Tensor:
        if self.kind == "patch":
            b, _, t = h.shape
            return h.reshape(b, self.out_channels, self.patch, t).permute(0, 1, 3, 2).reshape(b, self.out_channels, -1)
        return self.synthesis(h)


# ---------------------------------------------------------------------------------------- U-Net

def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, channels), channels)


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, emb_dim: int):
        super().__init__()
        self.norm1, self.conv1 = _norm(c_in), nn.Conv1d(c_in, c_out, 3, padding=1)
        self.film = nn.Linear(emb_dim, 2 * c_out)
        self.norm2, self.conv2 = _norm(c_out), nn.Conv1d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.film(emb)[..., None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        return self.skip(x) + self.conv2(F.silu(h))


class CrossAttention(nn.Module):
    def __init__(self, channels: int, text_dim: int, heads: int):
        super().__init__()
        self.norm = _norm(channels)
        self.attn = nn.MultiheadAttention(channels, heads, kdim=text_dim, vdim=text_dim, batch_first=True)

    def forward(self, x: torch.Tensor, tokens: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        q = self.norm(x).transpose(1, 2)
        out, _ = self.attn(q, tokens, tokens, key_padding_mask=pad, need_weights=False)
        return x + out.transpose(1, 2)


class ArchisoundNet(nn.Module):
    """v-prediction network: (noisy waveform, t, text, conditioning) -> v, all at the waveform's shape."""

    def __init__(self, config: dict):
        super().__init__()
        c = config
        widths = list(c["widths"])
        if not widths or any(w < 1 for w in widths):
            raise ConfigError(f"config widths must be a non-empty list of positive integers, got {widths}")
        self.channels, self.emb_dim = int(c["channels"]), int(c["emb_dim"])
        self.transform = Transform(c["transform"], self.channels + int(c.get("wave_cond_channels", 0)),
                                   self.channels, int(c["patch"]), int(c["transform_width"]))
        self.frame_cond = int(c.get("frame_cond_channels", 0))
        self.text = build_text_encoder(c) if c.get("text_conditioning") else None
        self.time_mlp = nn.Sequential(nn.Linear(self.emb_dim, self.emb_dim), nn.SiLU(),
                                      nn.Linear(self.emb_dim, self.emb_dim))
        self.text_pool = nn.Linear(int(c["text_dim"]), self.emb_dim) if self.text is not None else None
        self.stem = nn.Conv1d(self.transform.features + self.frame_cond, widths[0], 3, padding=1)
        self.down_blocks, self.downsamples = nn.ModuleList(), nn.ModuleList()
        for i, w in enumerate(widths):
            self.down_blocks.append(ResBlock(widths[max(0, i - 1)] if i else widths[0], w, self.emb_dim))
            if i < len(widths) - 1:
                self.downsamples.append(nn.Conv1d(w, w, 4, stride=2, padding=1))
        self.mid1 = ResBlock(widths[-1], widths[-1], self.emb_dim)
        self.mid_attn = CrossAttention(widths[-1], int(c["text_dim"]), int(c["heads"])) if self.text is not None else None
        self.mid2 = ResBlock(widths[-1], widths[-1], self.emb_dim)
        self.up_blocks, self.upsamples = nn.ModuleList(), nn.ModuleList()
        for i in reversed(range(len(widths))):
            below = widths[-1] if i == len(widths) - 1 else widths[i + 1]
            self.up_blocks.append(ResBlock(below + widths[i], widths[i], self.emb_dim))
            if i > 0:
                self.upsamples.append(nn.Conv1d(widths[i], widths[i], 3, padding=1))
        self.head = nn.Sequential(_norm(widths[0]), nn.SiLU(), nn.Conv1d(widths[0], self.transform.features, 3,
                                                                         padding=1))
        if c["transform"] == "learned":
            self.head_out = nn.Identity()
        else:  # patch: the head already predicts the folded waveform channels of the noisy input only
            self.head_out = nn.Conv1d(self.transform.features, self.channels * int(c["patch"]), 1)
        self.multiple = int(c["patch"]) * 2 ** (len(widths) - 1)

    def encode_text(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(tokens [B, L, text_dim], pad [B, L] True = padding)."""
        return self.text(captions)

    def forward(self, x: torch.Tensor, t: torch.Tensor, text: tuple | None = None,
                wave_cond: torch.Tensor | None = None, frame_cond: torch.Tensor | None = None) -> torch.Tensor:
        n = x.shape[-1]
        if n % self.multiple:
            raise ValueError(f"waveform length {n} must be a multiple of {self.multiple}")
        emb = self.time_mlp(sinusoid(t * 1000.0, self.emb_dim))
        tokens = pad = None
        if self.text is not None:
            tokens, pad = text
            emb = emb + self.text_pool(mean_pool(tokens, pad))
        inp = torch.cat([x, wave_cond], 1) if wave_cond is not None else x
        h = self.transform.encode(inp)
        if self.frame_cond:
            h = torch.cat([h, frame_cond], 1)
        h = self.stem(h)
        skips = []
        for i, block in enumerate(self.down_blocks):
            h = block(h, emb)
            skips.append(h)
            if i < len(self.downsamples):
                h = self.downsamples[i](h)
        h = self.mid1(h, emb)
        if self.mid_attn is not None:
            h = self.mid_attn(h, tokens, pad)
        h = self.mid2(h, emb)
        for j, block in enumerate(self.up_blocks):
            h = block(torch.cat([h, skips.pop()], 1), emb)
            if j < len(self.upsamples):
                h = self.upsamples[j](F.interpolate(h, scale_factor=2, mode="nearest"))
        return self.transform.decode(self.head_out(self.head(h)))
