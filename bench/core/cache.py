"""Content-addressed on-disk cache for embeddings, generated audio and reference statistics.

An entry's key is the sha256 of everything that determines its content (audio content hash, backbone
card hash, protocol id and version, ...). The key's inputs are stored inside the entry and compared on
read, so an entry is never silently stale: a mismatch is treated as a miss and rewritten. Writes are
atomic (temp file + rename), so a killed run leaves either a whole entry or none.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from bench.core.errors import BenchError

DEFAULT_CACHE_ENV = "BENCH_CACHE_DIR"


def default_cache_root() -> Path:
    env = os.environ.get(DEFAULT_CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "bench"


def stable_hash(obj) -> str:
    """sha256 of a JSON-serialisable object with sorted keys: identical inputs, identical hash."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via a temp file + rename; a folder that cannot take the file is a BenchError naming it."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise BenchError(f"{path}: cannot create the file ({e.strerror or e}: {e.filename}); a folder on the "
                         f"way is missing, read-only or a file: fix it, or choose another folder "
                         f"(--cache-dir / --out)") from e
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise BenchError(f"{path}: cannot write the file ({e.strerror or e}); "
                         + ("a folder is in its place: remove it" if path.is_dir() else
                            "check free space and permissions")) from e
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


class ArrayCache:
    """Named arrays stored per key under ROOT/NAMESPACE/ab/abcdef....npz."""

    def __init__(self, root: Path, namespace: str):
        self.dir = Path(root) / namespace
        self.hits = 0
        self.misses = 0

    def _path(self, key: str) -> Path:
        return self.dir / key[:2] / f"{key}.npz"

    def get(self, key_inputs: dict) -> dict[str, np.ndarray] | None:
        key = stable_hash(key_inputs)
        path = self._path(key)
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile):  # absent or torn entry
            self.misses += 1
            return None
        stored = arrays.pop("__key__", None)
        if stored is None or json.loads(bytes(stored).decode()) != json.loads(json.dumps(key_inputs)):
            self.misses += 1
            return None
        self.hits += 1
        return arrays

    def put(self, key_inputs: dict, arrays: dict[str, np.ndarray]) -> None:
        buf = io.BytesIO()
        key_blob = np.frombuffer(json.dumps(key_inputs, sort_keys=True).encode(), dtype=np.uint8)
        np.savez(buf, __key__=key_blob, **arrays)
        atomic_write_bytes(self._path(stable_hash(key_inputs)), buf.getvalue())
