"""bench.core.allocator: freed buffers stay in the heap for the next forward pass (glibc)."""
import os
import subprocess
import sys

import pytest

CHILD = """
import ctypes, sys
import numpy as np
from bench.core.allocator import keep_freed_buffers

class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                               "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info
if sys.argv[1] == "tuned":
    assert keep_freed_buffers() and keep_freed_buffers()  # once; then it says it is in effect
buffer = np.ones(20 << 20, np.uint8)  # 20 MiB, touched
del buffer
print(libc.mallinfo2().fordblks >> 20)  # MiB free in the heap, kept for reuse
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_a_freed_20_mib_buffer_stays_in_the_heap_only_when_tuned():
    def free_mib(mode):
        done = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, timeout=120,
                              env={k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")})
        assert done.returncode == 0, done.stderr[-2000:]
        return int(done.stdout.strip())

    assert free_mib("tuned") >= 20  # kept: the next forward pass reuses it without page faults
    assert free_mib("default") < 20  # glibc's default: a fresh mapping, returned when freed


def test_a_setting_in_the_environment_is_left_alone(monkeypatch):
    from bench.core import allocator

    monkeypatch.setattr(allocator, "_applied", False)
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "0")
    assert allocator.keep_freed_buffers() is False
