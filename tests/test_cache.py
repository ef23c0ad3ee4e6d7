import numpy as np

from bench.core.cache import ArrayCache, stable_hash


def test_round_trip_and_counters(tmp_path):
    cache = ArrayCache(tmp_path, "emb")
    key = {"clip": "abc", "backbone": {"sha256": "00"}, "protocol": "p@1"}
    assert cache.get(key) is None
    cache.put(key, {"embedding": np.arange(6, dtype=np.float32).reshape(2, 3)})
    got = cache.get(key)
    np.testing.assert_array_equal(got["embedding"], np.arange(6, dtype=np.float32).reshape(2, 3))
    assert got["embedding"].dtype == np.float32  # never downcast or upcast silently
    assert (cache.hits, cache.misses) == (1, 1)


def test_any_key_change_misses(tmp_path):
    cache = ArrayCache(tmp_path, "emb")
    key = {"clip": "abc", "protocol_version": 1}
    cache.put(key, {"x": np.zeros(2)})
    assert cache.get({"clip": "abc", "protocol_version": 2}) is None


def test_entry_whose_stored_key_differs_is_stale_not_returned(tmp_path):
    # Simulate a corrupted/colliding entry: the file at the key's path holds another key.
    cache = ArrayCache(tmp_path, "emb")
    key, other = {"a": 1}, {"a": 2}
    cache.put(other, {"x": np.ones(1)})
    target = cache._path(stable_hash(key))
    target.parent.mkdir(parents=True, exist_ok=True)
    cache._path(stable_hash(other)).rename(target)
    assert cache.get(key) is None


def test_truncated_entry_is_a_miss(tmp_path):
    cache = ArrayCache(tmp_path, "emb")
    key = {"a": 1}
    cache.put(key, {"x": np.ones(100)})
    path = cache._path(stable_hash(key))
    path.write_bytes(path.read_bytes()[:50])
    assert cache.get(key) is None


def test_no_temp_files_left(tmp_path):
    cache = ArrayCache(tmp_path, "emb")
    cache.put({"a": 1}, {"x": np.ones(3)})
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


def test_stable_hash_ignores_key_order():
    assert stable_hash({"a": 1, "b": [1, 2]}) == stable_hash({"b": [1, 2], "a": 1})
    assert stable_hash({"a": 1}) != stable_hash({"a": 2})
