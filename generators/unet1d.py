"""The 1D U-Net with text attention shared by ArchiSound (on transformed waveforms) and DiscoDiff (on DAC
latents).

Levels: level i first downsamples by factors[i] (1: none), then runs items[i] residual conv blocks; after
each block, where the level asks for it, a transformer block: self-attention (attentions[i]), cross-
attention to the text tokens (cross_attentions[i]) and a feed-forward layer. A middle block (resblock,
attention as at the deepest level, resblock), then the mirrored up path: each block takes its down
twin's output as a skip (concatenated), and the level ends by upsampling by factors[i]. Every resblock is modulated (FiLM) by the
diffusion time embedding plus the mean-pooled text embedding and, with `film_channels`, per frame by a
conditioning sequence (the diffusion autoencoder's latent, repeated to each level's rate). Written from the thesis's description
(Schneider 2023, sections 5.2-5.3: "cross attention blocks at different resolutions", attention only
where the sequence is short) and DiscoDiff's (U-Net with text cross-attention).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from bench.core.errors import ConfigError
from generators.text_encoders import mean_pool, sinusoid

LAYOUT_KEYS = ("widths", "factors", "items", "attentions", "cross_attentions", "heads", "head_features",
               "ff_multiplier", "emb_dim")


def _norm(channels: int) -> nn.GroupNorm:
    groups = min(8, channels)
    return nn.GroupNorm(groups if channels % groups == 0 else math.gcd(groups, channels), channels)


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, emb_dim: int, film_channels: int = 0):
        super().__init__()
        self.norm1, self.conv1 = _norm(c_in), nn.Conv1d(c_in, c_out, 3, padding=1)
        self.film = nn.Linear(emb_dim, 2 * c_out)
        self.cond_film = nn.Conv1d(film_channels, 2 * c_out, 1) if film_channels else None
        self.norm2, self.conv2 = _norm(c_out), nn.Conv1d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor, film: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        mod = self.film(emb)[..., None]
        if self.cond_film is not None:
            mod = mod + self.cond_film(F.interpolate(film, size=h.shape[-1], mode="nearest"))
        scale, shift = mod.chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        return self.skip(x) + self.conv2(F.silu(h))


class Attention(nn.Module):
    """Multi-head attention of [B, N, C] queries over [B, M, context_dim] keys (itself when context is None)."""

    def __init__(self, channels: int, heads: int, head_features: int, context_dim: int | None = None):
        super().__init__()
        inner = heads * head_features
        self.heads = heads
        self.to_q = nn.Linear(channels, inner, bias=False)
        self.to_kv = nn.Linear(context_dim or channels, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, channels)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                pad: torch.Tensor | None = None) -> torch.Tensor:
        b, n, _ = x.shape
        k, v = self.to_kv(x if context is None else context).chunk(2, dim=-1)
        q = self.to_q(x)
        q, k, v = (t.reshape(b, t.shape[1], self.heads, -1).transpose(1, 2) for t in (q, k, v))
        mask = None if pad is None else ~pad[:, None, None, :]  # True = attend
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.to_out(out.transpose(1, 2).reshape(b, n, -1))


class TransformerBlock(nn.Module):
    """Pre-norm self-attention (optional), cross-attention to the text (optional), feed-forward; residual."""

    def __init__(self, channels: int, heads: int, head_features: int, ff_multiplier: int, self_attention: bool,
                 text_dim: int | None):
        super().__init__()
        self.self_norm = nn.LayerNorm(channels) if self_attention else None
        self.self_attn = Attention(channels, heads, head_features) if self_attention else None
        self.cross_norm = nn.LayerNorm(channels) if text_dim else None
        self.cross_attn = Attention(channels, heads, head_features, text_dim) if text_dim else None
        self.ff = nn.Sequential(nn.LayerNorm(channels), nn.Linear(channels, ff_multiplier * channels), nn.GELU(),
                                nn.Linear(ff_multiplier * channels, channels))

    def forward(self, x: torch.Tensor, tokens: torch.Tensor | None, pad: torch.Tensor | None) -> torch.Tensor:
        h = x.transpose(1, 2)
        if self.self_attn is not None:
            h = h + self.self_attn(self.self_norm(h))
        if self.cross_attn is not None:
            h = h + self.cross_attn(self.cross_norm(h), tokens, pad)
        return (h + self.ff(h)).transpose(1, 2)


class Stage(nn.Module):
    """One resblock and, where the level asks for it, its transformer block."""

    def __init__(self, c_in: int, c_out: int, config: dict, self_attention: bool, text_dim: int | None,
                 film_channels: int = 0):
        super().__init__()
        self.res = ResBlock(c_in, c_out, int(config["emb_dim"]), film_channels)
        self.attn = (TransformerBlock(c_out, int(config["heads"]), int(config["head_features"]),
                                      int(config["ff_multiplier"]), self_attention, text_dim)
                     if self_attention or text_dim else None)

    def forward(self, x, emb, tokens, pad, film=None):
        h = self.res(x, emb, film)
        return h if self.attn is None else self.attn(h, tokens, pad)


def check_layout(config: dict, owner: str) -> None:
    missing = [k for k in LAYOUT_KEYS if k not in config]
    if missing:
        raise ConfigError(f"{owner}: config lacks U-Net keys {missing}")
    n = len(config["widths"])
    for key in ("factors", "items", "attentions", "cross_attentions"):
        if len(config[key]) != n:
            raise ConfigError(f"{owner}: config {key} has {len(config[key])} entries, widths has {n}")
    if any(int(w) < 1 for w in config["widths"]) or any(int(f) < 1 for f in config["factors"]) or any(
            int(i) < 1 for i in config["items"]):
        raise ConfigError(f"{owner}: widths, factors and items must be positive integers")
    if any(int(f) > 1 and int(f) % 2 for f in config["factors"]):
        raise ConfigError(f"{owner}: factors must be 1 or even, got {config['factors']}")


class UNet1d(nn.Module):
    """(x [B, in_features, L], t [B], text tokens/pad or None) -> [B, out_features, L]; L a multiple of
    `multiple` (the product of the factors). With `inject_channels`, a conditioning tensor at level
    `inject_level`'s resolution is concatenated to the features there, after that level's downsampling
    (the diffusion autoencoder's latent, "injected directly in the U-Net at the right resolution"). With
    `film_channels`, `film` [B, film_channels, L'] (any L' that divides every level's length) adds a
    per-frame scale and shift, through a 1x1 conv, to every resblock's time modulation."""

    def __init__(self, in_features: int, out_features: int, config: dict, text_dim: int | None,
                 inject_channels: int = 0, inject_level: int | None = None, film_channels: int = 0):
        super().__init__()
        check_layout(config, "U-Net")
        widths, factors = [int(w) for w in config["widths"]], [int(f) for f in config["factors"]]
        items = [int(i) for i in config["items"]]
        self.emb_dim = int(config["emb_dim"])
        self.factors = factors
        self.inject_level = inject_level if inject_channels else None
        self.multiple = 1
        for f in factors:
            self.multiple *= f
        self.time_mlp = nn.Sequential(nn.Linear(self.emb_dim, self.emb_dim), nn.SiLU(),
                                      nn.Linear(self.emb_dim, self.emb_dim))
        self.text_pool = nn.Linear(text_dim, self.emb_dim) if text_dim else None
        self.stem = nn.Conv1d(in_features, widths[0], 3, padding=1)

        def cross(i):
            return text_dim if text_dim and config["cross_attentions"][i] else None

        self.downsamples, self.down, self.upsamples, self.up = (nn.ModuleList() for _ in range(4))
        below = widths[0]
        for i, (w, f) in enumerate(zip(widths, factors)):
            self.downsamples.append(nn.Conv1d(below, below, 2 * f, stride=f, padding=f // 2) if f > 1
                                    else nn.Identity())
            first = below + (inject_channels if i == self.inject_level else 0)
            self.down.append(nn.ModuleList(Stage(first if j == 0 else w, w, config, bool(config["attentions"][i]),
                                                 cross(i), film_channels) for j in range(items[i])))
            below = w
        # the middle block attends like the deepest level (self-attention only where the levels have it)
        self.mid = nn.ModuleList([Stage(below, below, config, bool(config["attentions"][-1]), text_dim,
                                        film_channels), Stage(below, below, config, False, None, film_channels)])
        for i in reversed(range(len(widths))):
            w = widths[i]
            self.up.append(nn.ModuleList(Stage((below if j == 0 else w) + w, w, config,
                                               bool(config["attentions"][i]), cross(i), film_channels)
                                         for j in range(items[i])))
            below = w
            self.upsamples.append(nn.Conv1d(w, widths[i - 1] if i else w, 3, padding=1) if factors[i] > 1
                                  else nn.Identity())
            below = widths[i - 1] if i and factors[i] > 1 else w
        self.head = nn.Sequential(_norm(below), nn.SiLU(), nn.Conv1d(below, out_features, 3, padding=1))

    def forward(self, x: torch.Tensor, t: torch.Tensor, text: tuple | None = None,
                inject: torch.Tensor | None = None, film: torch.Tensor | None = None) -> torch.Tensor:
        if x.shape[-1] % self.multiple:
            raise ValueError(f"length {x.shape[-1]} must be a multiple of {self.multiple}")
        emb = self.time_mlp(sinusoid(t * 1000.0, self.emb_dim))
        tokens = pad = None
        if self.text_pool is not None:
            tokens, pad = text
            emb = emb + self.text_pool(mean_pool(tokens, pad))
        h = self.stem(x)
        skips = []
        for level, (downsample, stages) in enumerate(zip(self.downsamples, self.down)):
            h = downsample(h)
            if level == self.inject_level:
                h = torch.cat([h, inject], 1)
            for stage in stages:
                h = stage(h, emb, tokens, pad, film)
                skips.append(h)
        for stage in self.mid:
            h = stage(h, emb, tokens, pad, film)
        for level, (stages, upsample) in enumerate(zip(self.up, self.upsamples)):
            for stage in stages:
                h = stage(torch.cat([h, skips.pop()], 1), emb, tokens, pad, film)
            factor = self.factors[len(self.factors) - 1 - level]
            if factor > 1:
                h = upsample(F.interpolate(h, scale_factor=factor, mode="nearest"))
        return self.head(h)
