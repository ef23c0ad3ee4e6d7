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
- `clip-text`: CLIP's text transformer under CLIP's parameter names (Diffsound's paper config; its weights
  come with the authors' checkpoint), tokenized with CLIP's BPE from the local Hugging Face cache.
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


class ClipResBlock(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_1, self.ln_2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.mlp = nn.Sequential()
        self.mlp.add_module("c_fc", nn.Linear(width, 4 * width))
        self.mlp.add_module("gelu", QuickGELU())
        self.mlp.add_module("c_proj", nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=mask)[0]
        return x + self.mlp(self.ln_2(x))


class QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class ClipTextTower(nn.Module):
    """CLIP's text transformer (causal self-attention, QuickGELU), with CLIP's parameter names
    (token_embedding, positional_embedding, transformer.resblocks.N, ln_final, text_projection), returning
    every position's L2-normalised feature as Diffsound's CLIPTextEmbedding does (no padding mask: the
    authors attend to all `context` positions). Captions are tokenized with CLIP's BPE (transformers'
    CLIPTokenizer for openai/clip-vit-base-patch32 from the local Hugging Face cache), start and end
    tokens added, padded with 0 to `context`."""

    def __init__(self, vocab: int, context: int, width: int, layers: int, heads: int):
        super().__init__()
        self.context = context
        self.token_embedding = nn.Embedding(vocab, width)
        self.positional_embedding = nn.Parameter(torch.empty(context, width))
        nn.init.normal_(self.positional_embedding, std=0.01)
        self.transformer = nn.Module()
        self.transformer.resblocks = nn.Sequential(*(ClipResBlock(width, heads) for _ in range(layers)))
        self.ln_final = nn.LayerNorm(width)
        self.text_projection = nn.Parameter(torch.empty(width, width))  # CLIP's pooled head: unused per token
        nn.init.normal_(self.text_projection, std=width ** -0.5)
        self._tokenizer = None

    def ids(self, captions: list[str]) -> torch.Tensor:
        if self._tokenizer is None:
            from bench.core.extras import require

            require("transformers", "generators", "the clip-text encoder's tokenizer")
            from transformers import CLIPTokenizer

            try:
                self._tokenizer = CLIPTokenizer.from_pretrained("openai/clip-vit-base-patch32", local_files_only=True)
            except OSError as exc:
                raise ConfigError("text encoder clip-text needs CLIP's tokenizer in the local Hugging Face cache: "
                                  "`hf download openai/clip-vit-base-patch32 vocab.json merges.txt "
                                  "tokenizer_config.json special_tokens_map.json`") from exc
        rows = []
        for caption in captions:
            ids = self._tokenizer(caption)["input_ids"][:self.context]
            rows.append(ids + [0] * (self.context - len(ids)))
        return torch.tensor(rows, dtype=torch.long)

    def encode_ids(self, ids: torch.Tensor) -> torch.Tensor:
        n = ids.shape[1]
        causal = torch.full((n, n), float("-inf")).triu(1)
        x = (self.token_embedding(ids) + self.positional_embedding[:n]).transpose(0, 1)  # [L, B, D]
        for block in self.transformer.resblocks:
            x = block(x, causal)
        x = self.ln_final(x.transpose(0, 1))
        return x / x.norm(dim=-1, keepdim=True)

    def forward(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.encode_ids(self.ids(captions))
        return x, torch.zeros(x.shape[:2], dtype=torch.bool)


@register_text_encoder("clip-text")
def _clip_text(config: dict) -> nn.Module:
    return ClipTextTower(config.get("text_vocab", 49408), config.get("text_max_words", 77), config["text_dim"],
                         config.get("text_layers", 12), config.get("text_heads", 8))
