"""An exclusive lock on a results folder, so two commands never write one folder at the same time.

The lock is an advisory `flock` on FOLDER/.bench.lock, released by the kernel when the process ends
(even on kill -9), so a crashed run never leaves a stale lock behind. The file records who holds it.
"""
from __future__ import annotations

import fcntl
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path

from bench.core.errors import BenchError

LOCK_NAME = ".bench.lock"


@contextmanager
def folder_lock(folder: Path, command: str):
    """Hold the folder's lock for the block; another holder is a BenchError naming it (no waiting)."""
    folder = Path(folder)
    path = folder / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise BenchError(f"{folder}: cannot create the lock file {path} ({e.strerror or e}); choose a writable "
                         f"results folder") from e
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 400, 0).decode(errors="replace").strip() or "another process"
            raise BenchError(f"{folder} is in use by another bench command ({holder}); two commands writing "
                             f"one results folder would race: wait for it to finish, or give this one another "
                             f"folder (--out)") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"`{command}`, pid {os.getpid()} on {socket.gethostname()}, since "
                      f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the flock
