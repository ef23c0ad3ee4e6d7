"""The captioner interface: a Backbone whose output is the token ids of a caption, plus `decode`.

Captions go through the same machinery as embeddings (batched, cached per clip by audio hash +
backbone card + protocol, resumable): a captioner's `embed(batch)` returns {"tokens": float32
[N, TOKEN_SLOTS]} holding each clip's generated token ids (exact in float32: ids < 2**24), padded with
-1 after the end, and `backbone.decode(rows)` turns those rows into caption strings. The decoding
settings (greedy or beam, lengths, prompt) are fixed per registered captioner and recorded in its
provenance under "decoding".

Captioners have no `untrained` mode: random weights produce no vocabulary-shaped output worth a
number. Use a published checkpoint (metrics.backbones.captioner_whisper) or one trained here
(`bench train-evaluator --task captioning`, metrics.backbones.captioner_small).
"""
from __future__ import annotations

import numpy as np

from bench.core.errors import ConfigError

OUTPUT = "tokens"
TOKEN_SLOTS = 128  # most generated tokens kept per caption
PAD = -1


def pack(sequences: list[list[int]]) -> np.ndarray:
    """Token id lists -> float32 [N, TOKEN_SLOTS] padded with -1 (longer sequences are cut)."""
    out = np.full((len(sequences), TOKEN_SLOTS), PAD, np.float32)
    for i, seq in enumerate(sequences):
        seq = list(seq)[:TOKEN_SLOTS]
        out[i, :len(seq)] = seq
    return out


def unpack(rows: np.ndarray) -> list[list[int]]:
    """float32 [N, TOKEN_SLOTS] -> token id lists, up to the first padding slot."""
    out = []
    for row in np.asarray(rows):
        ends = np.flatnonzero(row < 0)
        out.append([int(v) for v in row[:ends[0] if len(ends) else len(row)]])
    return out


def no_untrained(backbone: str, how: str) -> ConfigError:
    return ConfigError(f"captioner {backbone!r} has no untrained mode (random weights say nothing about the "
                       f"audio); {how}")


def captions(backbone, token_rows: list[np.ndarray]) -> list[str]:
    """Caption text of each clip from its cached "tokens" output ([1, TOKEN_SLOTS] per clip)."""
    if backbone.decode is None:
        raise ConfigError(f"backbone {backbone.id!r} is not a captioner")
    bad = [i for i, r in enumerate(token_rows) if len(r) != 1]
    if bad:
        raise ConfigError(f"captioner {backbone.id!r}: clip {bad[0]} has {len(token_rows[bad[0]])} token rows, "
                          "expected exactly 1")
    return backbone.decode(np.concatenate(token_rows)) if token_rows else []
