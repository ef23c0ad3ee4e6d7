"""The Ray executor on a local 2-worker Ray instance: tasks run in worker processes, results come back
in order, errors surface as themselves, and `bench run` gives records (and cached embeddings)
bit-identical to the local executor."""
import os

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from bench.cli import main  # noqa: E402
from bench.core.errors import ConfigError  # noqa: E402
from bench.core.records import read_record  # noqa: E402
from bench.executors import ExecutorSpec, Job, RayExecutor, make_executor, parse_executor  # noqa: E402

SUITE = """
name = "rayed"
metrics = ["fad-vggish@audioldm"]
{executor}
[reference]
builtin = "synthetic"
n_clips = 6
duration_s = 1.0
[generation]
duration_s = 1.0
batch_size = 2
[[generators]]
name = "noise"
[weights]
mode = "untrained"
[scoring]
bootstrap = 10
batch_size = 2
"""


@pytest.fixture(scope="module")
def ray_session():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_tasks_run_on_workers_in_order_and_errors_surface(ray_session):
    def build(offset):
        return {"offset": offset, "pid": os.getpid()}

    def run(obj, item):
        if item == "bad":
            raise ConfigError("bad item")
        return item + obj["offset"], os.getpid(), obj["pid"]

    executor = RayExecutor(max_in_flight=3)
    out = list(executor.map(Job("t", build, (100,), run), range(8)))
    assert [v for v, _, _ in out] == list(range(100, 108))
    assert all(pid != os.getpid() for _, pid, _ in out)
    assert all(pid == built_in for _, pid, built_in in out)  # built once per worker, in that worker
    with pytest.raises(ConfigError, match="bad item"):
        list(executor.map(Job("t", build, (0,), run), [1, "bad", 2]))


def _portable(record):
    record = record.comparable()
    record.pop("suite")
    record["generation"].pop("generated_dir"), record["generation"].pop("manifest")
    for result in record["metrics"]:
        result["generated"].pop("source")
    return record


def test_bench_run_on_ray_is_bit_identical_to_local(ray_session, tmp_path, monkeypatch):
    records, caches = {}, {}
    for name, executor in (("local", ""), ("ray", '[executor]\nname = "ray"\nmax_in_flight = 2')):
        suite = tmp_path / f"{name}.toml"
        suite.write_text(SUITE.format(executor=executor))
        caches[name] = tmp_path / f"cache-{name}"
        monkeypatch.setenv("BENCH_CACHE_DIR", str(caches[name]))
        out = tmp_path / name
        assert main(["run", str(suite), "--out", str(out), "--quiet", "--no-tracking"]) == 0
        (path,) = [p for p in (out / "records").glob("*.json")]
        records[name] = read_record(path)
    assert _portable(records["ray"]) == _portable(records["local"])
    # Every cached embedding (same key -> same file name) holds the same bits.
    local_files = sorted((caches["local"] / "embeddings").rglob("*.npz"))
    assert len(local_files) == 12
    for path in local_files:
        twin = caches["ray"] / path.relative_to(caches["local"])
        with np.load(path) as a, np.load(twin) as b:
            assert a.files == b.files and all(np.array_equal(a[k], b[k]) for k in a.files)


def test_executor_config_errors_name_the_field():
    assert parse_executor("ray", "s.toml") == ExecutorSpec(name="ray")
    with pytest.raises(ConfigError, match=r"s.toml: \[executor\]: max_in_flight must be int or none, got 'many'"):
        parse_executor({"name": "ray", "max_in_flight": "many"}, "s.toml")
    with pytest.raises(ConfigError, match="s.toml: executor 'dask'"):
        parse_executor("dask", "s.toml")
    with pytest.raises(ConfigError, match=r"s.toml: \[executor\]: unknown key 'adress'"):
        parse_executor({"name": "ray", "adress": "auto"}, "s.toml")
    with pytest.raises(ConfigError, match="not one of local, ray"):
        make_executor("spark")
