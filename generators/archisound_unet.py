"""The ArchiSound network: learned waveform transform + 1D U-Net + text encoder (thesis ch. 3-4).

- Transform: the U-Net does not run on raw samples. "patch" folds p consecutive samples into channels
  ([C, N] -> [C*p, N/p], audio-diffusion-pytorch's patching); "learned" is a strided Conv1d with kernel
  2p and stride p initialised to a Hann-windowed Fourier basis (an STFT-like analysis) and its
  transposed convolution as synthesis, both trained end to end.
- U-Net (generators.unet1d): residual conv blocks modulated (FiLM) by the diffusion time and the pooled
  text embedding, per-level down/upsampling factors with skip connections, self-attention at the deep
  levels and cross-attention to the text tokens at every level (thesis section 5.3.2).
- Extra conditioning for the upsampler and vocoder: channels concatenated to the waveform before the
  transform (`wave_cond_channels`, the interpolated low-rate audio) or to the transformed frames
  (`frame_cond_channels`, a mel spectrogram at the transform's frame rate).
- Text encoders are pluggable (generators.text_encoders); the default "hashed-words" is trained with the
  model: nothing to download.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from bench.core.errors import CheckpointError, ConfigError
from generators.text_encoders import build_text_encoder
from generators.unet1d import UNet1d, check_layout


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


# ------------------------------------------------------------------------------------------ network

class ArchisoundNet(nn.Module):
    """v-prediction network: (noisy waveform, t, text, conditioning) -> v, all at the waveform's shape."""

    def __init__(self, config: dict):
        super().__init__()
        c = config
        if "cross_attentions" not in c:
            raise CheckpointError("this ArchiSound config (or checkpoint) is from the earlier network (one text "
                                  "cross-attention at the bottleneck, before the thesis's attention layout); it "
                                  "does not load into the current one: retrain it with `bench train`")
        check_layout(c, "archisound config")
        self.channels = int(c["channels"])
        self.transform = Transform(c["transform"], self.channels + int(c.get("wave_cond_channels", 0)),
                                   self.channels, int(c["patch"]), int(c["transform_width"]))
        self.frame_cond = int(c.get("frame_cond_channels", 0))
        self.text = build_text_encoder(c) if c.get("text_conditioning") else None
        # learned: the synthesis transform maps the U-Net's features back; patch: the U-Net predicts the
        # folded waveform channels of the noisy input only
        out = self.transform.features if c["transform"] == "learned" else self.channels * int(c["patch"])
        self.unet = UNet1d(self.transform.features + self.frame_cond, out, c,
                           int(c["text_dim"]) if self.text is not None else None)
        self.multiple = int(c["patch"]) * self.unet.multiple

    def encode_text(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(tokens [B, L, text_dim], pad [B, L] True = padding)."""
        return self.text(captions)

    def forward(self, x: torch.Tensor, t: torch.Tensor, text: tuple | None = None,
                wave_cond: torch.Tensor | None = None, frame_cond: torch.Tensor | None = None) -> torch.Tensor:
        n = x.shape[-1]
        if n % self.multiple:
            raise ValueError(f"waveform length {n} must be a multiple of {self.multiple}")
        inp = torch.cat([x, wave_cond], 1) if wave_cond is not None else x
        h = self.transform.encode(inp)
        if self.frame_cond:
            h = torch.cat([h, frame_cond], 1)
        return self.transform.decode(self.unet(h, t, text if self.text is not None else None))
