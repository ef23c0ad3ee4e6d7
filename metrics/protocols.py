"""Embedding protocols: exactly how audio is fed to a backbone for one published toolkit.

A protocol turns one clip (float32 [channels, n] at any rate) into the backbone's input examples.
Its id and version are part of every embedding cache key and every result, so two toolkits that feed
the same backbone differently never share numbers.

Duration policy (memory stays bounded whatever the clip length): a protocol with `stream` consumes a
long clip block by block (windowed protocols: the same examples as `prepare` on the whole clip, without
holding it); a protocol without one must see the whole clip (or resamples it whole before cropping), so it
takes clips of at most `max_whole_clip_s` and refuses longer ones with an error naming the clip.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from bench.core.resample import resampler_info


@dataclass(frozen=True)
class EmbeddingProtocol:
    id: str  # e.g. "vggish@audioldm"
    version: int
    backbone: str
    sample_rate: int
    resampler: str  # a bench.core.resample name, or "none" (no audio: precomputed embeddings)
    channels: str  # channel policy, in words
    steps: tuple[str, ...]  # the preprocessing, in order, in words (recorded in results)
    prepare: Callable[[np.ndarray, int], np.ndarray]  # (waveform, rate) -> backbone inputs [k, ...]
    # (read, rate) -> backbone inputs [k, ...] as they come, where read() yields the clip's float32
    # [channels, n] blocks again on every call: what `prepare` gives on the whole clip (see the module doc).
    stream: Callable[[Callable[[], Iterator[np.ndarray]], int], Iterator[np.ndarray]] | None = None
    max_whole_clip_s: float = 600.0  # the longest clip decoded whole when there is no `stream`

    def info(self) -> dict:
        return {"id": self.id, "version": self.version, "backbone": self.backbone,
                "sample_rate": self.sample_rate,
                "resampler": "none" if self.resampler == "none" else resampler_info(self.resampler),
                "channels": self.channels, "steps": list(self.steps)}
