"""A roberta-base tokenizer of the real size and special tokens but only a few merges, written in
Hugging Face cache layout. For tests and for timing CLAP's audio side where the real tokenizer files are
not in the cache: token ids differ from roberta-base's, so text embeddings made with it mean nothing."""
from __future__ import annotations

import json
from pathlib import Path

ROBERTA_VOCAB_SIZE = 50265
_REVISION = "0" * 40


def _byte_chars() -> list[str]:
    # GPT-2 / RoBERTa byte-level alphabet: printable bytes map to themselves, the rest to U+0100 onwards.
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    rest = [b for b in range(256) if b not in keep]
    return [chr(b) for b in keep] + [chr(256 + i) for i in range(len(rest))]


def write_roberta_tokenizer(hub_cache: Path, vocab_size: int = ROBERTA_VOCAB_SIZE) -> None:
    repo = Path(hub_cache) / "models--roberta-base"
    snapshot = repo / "snapshots" / _REVISION
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(_REVISION)
    merges = [("Ġ", "d"), ("Ġd", "o"), ("Ġdo", "g"), ("Ġ", "r"), ("a", "i"), ("Ġr", "ai"), ("Ġrai", "n")]
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for token in _byte_chars() + [a + b for a, b in merges]:
        vocab[token] = len(vocab)
    while len(vocab) < vocab_size - 1:
        vocab[f"<unused{len(vocab)}>"] = len(vocab)
    vocab["<mask>"] = len(vocab)
    (snapshot / "vocab.json").write_text(json.dumps(vocab))
    (snapshot / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
