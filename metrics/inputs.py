"""What a metric reads: the per-clip backbone outputs of a set, the scoring options, id pairing."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.core.cache import default_cache_root
from bench.core.errors import BenchError, ConfigError
from metrics.backbones.base import WeightsChoice

PAIRING_POLICIES = ("strict", "audioldm-99")

@dataclass(frozen=True)
class ScoreOptions:
    weights: WeightsChoice = field(default_factory=WeightsChoice)
    cache_root: Path | None = None
    batch_size: int = 32
    workers: int = 2
    # Clips per unit of durable progress (cached before the next starts; their examples batch together);
    # None: batch_size clips.
    chunk_clips: int | None = None
    bootstrap: int = 200  # resamples for confidence intervals; 0 disables them
    bootstrap_seed: int = 0
    ci_level: float = 0.95
    pairing: str = "strict"  # paired metrics: "strict" (every id paired) or "audioldm-99" (opt-in)
    progress: bool = True
    executor: object = None  # bench.executors.LocalExecutor / RayExecutor; None: in this process

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.pairing not in PAIRING_POLICIES:
            raise ConfigError(f"pairing must be one of {', '.join(PAIRING_POLICIES)}, got {self.pairing!r}")

    @property
    def root(self) -> Path:
        return Path(self.cache_root) if self.cache_root is not None else default_cache_root()


@dataclass
class SetEmbeddings:
    """Per-clip backbone outputs of one clip set under one (backbone, protocol)."""

    set_info: dict
    clip_ids: list[str]
    captions: list[str | None]
    outputs: dict[str, list[np.ndarray]]  # output name -> per clip [k_i, dim]; k_i may be 0 (too short)
    durations_s: list[float]
    silent: list[bool]
    text: np.ndarray | None = None  # caption embeddings [n_clips, dim], for text-audio metrics
    references: list[tuple[str, ...]] | None = None  # extra reference captions per clip, caption metrics

    def per_clip(self, output: str = "embedding") -> list[np.ndarray]:
        return self.outputs[output]

    def nonempty(self, output: str = "embedding") -> list[np.ndarray]:
        return [e for e in self.outputs[output] if len(e)]

    def subset(self, indices) -> "SetEmbeddings":
        """The clips at `indices`, in that order (text and reference captions follow them)."""
        idx = [int(i) for i in indices]
        pick = lambda seq: [seq[i] for i in idx] if seq is not None else None  # noqa: E731
        return SetEmbeddings({**self.set_info, "subset_of": self.set_info.get("source"), "n_subset": len(idx)},
                             pick(self.clip_ids), pick(self.captions),
                             {name: pick(values) for name, values in self.outputs.items()},
                             pick(self.durations_s), pick(self.silent),
                             None if self.text is None else np.asarray(self.text)[idx], pick(self.references))

    def summary(self) -> dict:
        first = next(iter(self.outputs.values()))
        empty = [i for i, e in zip(self.clip_ids, first) if not len(e)]
        silent = [i for i, s in zip(self.clip_ids, self.silent) if s]
        return {**self.set_info, "n_clips": len(self.clip_ids),
                "n_embeddings": int(sum(len(e) for e in first)),
                "total_duration_s": round(float(sum(self.durations_s)), 6),
                # Policy: silent clips are scored like any other, and flagged here.
                "silent_clips": {"count": len(silent), "ids": silent[:20]},
                "clips_without_embeddings": {"count": len(empty), "ids": empty[:20]}}


def without_sample_suffix(clip_id: str) -> str:
    """"x" for "x#k" with k digits (the runner's id of the k-th sample of prompt x); any other id as is."""
    head, sep, tail = clip_id.rpartition("#")
    return head if sep and tail.isdigit() else clip_id


def reference_id(generated_id: str, reference_ids) -> str:
    """The reference id a generated id pairs with: itself when the reference has it (any file name, `#`
    included, round-trips), else the id without a trailing sample suffix "#k" (k digits: the k-th sample
    the runner generated for a prompt), else the id itself (unpaired)."""
    if generated_id in reference_ids:
        return generated_id
    head = without_sample_suffix(generated_id)
    return head if head in reference_ids else generated_id


def pair_by_id(generated: SetEmbeddings, reference: SetEmbeddings, policy: str) -> tuple[list[tuple[int, int]], dict]:
    """(generated index, reference index) pairs of `pair_ids` over the sets' clip ids."""
    return pair_ids(generated.clip_ids, reference.clip_ids, policy)


def pair_ids(generated_ids: list[str], reference_ids: list[str], policy: str) -> tuple[list[tuple[int, int]], dict]:
    """(generated index, reference index) pairs; see `reference_id` for the rule.

    "strict": every generated and every reference id must be paired, else an error lists the missing
    ids. "audioldm-99" (opt-in, audioldm_eval's rule): pair what matches if more than 99% of reference
    ids do; the unpaired ids are recorded. Needs ids only, so callers check pairing before any embedding.
    """
    ref_index = {cid: j for j, cid in enumerate(reference_ids)}
    base = [reference_id(cid, ref_index) for cid in generated_ids]
    pairs = [(i, ref_index[b]) for i, b in enumerate(base) if b in ref_index]
    gen_unpaired = sorted({b for b in base if b not in ref_index})
    ref_unpaired = sorted(set(ref_index) - set(base))
    info = {"policy": policy, "pairs": len(pairs), "generated_unpaired": gen_unpaired[:20],
            "reference_unpaired": ref_unpaired[:20]}
    # audioldm_eval's rule asks for > 99% of names to match on both sides.
    matched = min(1 - len(ref_unpaired) / max(len(ref_index), 1), 1 - len(gen_unpaired) / max(len(set(base)), 1))
    ok = not gen_unpaired and not ref_unpaired if policy == "strict" else matched > 0.99 and pairs
    if not ok:
        raise BenchError(
            f"paired metric: ids do not pair up ({policy}): {len(gen_unpaired)} generated id(s) without a "
            f"reference (first: {gen_unpaired[:10]}), {len(ref_unpaired)} reference id(s) without a "
            f"generated clip (first: {ref_unpaired[:10]}). Paired metrics match clips by id; "
            + ("use --pairing audioldm-99 to accept >99% matches." if policy == "strict" else
               f"only {matched:.1%} of ids matched."))
    return pairs, info
