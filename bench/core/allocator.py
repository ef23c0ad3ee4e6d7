"""glibc malloc settings for embedding: freed activation buffers are kept for the next forward pass.

By default glibc hands freed memory above a trim threshold back to the system and maps large blocks
afresh, so every forward pass page-faults its activations in again: `bench score` of 48 + 48 clips of
10 s (fd/is-panns, Cnn14_16k) spent 14.8 of its 68.5 CPU seconds in the kernel, 5.3 with blocks up to
32 MiB taken from the heap and up to 256 MiB of free heap kept (docs/measurements.md). Linux with glibc
only; a setting the environment already makes (MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_) wins.
"""
from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # glibc's own upper limit for the dynamic threshold
TRIM_THRESHOLD = 256 << 20

_applied = False


def keep_freed_buffers() -> bool:
    """Apply the settings once per process; whether they are in effect."""
    global _applied
    if _applied:
        return True
    if not sys.platform.startswith("linux") or any(
            name in os.environ for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    _applied = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _applied
