"""A test hook: die with SIGKILL at a named point of a run, to prove that runs resume.

`BENCH_TEST_KILL_AT=PHASE:N` kills the process right after the N-th durable step of PHASE ("generate":
a generated batch is in the cache, "embed": an embedded chunk is in the cache, "track": a record is in
MLflow but its sidecar is not written yet). Unset, `crash_point` costs one dict lookup. SIGKILL, like
a power cut or an OOM kill, runs no cleanup handlers: what survives is what was already on disk.
"""
from __future__ import annotations

import os
import signal

ENV = "BENCH_TEST_KILL_AT"
_counts: dict[str, int] = {}


def crash_point(phase: str) -> None:
    spec = os.environ.get(ENV)
    if not spec:
        return
    wanted, _, nth = spec.partition(":")
    if wanted != phase:
        return
    _counts[phase] = _counts.get(phase, 0) + 1
    if _counts[phase] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
