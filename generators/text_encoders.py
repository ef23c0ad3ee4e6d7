"""Pluggable text encoders for the trainable reference generators (ArchiSound, DiscoDiff, Diffsound,
SRC-gAudio): the one registry and the one built-in encoder they share.

A text encoder maps captions to a token sequence [B, L, text_dim] plus a padding mask [B, L] (True = pad).
Generators that cross-attend use the sequence; those that condition on one vector (FiLM, an added
embedding) take `mean_pool` of it. Register an encoder with `@register_text_encoder(name)` on a
`(config) -> nn.Module` builder; a generator's config names it in "text_encoder" and sets "text_dim".
The papers use frozen CLIP (Diffsound), Flan-T5 (DiscoDiff, SRC-gAudio) or T5 (ArchiSound), which need
downloaded weights; the built-in encoder downloads nothing:

- `hashed-words`: lowercase words hashed (sha256, stable across runs and machines) into `text_vocab`
  buckets, a learned embedding plus sinusoidal positions and one transformer layer, trained with the
  generator. The empty caption is one learned token (classifier-free guidance's null text).
"""
from __future__ import annotations

import hashlib
import math
import re

import torch
from torch import nn

from bench.core.errors import ConfigError
from bench.core.registry import Registry

TEXT_ENCODERS = Registry("text encoder")
PAD, EMPTY = 0, 1  # bucket 0: padding; bucket 1: the empty caption (classifier-free guidance's null text)


def register_text_encoder(name: str):
    return TEXT_ENCODERS.register(name)


def build_text_encoder(config: dict) -> nn.Module:
    missing = [k for k in ("text_encoder", "text_dim") if k not in config]
    if missing:
        raise ConfigError(f"generator config lacks {missing}; known text encoders: {', '.join(sorted(TEXT_ENCODERS))}")
    return TEXT_ENCODERS.lookup(config["text_encoder"])(config)


def mean_pool(tokens: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
    """Mean of the non-padding tokens: ([B, L, D], [B, L] True = pad) -> [B, D]."""
    keep = (~pad).unsqueeze(-1).to(tokens.dtype)
    return (tokens * keep).sum(1) / keep.sum(1).clamp_min(1)


def sinusoid(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) positions [...] -> [..., dim]."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    angles = positions.float()[..., None] * freqs
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class HashedWordEncoder(nn.Module):
    def __init__(self, dim: int, vocab: int, max_words: int):
        super().__init__()
        if vocab < 3 or max_words < 1:
            raise ConfigError(f"text_vocab must be >= 3 and text_max_words >= 1, got {vocab} and {max_words}")
        self.dim, self.vocab, self.max_words = dim, vocab, max_words
        self.embed = nn.Embedding(vocab, dim)
        self.layer = nn.TransformerEncoderLayer(dim, max(1, dim // 32), 2 * dim, dropout=0.0, batch_first=True)

    def ids(self, captions: list[str]) -> torch.Tensor:
        rows = []
        for caption in captions:
            words = re.findall(r"[a-z0-9']+", caption.lower())[:self.max_words]
            ids = [2 + int.from_bytes(hashlib.sha256(w.encode()).digest()[:4], "little") % (self.vocab - 2)
                   for w in words] or [EMPTY]
            rows.append(ids + [PAD] * (self.max_words - len(ids)))
        return torch.tensor(rows, dtype=torch.long)

    def forward(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        ids = self.ids(captions).to(self.embed.weight.device)
        pad = ids == PAD
        x = self.embed(ids) + sinusoid(torch.arange(ids.shape[1]), self.dim).to(ids.device)
        return self.layer(x, src_key_padding_mask=pad), pad


@register_text_encoder("hashed-words")
def _hashed_words(config: dict) -> nn.Module:
    return HashedWordEncoder(config["text_dim"], config.get("text_vocab", 1024), config.get("text_max_words", 16))
