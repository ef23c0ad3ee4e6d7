"""The one safe checkpoint loader: tensors-only `torch.load`, and one way of reporting a file it cannot read.

Every backbone, generator and trainer loads its checkpoint files through `load_checkpoint`, so a
missing, empty, truncated, garbage or pickle-carrying file gets the same CheckpointError everywhere,
naming the file, what it was meant to be and what to do. Arbitrary pickled objects are never
unpickled: only tensors, containers and numeric numpy arrays / scalars (which published checkpoints
carry in their training state) are allowed.
"""
from __future__ import annotations

import os
import pickle
import re
from pathlib import Path

import numpy as np

from bench.core.errors import CheckpointError


def _numpy_globals() -> list:
    # Exactly what rebuilds numeric arrays and scalars: an object array (arbitrary pickled objects) still
    # fails, since its dtype class is not listed. Files written under numpy 1.x name numpy.core.*.
    try:
        from numpy._core.multiarray import _reconstruct, scalar  # numpy >= 2
    except ImportError:
        from numpy.core.multiarray import _reconstruct, scalar
    numeric_dtypes = [type(np.dtype(code)) for code in "?bBhHiIlLqQefdgFDG"]
    return [_reconstruct, scalar, (_reconstruct, "numpy.core.multiarray._reconstruct"),
            (scalar, "numpy.core.multiarray.scalar"), (scalar, "numpy._core.multiarray.scalar"),
            np.ndarray, np.dtype, *numeric_dtypes]


def load_checkpoint(path: str | os.PathLike, what: str, fix: str, mmap: bool = False):
    """torch.load(path, weights_only=True) on the CPU; any unreadable file is a CheckpointError
    "cannot read {what} {path} (...); {fix}". mmap=True maps the file instead of reading it (large
    files whose optimizer state is never used), falling back for the pre-zip format."""
    import torch

    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"cannot read {what} {path}: the file does not exist; {fix}")
    if not path.is_file():
        raise CheckpointError(f"cannot read {what} {path}: not a file; {fix}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"cannot read {what} {path}: the file is empty (0 bytes, an interrupted write "
                              f"or download?); {fix}")
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            if mmap:
                try:
                    return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
                except RuntimeError as exc:
                    if "mmap" not in str(exc):
                        raise
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for truncated, garbage and pickle-carrying files
        raise _unreadable(path, what, fix, exc) from exc


def _unreadable(path: Path, what: str, fix: str, exc: Exception) -> CheckpointError:
    # torch's own message advises weights_only=False, which we never want to suggest: reword it.
    refused = re.search(r"Unsupported global: GLOBAL (\S+)|unsupported GLOBAL (\S+)|Can only build", str(exc))
    if isinstance(exc, pickle.UnpicklingError) and refused:
        name = refused.group(1) or refused.group(2)
        holds = f"it pickles {name}" if name else "it holds objects other than tensors and numeric arrays"
        return CheckpointError(f"cannot read {what} {path}: {holds}, which tensors-only loading refuses (not a "
                               f"tensors-only file; never load it with pickle); {fix}")
    reason = re.search(r"WeightsUnpickler error:\s*(.+?)\s*(?:\n|$)", str(exc))
    if reason:
        detail = reason.group(1)
    elif isinstance(exc, pickle.UnpicklingError):  # torch's text advises weights_only=False: never repeat it
        detail = "not a tensors-only file"
    else:
        detail = (str(exc).splitlines() or [""])[0][:200]
    return CheckpointError(f"cannot read {what} {path} ({type(exc).__name__}: {detail}); it is truncated, "
                           f"corrupt or not a checkpoint: {fix}")
