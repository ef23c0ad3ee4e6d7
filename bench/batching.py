"""Which backbone inputs run together, and in batches of which shape (bench.scoring uses this).

Measured on this project's CPU (python -m bench.benchmarks.forward_settings): an example's output depends
on the number of rows of its batch (kernels pick code paths by batch size; outputs move by ~1e-6 relative
between batch sizes), but for a given batch shape not on its row nor on the other rows. So a batch may mix
clips, and an embedding is reproducible bit for bit as long as the batch shapes of its examples are: the
plan below fixes them from the clip and its place in a *piece*, and the cache key records both.

- Signature: clips with the same (frames, rate, channels) get the same example shapes from every protocol
  (tests/test_batching.py checks each registered protocol). Clips without a file header and clips streamed
  whole (bench.core.audio.LONG_CLIP_SAMPLES) have no signature: they run alone.
- Pieces: the clips of one signature, in content order (clip hash, then id), cut into pieces of at most
  piece_clips clips; the last piece is shorter. The default, piece_clips = 1, runs every clip alone: its
  embedding then never depends on the other clips of its set (the issue-15 requirement). piece_clips > 1
  is an opt-in speed-up for equal-length sets: a clip's bits then depend on how many clips of its length
  the set holds (sets scored at 1 and at N differ by ~1e-6 relative). A set of distinct lengths is all
  pieces of one clip either way.
- Batches: a piece's same-shape examples, clip after clip, in batches of batch_rows(shape) rows (the last
  one shorter); nothing is padded. A clip's batch shapes then follow from its own examples, the size of
  its piece and its place in it: (piece size, place) is part of its cache key, so a resumed, re-chunked or
  re-ordered run reproduces an uninterrupted one bit for bit.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bench.core.audio import LONG_CLIP_SAMPLES
from bench.core.errors import BenchError

# At most this many input values per batch (8 PANNs inputs of 10 s at 16 kHz): batch rows beyond it
# barely speed up a CPU forward and multiply its memory (Cnn14_16k on 10 s inputs, peak RSS: 8 rows
# 1.1 GB, 32 rows 2.3 GB). VGGish's examples (96 x 64) still batch at batch_size rows.
MAX_BATCH_VALUES = 8 * 160_000


def batch_rows(shape: tuple, batch_size: int) -> int:
    """Rows of a full batch of examples of `shape`: batch_size, fewer for large examples (memory)."""
    return max(1, min(batch_size, MAX_BATCH_VALUES // max(1, math.prod(shape))))


def streamed(info: tuple[int, int, int] | None, protocol) -> bool:
    """Whether a clip with this file header (frames, rate, channels) is streamed block by block."""
    return info is not None and protocol.stream is not None and info[0] * info[2] > LONG_CLIP_SAMPLES


def plan_pieces(clipset, clips, protocol, piece_clips: int) -> list[list]:
    """The clips in pieces (see the module doc), pieces of one signature in content order, signatures in
    order of first appearance."""
    by_signature: dict = {}
    for clip in clips:
        info = clipset.file_info(clip)
        signature = ("alone", clip.id) if info is None or streamed(info, protocol) else tuple(info)
        by_signature.setdefault(signature, []).append(clip)
    pieces = []
    for members in by_signature.values():
        members.sort(key=lambda c: (clipset.clip_hash(c), c.id))
        pieces += [members[start:start + piece_clips] for start in range(0, len(members), piece_clips)]
    return pieces


def piece_batches(piece: list, batch_size: int) -> list[list[tuple[int, int]]]:
    """The batches, as (clip, example) index pairs, that a piece's examples (one list per clip) run in.

    Same-shape (and dtype) examples, clip after clip, in chunks of batch_rows(shape); every clip of a piece
    must have the same example shapes (same signature), or its batch shapes would depend on the others."""
    layouts = {tuple((np.shape(x), np.asarray(x).dtype.str) for x in examples) for examples in piece}
    if len(layouts) > 1:
        raise BenchError("clips of one length, rate and channel count gave different example shapes: the "
                         "protocol's example shapes depend on content, which per-signature batching excludes")
    groups: dict[tuple, list[tuple[int, int]]] = {}
    for c, examples in enumerate(piece):
        for i, x in enumerate(examples):
            groups.setdefault((np.shape(x), np.asarray(x).dtype.str), []).append((c, i))
    batches = []
    for (shape, _), members in groups.items():
        rows = batch_rows(shape, batch_size)
        batches += [members[start:start + rows] for start in range(0, len(members), rows)]
    return batches


@dataclass
class PieceOutputs:
    """A piece's batch outputs as the backbone returned them (tensors possibly still on the device)."""

    # per batch of piece_batches: {name: [rows, dim]}, or [rows, frames, dim] for a backbone that gives
    # several rows (frames) per example (EnCodec, DAC, MERT): an example's rows are its frames in order
    parts: list[dict]
    order: np.ndarray  # examples of the concatenated batches, in (clip, example) order
    counts: list[int]  # examples per clip

    def host(self, outputs: dict[str, int]) -> list[dict[str, np.ndarray]]:
        """Per clip {name: float32 [rows, dim]}: one copy to the host per output where the batches'
        shapes allow (no sync per batch)."""
        bounds = np.cumsum(self.counts)[:-1]
        per_name = {}
        for name, dim in outputs.items():
            values = [p[name] for p in self.parts]
            if values and not isinstance(values[0], np.ndarray):  # torch tensors
                import torch

                same = all(v.shape[1:] == values[0].shape[1:] for v in values)
                values = [torch.cat(values).cpu().numpy()] if same else [v.cpu().numpy() for v in values]
            if not values:
                per_name[name] = [np.zeros((0, dim), np.float32) for _ in self.counts]
            elif values[0].ndim == 2:  # one row per example
                per_name[name] = np.split(np.concatenate(values)[self.order], bounds)
            else:  # frames per example: example by example, then their frames in order
                examples = [example for v in values for example in v]
                ordered = [examples[i] for i in self.order]
                per_name[name] = [np.concatenate(ordered[start:stop]).reshape(-1, dim) if stop > start
                                  else np.zeros((0, dim), np.float32)
                                  for start, stop in zip([0, *bounds], [*bounds, len(ordered)])]
        return [{name: np.ascontiguousarray(per_name[name][c], np.float32) for name in outputs}
                for c in range(len(self.counts))]


def run_piece(backbone, piece: list, batch_size: int) -> PieceOutputs:
    """Queue the forward passes of a piece's examples (one list per clip); outputs stay where they are."""
    batches = piece_batches(piece, batch_size)
    run = backbone.embed_tensors or backbone.embed
    parts = [run(np.stack([piece[c][i] for c, i in batch])) for batch in batches]
    counts = [len(examples) for examples in piece]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    flat = np.array([starts[c] + i for batch in batches for c, i in batch], np.int64)
    return PieceOutputs(parts, np.argsort(flat, kind="stable"), counts)


def embed_clip(backbone, examples, batch_size: int) -> dict[str, np.ndarray]:
    """One clip's backbone outputs, alone (a piece of one clip): {name: float32 [k, dim]} (k may be 0)."""
    return run_piece(backbone, [examples], batch_size).host(backbone.outputs)[0]


def embed_examples(backbone, inputs: list, batch_size: int) -> dict[str, np.ndarray]:
    """Every clip's examples through the backbone, each clip alone, stacked in input order."""
    per_clip = [embed_clip(backbone, clip, batch_size) for clip in inputs]
    return {name: np.concatenate([c[name] for c in per_clip]) if per_clip else np.zeros((0, dim), np.float32)
            for name, dim in backbone.outputs.items()}
