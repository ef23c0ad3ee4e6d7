"""Registry of pretrained checkpoints: where they come from, how they are verified, where they live.

Checkpoints are fetched on first use into CACHE_ROOT/weights/ (pooch), verified by sha256 where a hash is
published (torch-hub files publish a prefix in their name; the Hugging Face hub publishes the sha256 of
each LFS file, asked for at download time), and the observed sha256 is recorded in
every result. With no network and no file, the user gets one message naming the file, its URL and the
path to put it at.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.core.cache import atomic_write_json, default_cache_root
from bench.core.errors import CheckpointError
from bench.core.registry import Registry

OFFLINE_ENV = "BENCH_OFFLINE"
UNVERIFIED = "local-unverified"  # provenance "weights" of a local checkpoint not matching a published hash


@dataclass(frozen=True)
class WeightsCard:
    name: str
    filename: str
    url: str
    backbone: str
    license: str
    citation: str
    size_bytes: int | None = None
    sha256: str | None = None  # full published hash
    sha256_prefix: str | None = None  # torch-hub style: leading hex digits published in the file name
    # A Hugging Face hub file stored with LFS: the hub publishes its sha256 (the ETag), checked on download.
    hub_lfs: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


# name -> card. Each backbone or generator module registers its cards when it is imported.
KNOWN_WEIGHTS = Registry("weights")


def register_weights(card: WeightsCard) -> WeightsCard:
    return KNOWN_WEIGHTS.add(card.name, card)


@dataclass(frozen=True)
class HubCard:
    """A model read from the Hugging Face cache (HF_HOME), not a single file in our cache: its repository, the
    files that must be there, and the patterns `bench weights fetch` downloads."""

    name: str
    repo: str
    files: tuple[str, ...]  # present in the cached snapshot = usable
    fetch_patterns: tuple[str, ...]
    backbone: str
    license: str
    citation: str
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


# name -> hub card; listed and fetched by `bench weights` beside the file cards.
KNOWN_HUB_MODELS = Registry("hub model")


def register_hub_model(card: HubCard) -> HubCard:
    return KNOWN_HUB_MODELS.add(card.name, card)


def hub_missing_files(card: HubCard) -> list[str]:
    from huggingface_hub import try_to_load_from_cache

    return [f for f in card.files if not isinstance(try_to_load_from_cache(card.repo, f), str)]


def fetch_hub_model(card: HubCard) -> Path:
    """Download the card's files into the Hugging Face cache; the snapshot folder."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(card.repo, allow_patterns=list(card.fetch_patterns)))
    except OSError as exc:  # huggingface_hub's network and not-found errors are OSErrors
        raise CheckpointError(f"could not download {card.repo} for {card.name!r} into the Hugging Face cache: "
                              f"{exc}") from exc




@dataclass(frozen=True)
class ResolvedWeights:
    """A checkpoint file ready to load, with what results must record about it."""

    card: WeightsCard
    path: Path
    sha256: str
    source: str  # "cache" | "download" | "local file"

    @property
    def verified(self) -> bool:
        """The file's sha256 matches the published one (files from the cache or a download always do:
        they are checked on the way in, or have no published hash and come from the card's URL)."""
        return self.source != "local file" or hash_matches(self.card, self.sha256) is True

    def provenance(self) -> dict:
        published = self.card.sha256 or (f"{self.card.sha256_prefix}..." if self.card.sha256_prefix else None)
        common = {"name": self.card.name, "file": self.path.name, "sha256": self.sha256, "source": self.source,
                  "published_sha256": published, "hash_published": published is not None,
                  "matches_published": hash_matches(self.card, self.sha256)}
        if self.verified:
            return {"weights": "pretrained", **common, "url": self.card.url}
        # A user's file that is not (or cannot be shown to be) the published checkpoint: never credited
        # with the official URL; labelled "unverified" in metric keys, records, tags and leaderboards.
        return {"weights": UNVERIFIED, **common, "url": None,
                "note": f"local checkpoint for {self.card.name!r} whose sha256 "
                        + ("does not match the published one" if published else "cannot be checked (none is published)")}


def weights_dir(cache_root: Path) -> Path:
    return Path(cache_root) / "weights"


def get_card(name: str) -> WeightsCard:
    return KNOWN_WEIGHTS.lookup(name)


def memo_path(path: Path) -> Path:
    """Where the hash memo of `path` lives: in the cache root, never next to the file (users' folders stay
    untouched), named by the file's absolute path."""
    where = str(Path(path).expanduser().resolve())
    return default_cache_root() / "file-hashes" / f"{hashlib.sha256(where.encode()).hexdigest()}.json"


def sha256_file(path: Path, use_memo: bool = True) -> str:
    """sha256 of a file, remembered (memo in the cache root) by path, size and mtime so large files hash once."""
    path = Path(path)
    st = path.stat()
    sidecar = memo_path(path)
    if use_memo:
        try:
            memo = json.loads(sidecar.read_text())
            if (memo["path"], memo["size"], memo["mtime_ns"]) == (str(path.resolve()), st.st_size, st.st_mtime_ns):
                return memo["sha256"]
        except (OSError, ValueError, KeyError):
            pass
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    digest = h.hexdigest()
    try:
        atomic_write_json(sidecar, {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                                    "sha256": digest})
    except OSError:
        pass  # read-only cache: hashing again next time is fine
    return digest


def folder_fingerprint(folder: Path) -> str:
    """sha256 over (relative path, content id) of every file. HF cache files are symlinks into blobs/
    named by their content hash, so those are not re-read; plain files are hashed (memoized)."""
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.endswith(".sha256.json")):
        real = path.resolve()
        content = f"blob:{real.name}" if real.parent.name == "blobs" else sha256_file(real)
        h.update(f"{path.relative_to(folder).as_posix()}\t{content}\n".encode())
    return h.hexdigest()


def hash_matches(card: WeightsCard, digest: str) -> bool | None:
    """True/False against the published hash, None when nothing is published."""
    if card.sha256:
        return digest == card.sha256
    if card.sha256_prefix:
        return digest.startswith(card.sha256_prefix)
    return None


def _mismatch_message(card: WeightsCard, path: Path, digest: str, expected: str) -> str:
    return (f"{path}: sha256 {digest} does not match the published {expected} for {card.name!r}. "
            f"The file is corrupt or a different checkpoint; delete it and run `bench weights fetch {card.name}`.")


def _check_hash(card: WeightsCard, path: Path, digest: str) -> None:
    if hash_matches(card, digest) is False:
        raise CheckpointError(_mismatch_message(card, path, digest, card.sha256 or f"{card.sha256_prefix}..."))


def missing_message(card: WeightsCard, cache_root: Path, reason: str) -> str:
    return (f"checkpoint {card.filename} for {card.name!r} is not in the cache and could not be downloaded "
            f"({reason}). Download {card.url} and put it at {weights_dir(cache_root) / card.filename} "
            f"(or pass --checkpoint {card.backbone}=PATH, or set {OFFLINE_ENV}=0 with network access).")


def hub_published_sha256(url: str) -> str | None:
    """The sha256 a Hugging Face hub publishes for an LFS file (its ETag), None for other files."""
    from huggingface_hub import get_hf_file_metadata

    etag = get_hf_file_metadata(url, timeout=30).etag or ""
    return etag if re.fullmatch(r"[0-9a-f]{64}", etag) else None


def fetch(card: WeightsCard, cache_root: Path, progress: bool = True) -> Path:
    """Download `card` into the cache (pooch, into a temp file), verify its hash, return the path."""
    import pooch
    import requests

    target = weights_dir(cache_root) / card.filename
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = target.with_name(f".{target.name}.part")  # renamed to the target only once verified
    staged.unlink(missing_ok=True)  # pooch would take a leftover as already downloaded
    pooch.get_logger().setLevel("INFO" if progress else "WARNING")
    try:
        expected = card.sha256 or (hub_published_sha256(card.url) if card.hub_lfs else None)
        pooch.retrieve(card.url, known_hash=None, fname=staged.name, path=staged.parent,
                       downloader=pooch.HTTPDownloader(progressbar=progress, timeout=60))
    except requests.exceptions.ChunkedEncodingError as exc:  # the connection ended before Content-Length
        raise CheckpointError(missing_message(card, cache_root, f"incomplete download: {exc}")) from exc
    except (requests.exceptions.RequestException, OSError) as exc:  # huggingface_hub's errors are OSErrors
        raise CheckpointError(missing_message(card, cache_root, f"download failed: {exc}")) from exc
    finally:
        pooch.get_logger().setLevel("INFO")
    digest = pooch.file_hash(str(staged), alg="sha256")
    try:
        if expected and digest != expected:
            raise CheckpointError(_mismatch_message(card, target, digest, expected))
        _check_hash(card, target, digest)
    except CheckpointError:
        staged.unlink(missing_ok=True)
        raise
    os.replace(staged, target)
    return target


def offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "").lower() in ("1", "true", "yes")


def resolve(name: str, cache_root: Path, local_path: str | Path | None = None,
            allow_download: bool | None = None, progress: bool = True) -> ResolvedWeights:
    """The checkpoint for `name`: a local file if given, else the cache, else a download."""
    card = get_card(name)
    if local_path is not None:
        path = Path(local_path).expanduser()
        if not path.is_file():
            raise CheckpointError(f"--checkpoint {name}={local_path}: no such file")
        return ResolvedWeights(card, path, sha256_file(path), "local file")
    path = weights_dir(cache_root) / card.filename
    if path.is_file():
        digest = sha256_file(path)
        _check_hash(card, path, digest)
        return ResolvedWeights(card, path, digest, "cache")
    if allow_download is None:
        allow_download = not offline()
    if not allow_download:
        raise CheckpointError(missing_message(card, cache_root, f"offline mode ({OFFLINE_ENV}=1)"))
    path = fetch(card, cache_root, progress=progress)
    return ResolvedWeights(card, path, sha256_file(path), "download")


def status_rows(cache_root: Path) -> list[dict]:
    """One row per registered checkpoint, for `bench weights list` (the caller loads the registries)."""
    rows = []
    for card in sorted(KNOWN_WEIGHTS.values(), key=lambda c: c.name):
        path = weights_dir(cache_root) / card.filename
        rows.append({**card.to_dict(), "cached": path.is_file(), "path": str(path)})
    return rows


def verify_cached(cache_root: Path) -> list[dict]:
    """Hash every cached checkpoint (fresh, ignoring memos) and compare with the published hash."""
    results = []
    for card in sorted(KNOWN_WEIGHTS.values(), key=lambda c: c.name):
        path = weights_dir(cache_root) / card.filename
        if not path.is_file():
            results.append({"name": card.name, "status": "missing", "path": str(path)})
            continue
        digest = sha256_file(path, use_memo=False)
        ok = hash_matches(card, digest)
        status = {True: "ok", False: "MISMATCH", None: "unverified (no published hash)"}[ok]
        results.append({"name": card.name, "status": status, "sha256": digest, "path": str(path)})
    return results
