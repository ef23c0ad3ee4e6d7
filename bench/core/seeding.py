"""Seeded randomness without hidden state: every purpose (and step) of a run gets its own CPU generator.

A draw depends only on (seed, purpose, index), never on how many draws came before or on the batch a
sample sits in, so resumed runs and re-chunked work reproduce uninterrupted ones bit for bit. The
intra-op thread count is pinned for the same reason: CPU kernels' results depend on it.
"""
from __future__ import annotations

import hashlib
from contextlib import contextmanager

import numpy as np
import torch


def derived_seed(seed: int, purpose: str, index: int = 0) -> int:
    digest = hashlib.sha256(f"{seed}:{purpose}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def derived_generator(seed: int, purpose: str, index: int = 0) -> torch.Generator:
    """A CPU generator for one purpose (and step) of a seeded run, independent of all the others."""
    return torch.Generator(device="cpu").manual_seed(derived_seed(seed, purpose, index))


def epoch_batch(step: int, batch_size: int, n: int, seed: int) -> np.ndarray:
    """Positions step*B .. step*B+B-1 of an endless stream of per-epoch permutations of range(n)."""
    positions = np.arange(step * batch_size, (step + 1) * batch_size)
    out = np.empty(batch_size, np.int64)
    for epoch in np.unique(positions // n):
        perm = torch.randperm(n, generator=derived_generator(seed, "epoch", int(epoch))).numpy()
        mask = positions // n == epoch
        out[mask] = perm[positions[mask] % n]
    return out


@contextmanager
def pinned_threads(threads: int):
    """Run with exactly `threads` intra-op threads (CPU kernels' results depend on it), then restore."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
