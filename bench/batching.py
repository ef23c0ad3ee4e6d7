"""How backbone inputs are batched (bench.scoring uses this), and why batching never changes a value.

An example's backbone output is DEFINED as what the backbone gives for it alone (a batch of one row), so
an embedding depends only on its clip, never on the other clips of its set, their order, the batch size
or the chunking. Batching is a speed-up used only where it gives those very bits. Measured on this
project's CPU (python -m bench.benchmarks.forward_settings):
- 2-d linear layers (the heads) give other last bits at other row counts (BLAS picks kernels by rows):
  the backbones run them in blocks of a fixed number of rows (metrics.backbones.blocked_linear), after
  which VGGish, and Cnn14 / PaSST / CLAP on inputs of a few seconds or more, are batch-invariant;
- convolutions on small inputs are not (Cnn14 on inputs under 4 s: oneDNN picks another algorithm for
  its deepest convolution at one example than at several).
So each kind of batch (backbone, example shape and dtype, rows) is checked once per process: the last
example of the first such batch runs alone too, and the outputs are compared bit for bit; a new shape is
checked on a batch of PROBE_ROWS first (unless its batches are small). Where they differ, examples of that
shape run one at a time from then on (slower; same values), said once on stderr.

Within a unit of work, examples of one shape (and dtype), clip after clip, run in batches of
batch_rows(shape, batch_size, device) rows; nothing is padded. Clips streamed whole
(bench.core.audio.LONG_CLIP_SAMPLES) run on their own (bench.scoring).
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from bench.core.audio import LONG_CLIP_SAMPLES

# On the CPU, at most this many input values per batch (2 PANNs inputs of 10 s at 16 kHz): memory grows
# faster with the rows than speed does (Cnn14_16k, 16 inputs of 10 s, bare forwards in a fresh process with
# bench.core.allocator's settings: 1 row 10.5 s CPU / 965 MiB peak RSS, 2 rows 8.3 s / 1012 MiB, 4 rows
# 8.0 s / 1059 MiB). VGGish's examples (96 x 64) still batch at batch_size rows; PaSST's 10 s windows and
# CLAP's inputs run one at a time (PaSST gained nothing from 2-row batches here).
MAX_BATCH_VALUES = 2 * 160_000
# On a GPU (or another accelerator) rows are cheap and batch_size is the knob: up to 32 PANNs inputs of 10 s
# (by our estimate about 2 GB of Cnn14 activations), 5 of a minute. Not measured here (no GPU); the
# benchmark command is in docs/measurements.md.
MAX_BATCH_VALUES_ACCELERATOR = 32 * 160_000

# A first batch of more than 2 * PROBE_ROWS rows of a shape not checked yet starts with PROBE_ROWS rows
# (Cnn14 on inputs under 4 s fails at any row count here: it then wastes 2 rows, not a full batch of 20).
PROBE_ROWS = 2

# (backbone card hash, device, example shape, dtype, rows) -> True: such batches give each example's bits
# alone; (the same without rows) -> False: a batch of that shape did not. Per process: kernels are picked
# on the machine that runs them.
_BATCH_GIVES_ALONE: dict[tuple, bool] = {}


def max_batch_values(device: str) -> int:
    """The most input values a batch (or the partial batches held together) may have on `device`."""
    return MAX_BATCH_VALUES if device.split(":")[0] == "cpu" else MAX_BATCH_VALUES_ACCELERATOR


def batch_rows(shape: tuple, batch_size: int, device: str) -> int:
    """Rows of a full batch of examples of `shape` on `device`: batch_size, fewer for large examples."""
    return max(1, min(batch_size, max_batch_values(device) // max(1, math.prod(shape))))


def streamed(info: tuple[int, int, int] | None, protocol) -> bool:
    """Whether a clip with this file header (frames, rate, channels) is streamed block by block."""
    return info is not None and protocol.stream is not None and info[0] * info[2] > LONG_CLIP_SAMPLES


def plan_batches(per_clip: list, batch_size: int, device: str) -> list[list[tuple[int, int]]]:
    """The batches, as (clip, example) index pairs, that clips' examples (one list per clip) run in on
    `device`: same-shape (and dtype) examples, clip after clip, in chunks of batch_rows(shape)."""
    groups: dict[tuple, list[tuple[int, int]]] = {}
    for c, examples in enumerate(per_clip):
        for i, x in enumerate(examples):
            groups.setdefault((np.shape(x), np.asarray(x).dtype.str), []).append((c, i))
    batches = []
    for (shape, _), members in groups.items():
        rows = batch_rows(shape, batch_size, device)
        batches += [members[start:start + rows] for start in range(0, len(members), rows)]
    return batches


def _same_bits(a, b) -> bool:
    if isinstance(a, np.ndarray):
        return a.shape == b.shape and np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes()
    import torch

    return a.shape == b.shape and bool(torch.equal(a, b))


def _shape_kind(backbone, stacked: np.ndarray) -> tuple:
    return backbone.card_hash, backbone.device, stacked.shape[1:], stacked.dtype.str


def _run_checked(backbone, run, stacked: np.ndarray) -> list[dict]:
    """The forward passes of one batch: the batch itself where such batches are known to give each
    example's bits alone, else each example alone. A kind not seen yet is checked on its last example (for
    a fixed batch shape an example's bits do not depend on its row or its companions); a shape whose
    batches failed once runs one example at a time from then on, at every row count."""
    shape_kind = _shape_kind(backbone, stacked)
    if len(stacked) == 1 or _BATCH_GIVES_ALONE.get(shape_kind) is False:
        return [run(stacked[j:j + 1]) for j in range(len(stacked))]
    if len(stacked) > 2 * PROBE_ROWS and (*shape_kind, PROBE_ROWS) not in _BATCH_GIVES_ALONE:
        # a shape not seen yet is tried on a small batch first, so a shape that fails wastes PROBE_ROWS rows
        # (not for batches of a few rows: there the probe, one more check, costs about what it can save)
        return (_run_checked(backbone, run, stacked[:PROBE_ROWS])
                + _run_checked(backbone, run, stacked[PROBE_ROWS:]))
    if _BATCH_GIVES_ALONE.get((*shape_kind, len(stacked))):
        return [run(stacked)]
    batched, alone = run(stacked), run(stacked[-1:])
    if all(_same_bits(batched[name][-1:], alone[name]) for name in backbone.outputs):
        _BATCH_GIVES_ALONE[(*shape_kind, len(stacked))] = True
        return [batched]
    _BATCH_GIVES_ALONE[shape_kind] = False
    print(f"note: {backbone.id} on {backbone.device}: a batch of {len(stacked)} examples of shape "
          f"{stacked.shape[1:]} gives other last bits than each example alone on this machine; examples of "
          "that shape run one at a time (same values, slower)", file=sys.stderr)
    return [run(stacked[j:j + 1]) for j in range(len(stacked) - 1)] + [alone]


@dataclass
class BatchOutputs:
    """Batch outputs as the backbone returned them (tensors possibly still on the device)."""

    # per forward pass: {name: [rows, dim]}, or [rows, frames, dim] for a backbone that gives several
    # rows (frames) per example (EnCodec, DAC, MERT): an example's rows are its frames in order
    parts: list[dict]
    order: np.ndarray  # examples of the concatenated parts, in (clip, example) order
    counts: list[int]  # examples per clip

    def host(self, outputs: dict[str, int]) -> list[dict[str, np.ndarray]]:
        """Per clip {name: float32 [rows, dim]}: one copy to the host per output where the parts'
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


def run_batches(backbone, per_clip: Iterable, batch_size: int) -> BatchOutputs:
    """Queue the forward passes of clips' examples (one list per clip), in plan_batches' batches; a full
    batch runs as soon as its clips have arrived (`per_clip` may be a generator that prepares them), a
    partial one at the end, or earlier (oldest first) while the partial batches hold more than
    max_batch_values(device) input values (sets of distinct lengths: each clip runs as it arrives).
    Outputs stay where they are."""
    run = backbone.embed_tensors or backbone.embed
    parts, ran, counts = [], [], []  # ran: (clip, example) of each row of the concatenated parts
    arrived: list = []
    open_batches: dict[tuple, list[tuple[int, int]]] = {}

    def flush(batch):
        stacked = np.stack([arrived[c][i] for c, i in batch])
        for c, i in batch:
            arrived[c][i] = None  # run: its memory can go
        parts.extend(_run_checked(backbone, run, stacked))
        ran.extend(batch)

    for c, examples in enumerate(per_clip):
        arrived.append(list(examples))
        counts.append(len(examples))
        for i, x in enumerate(examples):
            group = (np.shape(x), np.asarray(x).dtype.str)
            batch = open_batches.setdefault(group, [])
            batch.append((c, i))
            if len(batch) == batch_rows(group[0], batch_size, backbone.device):
                flush(open_batches.pop(group))
        while sum(len(b) * math.prod(g[0]) for g, b in open_batches.items()) > max_batch_values(backbone.device):
            flush(open_batches.pop(next(iter(open_batches))))
    for batch in open_batches.values():
        flush(batch)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    flat = np.array([starts[c] + i for c, i in ran], np.int64)
    return BatchOutputs(parts, np.argsort(flat, kind="stable"), counts)


def embed_clip(backbone, examples, batch_size: int) -> dict[str, np.ndarray]:
    """One clip's examples through the backbone: {name: float32 [k, dim]} (k may be 0)."""
    return run_batches(backbone, [examples], batch_size).host(backbone.outputs)[0]
