"""SRC-gAudio's latent denoiser at paper fidelity: a Stable-Diffusion-style 2D U-Net (SRC-gAudio section III-B,
"the U-Net backbone of StableDiffusion": four encoder blocks of 320/640/640/1280 channels, a middle block,
four mirrored decoder blocks; cross-attention in the last three encoder and the first three decoder
blocks with 5/10/10/20 heads, i.e. 64 features per head).

Conditioning as the paper's section II: the time step and the sampling rate are each mapped to one
embedding and concatenated with the text tokens; the U-Net cross-attends to that sequence. The residual
blocks also take the time embedding, as Stable Diffusion's do. Written from the papers' descriptions
(block structure as Rombach et al.'s LDM U-Net: two residual blocks per encoder level and three per
decoder level with skip connections, spatial transformers of self-attention, cross-attention and a GEGLU
feed-forward).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bench.core.errors import ConfigError
from generators.text_encoders import sinusoid
from generators.unet1d import Attention

UNET_KEYS = ("unet_channels", "cross_attention_levels", "head_features", "layers_per_block", "context_dim")


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(32, channels), channels, eps=1e-6)


class ResBlock2d(nn.Module):
    def __init__(self, c_in: int, c_out: int, emb_dim: int):
        super().__init__()
        self.norm1, self.conv1 = _norm(c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2, self.conv2 = _norm(c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x))) + self.emb(F.silu(emb))[:, :, None, None]
        return self.skip(x) + self.conv2(F.silu(self.norm2(h)))


class GEGLU(nn.Module):
    def __init__(self, dim: int, inner: int):
        super().__init__()
        self.proj = nn.Linear(dim, 2 * inner)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, gate = self.proj(x).chunk(2, dim=-1)
        return h * F.gelu(gate)


class SpatialTransformer(nn.Module):
    """[B, C, H, W] -> the same: self-attention over the H*W positions, cross-attention to the condition
    sequence, GEGLU feed-forward (4x), each pre-norm and residual; 1x1 projections in and out."""

    def __init__(self, channels: int, heads: int, head_features: int, context_dim: int):
        super().__init__()
        self.norm = _norm(channels)
        self.proj_in = nn.Conv2d(channels, channels, 1)
        self.norm1, self.self_attn = nn.LayerNorm(channels), Attention(channels, heads, head_features)
        self.norm2 = nn.LayerNorm(channels)
        self.cross_attn = Attention(channels, heads, head_features, context_dim)
        self.norm3 = nn.LayerNorm(channels)
        self.ff = nn.Sequential(GEGLU(channels, 4 * channels), nn.Linear(4 * channels, channels))
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor, context: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        t = self.proj_in(self.norm(x)).flatten(2).transpose(1, 2)
        t = t + self.self_attn(self.norm1(t))
        t = t + self.cross_attn(self.norm2(t), context, pad)
        t = t + self.ff(self.norm3(t))
        return x + self.proj_out(t.transpose(1, 2).reshape(b, c, h, w))


class Level(nn.Module):
    """Residual blocks, each followed by a spatial transformer when the level cross-attends."""

    def __init__(self, inputs: list[int], c_out: int, emb_dim: int, attention: bool, config: dict):
        super().__init__()
        self.res = nn.ModuleList(ResBlock2d(c, c_out, emb_dim) for c in inputs)
        heads = c_out // int(config["head_features"])
        self.attn = nn.ModuleList(SpatialTransformer(c_out, heads, int(config["head_features"]),
                                                     int(config["context_dim"])) for _ in inputs) if attention else None


def check_unet_config(config: dict) -> None:
    missing = [k for k in UNET_KEYS if k not in config]
    if missing:
        raise ConfigError(f"srcgaudio config: the U-Net denoiser needs keys {missing}")
    if len(config["cross_attention_levels"]) != len(config["unet_channels"]):
        raise ConfigError("srcgaudio config: cross_attention_levels needs one entry per unet_channels entry")
    if any(int(c) % int(config["head_features"]) for c in config["unet_channels"]):
        raise ConfigError(f"srcgaudio config: unet_channels {config['unet_channels']} must be multiples of head_features")


class SDUNet(nn.Module):
    """epsilon(z_t [B, C, F, T], t [B], rate id [B], text [B, L, context_dim], pad [B, L]) -> [B, C, F, T].
    F and T are zero-padded inside to a multiple of 2^(levels - 1) and cropped back."""

    def __init__(self, latent_channels: int, n_rates: int, config: dict):
        super().__init__()
        check_unet_config(config)
        chans, levels = [int(c) for c in config["unet_channels"]], [bool(a) for a in config["cross_attention_levels"]]
        per, ctx = int(config["layers_per_block"]), int(config["context_dim"])
        self.base, emb_dim = chans[0], 4 * chans[0]
        self.time = nn.Sequential(nn.Linear(chans[0], emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.time_token = nn.Linear(emb_dim, ctx)  # the time step as one condition token
        self.rate = nn.Embedding(n_rates, ctx)  # the sampling rate as one condition token
        self.conv_in = nn.Conv2d(latent_channels, chans[0], 3, padding=1)
        self.down, self.downsamples = nn.ModuleList(), nn.ModuleList()
        skips, c_prev = [chans[0]], chans[0]
        for i, (c, attn) in enumerate(zip(chans, levels)):
            self.down.append(Level([c_prev] + [c] * (per - 1), c, emb_dim, attn, config))
            skips += [c] * per
            c_prev = c
            last = i == len(chans) - 1
            self.downsamples.append(nn.Identity() if last else nn.Conv2d(c, c, 3, stride=2, padding=1))
            if not last:
                skips.append(c)
        heads = chans[-1] // int(config["head_features"])
        self.mid_res1 = ResBlock2d(chans[-1], chans[-1], emb_dim)
        self.mid_attn = SpatialTransformer(chans[-1], heads, int(config["head_features"]), ctx)
        self.mid_res2 = ResBlock2d(chans[-1], chans[-1], emb_dim)
        self.up, self.upsamples = nn.ModuleList(), nn.ModuleList()
        for i in reversed(range(len(chans))):
            c = chans[i]
            inputs = []
            for _ in range(per + 1):
                inputs.append(c_prev + skips.pop())
                c_prev = c
            self.up.append(Level(inputs, c, emb_dim, levels[i], config))
            self.upsamples.append(nn.Conv2d(c, c, 3, padding=1) if i else nn.Identity())
        self.out = nn.Sequential(_norm(chans[0]), nn.SiLU(), nn.Conv2d(chans[0], latent_channels, 3, padding=1))
        self.multiple = 2 ** (len(chans) - 1)

    def _level(self, level: Level, h, emb, context, pad, skips=None, out=None):
        for j, res in enumerate(level.res):
            if skips is not None:
                h = torch.cat([h, skips.pop()], 1)
            h = res(h, emb)
            if level.attn is not None:
                h = level.attn[j](h, context, pad)
            if out is not None:
                out.append(h)
        return h

    def forward(self, z: torch.Tensor, t: torch.Tensor, rate_id: torch.Tensor, text: torch.Tensor,
                text_pad: torch.Tensor) -> torch.Tensor:
        b, _, f, n = z.shape
        m = self.multiple
        x = F.pad(z, (0, -n % m, 0, -f % m))
        emb = self.time(sinusoid(t, self.base))
        # the paper's condition: time and rate embeddings concatenated with the text embedding
        context = torch.cat([text, self.time_token(emb)[:, None], self.rate(rate_id)[:, None]], dim=1)
        pad = torch.cat([text_pad, torch.zeros(b, 2, dtype=torch.bool, device=text_pad.device)], dim=1)
        h = self.conv_in(x)
        skips = [h]
        for level, downsample in zip(self.down, self.downsamples):
            h = self._level(level, h, emb, context, pad, out=skips)
            if not isinstance(downsample, nn.Identity):
                h = downsample(h)
                skips.append(h)
        h = self.mid_res2(self.mid_attn(self.mid_res1(h, emb), context, pad), emb)
        for level, upsample in zip(self.up, self.upsamples):
            h = self._level(level, h, emb, context, pad, skips=skips)
            if not isinstance(upsample, nn.Identity):
                h = upsample(F.interpolate(h, scale_factor=2, mode="nearest"))
        return self.out(h)[:, :, :f, :n]
