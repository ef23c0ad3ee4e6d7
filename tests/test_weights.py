"""Checkpoint registry: download, cache, hash verification, offline messages, memo, CLI.

Downloads come from a throwaway HTTP server on 127.0.0.1; nothing here touches the internet.
"""
from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import socket
import threading
from pathlib import Path

import pytest

from bench import cli
from bench.core import weights
import metrics.backbones.vggish  # noqa: F401  (registers the vggish card)
from bench.core.errors import CheckpointError, ConfigError
from bench.core.weights import WeightsCard

PAYLOAD = b"not really a checkpoint\n" * 4096  # ~100 kB, several reads for the downloader
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()
TEST_NAME = "testnet"
TEST_FILE = "testnet-weights.pth"


@pytest.fixture(autouse=True)
def _no_proxy_online(monkeypatch):
    """Loopback only, and online unless a test says otherwise."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv(weights.OFFLINE_ENV, raising=False)


class _CountingHandler(http.server.SimpleHTTPRequestHandler):
    requests: list[str]  # set per server in the fixture
    hub_etag = PAYLOAD_SHA

    def do_GET(self):  # noqa: N802 (http.server naming)
        self.requests.append(self.path)
        if self.path.startswith("/truncated/"):  # announce the whole payload, send half, hang up
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD[:len(PAYLOAD) // 2])
            self.close_connection = True
            return
        super().do_GET()

    def do_HEAD(self):  # noqa: N802
        self.requests.append(self.path)
        super().do_HEAD()

    def end_headers(self):
        if self.path.startswith("/hub/"):  # as the Hugging Face hub answers for an LFS file
            self.send_header("X-Linked-Etag", f'"{self.hub_etag}"')
        super().end_headers()

    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture
def file_server(tmp_path):
    """Serve tmp_path/served over HTTP on a free loopback port; yields (base_url, served_dir, requests)."""
    served = tmp_path / "served"
    served.mkdir()
    requests: list[str] = []
    handler = type("Handler", (_CountingHandler,), {"requests": requests})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(served)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", served, requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _closed_port() -> int:
    """A loopback port with nothing listening (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _card(url: str, **hashes) -> WeightsCard:
    return WeightsCard(name=TEST_NAME, filename=TEST_FILE, url=url, backbone="testnet", license="test",
                       citation="none", **hashes)


def _register(monkeypatch, card: WeightsCard) -> WeightsCard:
    monkeypatch.setitem(weights.KNOWN_WEIGHTS, card.name, card)
    return card


@pytest.fixture
def served_card(file_server, monkeypatch):
    """A card (no published hash) whose file is on the local server; returns (card, requests)."""
    base, served, requests = file_server
    (served / TEST_FILE).write_bytes(PAYLOAD)
    return _register(monkeypatch, _card(f"{base}/{TEST_FILE}")), requests


def _cache_listing(cache: Path) -> list[str]:
    wdir = weights.weights_dir(cache)
    return sorted(p.name for p in wdir.iterdir()) if wdir.exists() else []


# ------------------------------------------------------------------------------ download and cache

def test_resolve_downloads_then_uses_cache(served_card, tmp_path):
    card, requests = served_card
    cache = tmp_path / "cache"

    first = weights.resolve(TEST_NAME, cache, progress=False)
    assert first.source == "download"
    assert first.path == cache / "weights" / TEST_FILE
    assert first.path.read_bytes() == PAYLOAD
    assert first.sha256 == PAYLOAD_SHA
    assert requests == [f"/{TEST_FILE}"]
    # Only the checkpoint: no temp file, and hash memos live elsewhere (weights.memo_path).
    assert _cache_listing(cache) == [TEST_FILE]

    second = weights.resolve(TEST_NAME, cache, progress=False)
    assert second.source == "cache"
    assert second.path == first.path
    assert second.sha256 == PAYLOAD_SHA
    assert len(requests) == 1, "a cached checkpoint must not be downloaded again"

    prov = second.provenance()
    assert prov["sha256"] == PAYLOAD_SHA and prov["file"] == TEST_FILE and prov["url"] == card.url
    assert prov["weights"] == "pretrained" and prov["hash_published"] is False


def test_cached_file_is_not_downloaded_even_offline(served_card, tmp_path, monkeypatch):
    _, requests = served_card
    cache = tmp_path / "cache"
    weights.resolve(TEST_NAME, cache, progress=False)
    monkeypatch.setenv(weights.OFFLINE_ENV, "1")
    assert weights.resolve(TEST_NAME, cache, progress=False).source == "cache"
    assert len(requests) == 1


def test_full_sha256_mismatch_rejects_download_and_leaves_nothing(file_server, tmp_path, monkeypatch):
    base, served, requests = file_server
    (served / TEST_FILE).write_bytes(PAYLOAD)
    wrong = hashlib.sha256(b"something else").hexdigest()
    _register(monkeypatch, _card(f"{base}/{TEST_FILE}", sha256=wrong))
    cache = tmp_path / "cache"

    with pytest.raises(CheckpointError) as err:
        weights.resolve(TEST_NAME, cache, progress=False)
    target = cache / "weights" / TEST_FILE
    message = str(err.value)
    assert str(target) in message
    assert PAYLOAD_SHA in message and wrong in message
    assert requests == [f"/{TEST_FILE}"]
    assert _cache_listing(cache) == [], "a rejected download must leave no file, .part or memo behind"


def test_full_sha256_match_passes(file_server, tmp_path, monkeypatch):
    base, served, _ = file_server
    (served / TEST_FILE).write_bytes(PAYLOAD)
    _register(monkeypatch, _card(f"{base}/{TEST_FILE}", sha256=PAYLOAD_SHA))
    resolved = weights.resolve(TEST_NAME, tmp_path / "cache", progress=False)
    assert resolved.sha256 == PAYLOAD_SHA
    assert resolved.provenance()["hash_published"] is True


def test_sha256_prefix_match_passes(file_server, tmp_path, monkeypatch):
    base, served, _ = file_server
    (served / TEST_FILE).write_bytes(PAYLOAD)
    _register(monkeypatch, _card(f"{base}/{TEST_FILE}", sha256_prefix=PAYLOAD_SHA[:8]))
    resolved = weights.resolve(TEST_NAME, tmp_path / "cache", progress=False)
    assert resolved.source == "download" and resolved.sha256 == PAYLOAD_SHA


def test_sha256_prefix_mismatch_fails(file_server, tmp_path, monkeypatch):
    base, served, _ = file_server
    (served / TEST_FILE).write_bytes(PAYLOAD)
    bad_prefix = "0" * 8 if not PAYLOAD_SHA.startswith("0" * 8) else "f" * 8
    _register(monkeypatch, _card(f"{base}/{TEST_FILE}", sha256_prefix=bad_prefix))
    cache = tmp_path / "cache"
    with pytest.raises(CheckpointError, match=f"{bad_prefix}\\.\\.\\."):
        weights.resolve(TEST_NAME, cache, progress=False)
    assert not (cache / "weights" / TEST_FILE).exists()


def test_corrupt_cached_file_is_rejected(served_card, tmp_path, monkeypatch):
    """A cached file that no longer matches the published hash is an error, not silently used."""
    card, _ = served_card
    _register(monkeypatch, _card(card.url, sha256=PAYLOAD_SHA))
    cache = tmp_path / "cache"
    path = weights.resolve(TEST_NAME, cache, progress=False).path
    path.write_bytes(b"X" + PAYLOAD[1:])
    with pytest.raises(CheckpointError, match=str(path)):
        weights.resolve(TEST_NAME, cache, progress=False)


def test_http_404_is_a_checkpoint_error(file_server, tmp_path, monkeypatch):
    base, _, _ = file_server
    _register(monkeypatch, _card(f"{base}/absent.pth"))
    with pytest.raises(CheckpointError, match="404"):
        weights.resolve(TEST_NAME, tmp_path / "cache", progress=False)
    assert not (tmp_path / "cache" / "weights" / TEST_FILE).exists()


def test_truncated_download_is_rejected_even_without_published_hash(file_server, tmp_path, monkeypatch):
    base, _, _ = file_server
    card = _register(monkeypatch, _card(f"{base}/truncated/{TEST_FILE}"))
    cache = tmp_path / "cache"
    with pytest.raises(CheckpointError, match="incomplete download") as err:
        weights.resolve(TEST_NAME, cache, progress=False)
    assert card.url in str(err.value)
    assert _cache_listing(cache) == []


@pytest.mark.parametrize("published, ok", [(PAYLOAD_SHA, True), ("ab" * 32, False)])
def test_hub_lfs_file_is_checked_against_the_sha256_the_hub_publishes(file_server, tmp_path, monkeypatch,
                                                                      published, ok):
    base, served, requests = file_server
    (served / "hub").mkdir()
    (served / "hub" / TEST_FILE).write_bytes(PAYLOAD)
    monkeypatch.setattr(_CountingHandler, "hub_etag", published)
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # the test session sets it
    _register(monkeypatch, _card(f"{base}/hub/{TEST_FILE}", hub_lfs=True))
    cache = tmp_path / "cache"
    if ok:
        assert weights.resolve(TEST_NAME, cache, progress=False).sha256 == PAYLOAD_SHA
    else:
        with pytest.raises(CheckpointError, match=f"sha256 {PAYLOAD_SHA} does not match the published {published}"):
            weights.resolve(TEST_NAME, cache, progress=False)
        assert _cache_listing(cache) == []
    assert requests == [f"/hub/{TEST_FILE}"] * 2  # HEAD for the published hash, then GET


# ------------------------------------------------------------------------------ no network

def _assert_says_where(message: str, card: WeightsCard, cache: Path) -> None:
    assert card.filename in message
    assert card.url in message
    assert str(cache / "weights" / card.filename) in message


def test_offline_without_file_says_what_to_download_and_where(served_card, tmp_path, monkeypatch):
    card, requests = served_card
    monkeypatch.setenv(weights.OFFLINE_ENV, "1")
    cache = tmp_path / "cache"
    with pytest.raises(CheckpointError) as err:
        weights.resolve(TEST_NAME, cache, progress=False)
    _assert_says_where(str(err.value), card, cache)
    assert weights.OFFLINE_ENV in str(err.value)
    assert requests == [], "offline mode must not try the network"


def test_allow_download_false_overrides_online(served_card, tmp_path):
    _, requests = served_card
    with pytest.raises(CheckpointError):
        weights.resolve(TEST_NAME, tmp_path / "cache", allow_download=False, progress=False)
    assert requests == []


def test_server_down_says_what_to_download_and_where(tmp_path, monkeypatch):
    card = _register(monkeypatch, _card(f"http://127.0.0.1:{_closed_port()}/{TEST_FILE}"))
    cache = tmp_path / "cache"
    with pytest.raises(CheckpointError) as err:
        weights.resolve(TEST_NAME, cache, progress=False)
    _assert_says_where(str(err.value), card, cache)
    assert "download failed" in str(err.value)
    assert _cache_listing(cache) == []


def test_unknown_weights_name_lists_known(tmp_path):
    with pytest.raises(ConfigError, match="unknown weights 'vgish'; did you mean 'vggish'"):
        weights.resolve("vgish", tmp_path)


# ------------------------------------------------------------------------------ local files

def test_local_path_is_hashed_and_recorded(tmp_path, monkeypatch):
    _register(monkeypatch, _card(f"http://127.0.0.1:{_closed_port()}/{TEST_FILE}"))
    local = tmp_path / "mine.pth"
    local.write_bytes(PAYLOAD)
    resolved = weights.resolve(TEST_NAME, tmp_path / "cache", local_path=local)
    assert resolved.source == "local file"
    assert resolved.path == local
    assert resolved.sha256 == PAYLOAD_SHA
    assert resolved.provenance()["sha256"] == PAYLOAD_SHA
    assert resolved.provenance()["source"] == "local file"
    # No published hash to match: a local file cannot be verified, so it is not credited as the checkpoint.
    prov = resolved.provenance()
    assert prov["weights"] == weights.UNVERIFIED and prov["url"] is None and prov["matches_published"] is None


@pytest.mark.parametrize("published, expected", [(PAYLOAD_SHA, "pretrained"), ("0" * 64, weights.UNVERIFIED)])
def test_local_file_is_pretrained_only_when_it_matches_the_published_hash(tmp_path, monkeypatch, published,
                                                                           expected):
    url = f"http://127.0.0.1:{_closed_port()}/{TEST_FILE}"
    _register(monkeypatch, WeightsCard(TEST_NAME, TEST_FILE, url, "b", "l", "c", sha256=published))
    local = tmp_path / "mine.pth"
    local.write_bytes(PAYLOAD)
    prov = weights.resolve(TEST_NAME, tmp_path / "cache", local_path=local).provenance()
    assert prov["weights"] == expected and prov["sha256"] == PAYLOAD_SHA
    assert prov["matches_published"] is (expected == "pretrained") and prov["published_sha256"] == published
    assert prov["url"] == (url if expected == "pretrained" else None)


def test_local_path_missing_names_the_path(tmp_path):
    missing = tmp_path / "nowhere" / "vggish.pth"
    with pytest.raises(CheckpointError, match=str(missing)):
        weights.resolve("vggish", tmp_path / "cache", local_path=missing)


# ------------------------------------------------------------------------------ sha256 memo

def test_sha256_file_memo(tmp_path, cache_dir):
    folder = tmp_path / "users_folder"
    folder.mkdir()
    path = folder / "blob.bin"
    path.write_bytes(b"A" * 1000)
    first = weights.sha256_file(path)
    assert first == hashlib.sha256(b"A" * 1000).hexdigest()
    # The memo is in the cache root; nothing is written next to the user's file.
    assert sorted(p.name for p in folder.iterdir()) == ["blob.bin"]
    sidecar = weights.memo_path(path)
    assert sidecar.is_file() and cache_dir in sidecar.parents
    assert weights.sha256_file(path) == first

    # Same size, new content and a new mtime: the memo must not be used.
    path.write_bytes(b"B" * 1000)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    second = weights.sha256_file(path)
    assert second == hashlib.sha256(b"B" * 1000).hexdigest()
    assert second != first
    assert weights.sha256_file(path) == second


def test_sha256_file_memo_is_consulted(tmp_path, cache_dir):
    """The memo is what makes repeated hashing cheap: a memo matching path, size and mtime is trusted."""
    path = tmp_path / "blob.bin"
    path.write_bytes(b"C" * 10)
    weights.sha256_file(path)
    sidecar = weights.memo_path(path)
    st = path.stat()
    sidecar.write_text(json.dumps({"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                                   "sha256": "memoised"}))
    assert weights.sha256_file(path) == "memoised"
    sidecar.write_text("not json")
    assert weights.sha256_file(path) == hashlib.sha256(b"C" * 10).hexdigest()


# ------------------------------------------------------------------------------ verify / status

def _put_cached(cache: Path, filename: str, data: bytes) -> Path:
    path = weights.weights_dir(cache) / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_verify_cached_statuses(tmp_path, monkeypatch, cache_dir):
    url = f"http://127.0.0.1:{_closed_port()}/x"
    good = _register(monkeypatch, WeightsCard("good", "good.pth", url, "b", "l", "c", sha256=PAYLOAD_SHA))
    bad = _register(monkeypatch, WeightsCard("bad", "bad.pth", url, "b", "l", "c", sha256_prefix=PAYLOAD_SHA[:8]))
    free = _register(monkeypatch, WeightsCard("free", "free.pth", url, "b", "l", "c"))
    cache = tmp_path / "cache"
    _put_cached(cache, good.filename, PAYLOAD)
    bad_path = _put_cached(cache, bad.filename, b"corrupted")
    _put_cached(cache, free.filename, b"anything")

    # A stale memo claiming the right hash must not hide the corruption: verify hashes afresh.
    st = bad_path.stat()
    weights.memo_path(bad_path).parent.mkdir(parents=True, exist_ok=True)
    weights.memo_path(bad_path).write_text(json.dumps({"path": str(bad_path.resolve()), "size": st.st_size,
                                                       "mtime_ns": st.st_mtime_ns, "sha256": PAYLOAD_SHA}))

    by_name = {row["name"]: row for row in weights.verify_cached(cache)}
    assert by_name["good"]["status"] == "ok" and by_name["good"]["sha256"] == PAYLOAD_SHA
    assert by_name["bad"]["status"] == "MISMATCH"
    assert by_name["bad"]["sha256"] == hashlib.sha256(b"corrupted").hexdigest()
    assert by_name["free"]["status"].startswith("unverified")
    assert by_name["vggish"]["status"] == "missing"
    assert by_name["vggish"]["path"] == str(cache / "weights" / "vggish-10086976.pth")


def test_status_rows_mark_cached(tmp_path, monkeypatch):
    card = _register(monkeypatch, _card(f"http://127.0.0.1:{_closed_port()}/{TEST_FILE}"))
    cache = tmp_path / "cache"
    _put_cached(cache, card.filename, PAYLOAD)
    rows = {row["name"]: row for row in weights.status_rows(cache)}
    assert rows[TEST_NAME]["cached"] is True
    assert rows[TEST_NAME]["path"] == str(cache / "weights" / TEST_FILE)
    assert rows["vggish"]["cached"] is False
    assert rows["vggish"]["url"] == weights.KNOWN_WEIGHTS["vggish"].url


def test_registry_is_restored_after_monkeypatch():
    """The other tests register cards through monkeypatch; none may leak into the global registry."""
    assert TEST_NAME not in weights.KNOWN_WEIGHTS
    assert "vggish" in weights.KNOWN_WEIGHTS


# ------------------------------------------------------------------------------ CLI

VGGISH = weights.KNOWN_WEIGHTS["vggish"]


def test_cli_weights_list(tmp_path, capsys):
    assert cli.main(["--cache-dir", str(tmp_path), "weights", "list"]) == 0
    out = capsys.readouterr().out
    assert str(tmp_path / "weights") in out
    line = next(l for l in out.splitlines() if l.startswith("vggish"))
    assert "missing" in line and VGGISH.filename in line
    assert VGGISH.url in out
    assert "10086976... (prefix)" in out


def test_cli_weights_list_shows_cached(tmp_path, capsys):
    _put_cached(tmp_path, VGGISH.filename, b"whatever")
    assert cli.main(["--cache-dir", str(tmp_path), "weights", "list"]) == 0
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("vggish"))
    assert "cached" in line and "missing" not in line


def test_cli_weights_verify(tmp_path, capsys):
    assert cli.main(["--cache-dir", str(tmp_path), "weights", "verify"]) == 0  # missing is not a failure
    assert "missing" in capsys.readouterr().out

    corrupt = b"definitely not vggish"
    assert not hashlib.sha256(corrupt).hexdigest().startswith(VGGISH.sha256_prefix)
    _put_cached(tmp_path, VGGISH.filename, corrupt)
    assert cli.main(["--cache-dir", str(tmp_path), "weights", "verify"]) == 1
    out = capsys.readouterr().out
    assert "MISMATCH" in out and str(tmp_path / "weights" / VGGISH.filename) in out


def test_cli_weights_fetch(served_card, tmp_path, capsys):
    _, requests = served_card
    cache = tmp_path / "cache"
    assert cli.main(["--cache-dir", str(cache), "weights", "fetch", TEST_NAME]) == 0
    out = capsys.readouterr().out
    assert f"{TEST_NAME}: {cache / 'weights' / TEST_FILE} (download) sha256 {PAYLOAD_SHA}" in out
    assert len(requests) == 1


def test_cli_weights_fetch_failure_exits_2(tmp_path, monkeypatch, capsys):
    card = _register(monkeypatch, _card(f"http://127.0.0.1:{_closed_port()}/{TEST_FILE}"))
    assert cli.main(["--cache-dir", str(tmp_path), "weights", "fetch", TEST_NAME]) == 2
    err = capsys.readouterr().err
    assert card.url in err and str(tmp_path / "weights" / TEST_FILE) in err
