"""Where generation batches and embedding chunks run: in this process, or fanned out over Ray.

An executor maps a `Job` over work items and yields the results in item order, so the caller (the
driver) writes each result to the cache as soon as it and everything before it are done: a killed run
loses only what is in flight. A job's worker object (a generator, a backbone) is built from picklable
arguments once per worker process and reused for every item; in this process an already-built object
can be passed instead. Results do not depend on the executor: generators seed every sample on its
own, and a clip's outputs are those of its examples alone (bench.batching).
"""
from __future__ import annotations

import os
from collections import OrderedDict, deque
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterator, Sequence

from bench.core.config import parse_table
from bench.core.errors import BenchError, ConfigError
from bench.core.extras import require

EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class Job:
    key: str  # names what build(*args) makes, for reuse within a worker process
    build: Callable[..., Any]  # module-level function: builds the worker object
    args: tuple
    run: Callable[[Any, Any], Any]  # module-level function: (worker object, item) -> result
    local: Any = None  # the worker object, already built in this process (never shipped)


class LocalExecutor:
    name = "local"

    def map(self, job: Job, items: Sequence) -> Iterator:
        obj = job.local if job.local is not None else job.build(*job.args)
        for item in items:
            yield job.run(obj, item)


# Worker-side objects, by job key; a few only, so a sweep over checkpoints does not pile up models.
_BUILT: OrderedDict[str, Any] = OrderedDict()
_BUILT_MAX = 2


def _built(job: Job) -> Any:
    if job.key in _BUILT:
        _BUILT.move_to_end(job.key)
    else:
        _BUILT[job.key] = job.build(*job.args)
        while len(_BUILT) > _BUILT_MAX:
            _BUILT.popitem(last=False)
    return _BUILT[job.key]


def _run_on_worker(job: Job, item):
    return job.run(_built(job), item)


class RayExecutor:
    """Ray tasks, one per item, at most `max_in_flight` at a time (default: twice the cluster's CPUs).

    Connects to `address` (a running cluster, e.g. "ray://head:10001" or "auto"), or starts a local
    Ray instance when none is given; an already initialised Ray session is used as it is. Workers must
    be able to import this package and reach the weights cache (install the package on every node;
    put the cache root on shared storage or fetch weights there with `bench weights fetch`).
    """

    name = "ray"

    def __init__(self, address: str | None = None, max_in_flight: int | None = None):
        self.address = address
        self.max_in_flight = max_in_flight
        self._remote = None

    def _connect(self):
        if self._remote is None:
            ray = require("ray", "ray", "executor 'ray'")
            if not ray.is_initialized():
                try:
                    ray.init(address=self.address, include_dashboard=False, log_to_driver=False)
                except Exception as exc:  # ConnectionError, RuntimeError, ... all mean "no cluster"
                    raise BenchError(f"could not start or reach a Ray cluster at {self.address or 'local'}: "
                                     f"{type(exc).__name__}: {exc}") from exc
            self._remote = ray.remote(_run_on_worker)
        return self._remote

    def map(self, job: Job, items: Sequence) -> Iterator:
        remote = self._connect()  # first: it names the [ray] extra when ray is missing
        import ray

        window = self.max_in_flight or max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))
        job_ref = ray.put(replace(job, local=None))  # shipped once, not with every task
        pending: deque = deque()
        items = iter(items)
        for item in items:
            pending.append(remote.remote(job_ref, item))
            if len(pending) >= window:
                break
        while pending:
            try:
                result = ray.get(pending.popleft())
            except ray.exceptions.RayTaskError as exc:  # re-raise the task's own error (BenchError, ...)
                for ref in pending:
                    ray.cancel(ref)
                raise exc.as_instanceof_cause() from None
            for item in items:  # keep the window full
                pending.append(remote.remote(job_ref, item))
                break
            yield result


@dataclass(frozen=True)
class ExecutorSpec:
    """A suite's `executor`: "local" | "ray", or a table {name, address, max_in_flight}."""

    name: str = "local"
    address: str | None = None  # a Ray cluster (default: $RAY_ADDRESS, else a local instance)
    max_in_flight: int | None = None  # tasks at a time (default: twice the cluster's CPUs)


def parse_executor(value, source: str) -> ExecutorSpec:
    spec = parse_table(ExecutorSpec, {"name": value} if isinstance(value, str) else value, source, "executor")
    if spec.name not in EXECUTORS:
        raise ConfigError(f"{source}: executor {spec.name!r} is not one of {', '.join(EXECUTORS)}")
    if spec.max_in_flight is not None and spec.max_in_flight < 1:
        raise ConfigError(f"{source}: [executor] max_in_flight must be a positive integer")
    return spec


def make_executor(name: str | None = None, address: str | None = None, max_in_flight: int | None = None):
    name = name or "local"
    if name == "local":
        return LocalExecutor()
    if name == "ray":
        return RayExecutor(address or os.environ.get("RAY_ADDRESS") or None, max_in_flight)
    raise ConfigError(f"executor {name!r} is not one of {', '.join(EXECUTORS)}")
