"""Clip sets: manifests (JSONL/CSV) and folders of audio (the built-in set: bench.core.synthetic).

A ClipSet is a list of ClipRefs plus how to load each clip's audio. Its fingerprint hashes the clips'
content (decoded samples, whatever the container), so a result can name exactly which
reference audio it was computed on.
"""
from __future__ import annotations

import csv
import difflib
import hashlib
import io
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from bench.core.audio import (AUDIO_EXTENSIONS, LONG_CLIP_SAMPLES, audio_info, is_audio_name, read_audio,
                              read_blocks)
from bench.core.errors import AudioError, ManifestError

MANIFEST_COLUMNS = ("id", "path", "caption", "labels", "references")  # the columns we interpret
MANIFEST_FORMATS = {".jsonl": "jsonl", ".json-lines": "jsonl", ".csv": "csv"}


@dataclass(frozen=True)
class ClipRef:
    id: str
    caption: str | None = None
    labels: tuple[str, ...] = ()
    path: Path | None = None
    origin: str = ""                 # where the clip was declared: "refs.jsonl row 3" or a file path
    extra: tuple = ()                # (key, value) pairs of manifest columns we do not interpret
    # Further captions of the same audio (caption metrics score against caption + references):
    # JSONL a list of strings, CSV "a|b".
    references: tuple[str, ...] = ()


class ClipSet:
    """Named clips plus how to load them; kind is "manifest", "directory" or "synthetic"."""

    def __init__(self, name: str, kind: str, source: str, clips: list[ClipRef],
                 synthesize: Callable[[ClipRef], tuple[np.ndarray, int]] | None = None,
                 notes: tuple[str, ...] = ()):
        self.name, self.kind, self.source, self.clips = name, kind, source, list(clips)
        self.notes = tuple(notes)  # what a result should know about how the set was read
        self._synthesize = synthesize
        self._hashes: dict[str, str] = {}
        self._by_id = {c.id: c for c in self.clips}

    def __len__(self) -> int:
        return len(self.clips)

    def __repr__(self) -> str:
        return f"ClipSet({self.name!r}, kind={self.kind!r}, source={self.source!r}, n_clips={len(self)})"

    def by_id(self) -> dict[str, ClipRef]:
        return dict(self._by_id)

    def load(self, clip: ClipRef | str) -> tuple[np.ndarray, int]:
        """The clip's waveform, float32 [channels, frames], and its sample rate."""
        clip = self._clip(clip)
        if clip.path is not None:
            return read_audio(clip.path)
        if self._synthesize is not None:
            return self._synthesize(clip)
        raise AudioError(f"clip {clip.id!r} ({clip.origin}) has no audio: its manifest row has no 'path'; "
                         f"add one, or use this set for prompts only")

    def file_info(self, clip: ClipRef | str) -> tuple[int, int, int] | None:
        """(frames, sample rate, channels) of a clip's file from its header; None for clips without one."""
        clip = self._clip(clip)
        return audio_info(clip.path) if clip.path is not None else None

    def clip_hash(self, clip: ClipRef | str) -> str:
        """sha256 of the decoded audio (rate + shape + float32 samples), so container metadata such as
        libsndfile's timestamped PEAK chunk never changes a clip's identity; of the caption and labels
        for clips without audio (prompt sets)."""
        clip = self._clip(clip)
        if clip.id not in self._hashes:
            h = hashlib.sha256()
            info = self.file_info(clip)
            if info is not None and info[0] * info[2] > LONG_CLIP_SAMPLES:
                _stream_hash(h, clip.path, *info)
            elif clip.path is not None or self._synthesize is not None:
                wave, rate = self.load(clip)
                h.update(f"sample_rate={rate};shape={wave.shape[0]}x{wave.shape[1]};".encode())
                h.update(np.ascontiguousarray(wave, dtype="<f4").tobytes())
            else:
                h.update(b"text;" + json.dumps([clip.caption, list(clip.labels)]).encode())
            self._hashes[clip.id] = h.hexdigest()
        return self._hashes[clip.id]

    def fingerprint(self) -> str:
        """sha256 over "id<TAB>clip_hash" lines in id order: identifies the set's content."""
        h = hashlib.sha256()
        for clip_id in sorted(self._by_id):
            h.update(f"{clip_id}\t{self.clip_hash(clip_id)}\n".encode())
        return h.hexdigest()

    def describe(self) -> dict:
        return {"name": self.name, "kind": self.kind, "source": self.source, "n_clips": len(self),
                "fingerprint": self.fingerprint(), **({"notes": list(self.notes)} if self.notes else {})}

    def _clip(self, clip: ClipRef | str) -> ClipRef:
        key = clip if isinstance(clip, str) else clip.id
        if key not in self._by_id:
            raise KeyError(f"clip {key!r} is not in clip set {self.name!r} ({self.source})")
        return self._by_id[key]


def _stream_hash(h, path: Path, frames: int, rate: int, channels: int) -> None:
    """What clip_hash feeds for the whole decoded clip (channel after channel), one block at a time."""
    h.update(f"sample_rate={rate};shape={channels}x{frames};".encode())
    for c in range(channels):
        for block in read_blocks(path):
            h.update(np.ascontiguousarray(block[c], dtype="<f4").tobytes())


# ---------------------------------------------------------------------------------------- manifests

def load_manifest(path: str | os.PathLike, require_audio: bool = True) -> ClipSet:
    """Read a JSONL or CSV manifest. Rows are numbered from 1 by line (CSV: the header is row 1)."""
    path = Path(path)
    fmt = MANIFEST_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ManifestError(f"{path}: unknown manifest format {path.suffix!r}; use one of "
                            f"{', '.join(MANIFEST_FORMATS)}")
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found; check the path")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise ManifestError(f"{path}: not UTF-8 text ({e}); save the manifest as UTF-8") from e
    rows = _jsonl_rows(path, text) if fmt == "jsonl" else _csv_rows(path, text)
    header_note = " (header = row 1)" if fmt == "csv" else ""
    clips: list[ClipRef] = []
    first_row: dict[str, int] = {}
    for n, record in rows:
        clip = _clip_from_record(record, n, f"{path} row {n}{header_note}", path, require_audio, fmt)
        if clip.id in first_row:
            raise ManifestError(f"{path}: duplicate id {clip.id!r} in rows {first_row[clip.id]} and {n}"
                                f"{header_note}; ids must be unique")
        first_row[clip.id] = n
        clips.append(clip)
    if not clips:
        raise ManifestError(f"{path}: manifest has no rows; add one row per clip with at least 'id'"
                            + (" and 'path'" if require_audio else ""))
    extra = sorted({k for c in clips for k, _ in c.extra})
    notes = (f"columns kept but not interpreted: {', '.join(extra)}",) if extra else ()
    return ClipSet(path.stem, "manifest", str(path), clips, notes=notes)


def _jsonl_rows(path: Path, text: str):
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise ManifestError(f"{path} row {n}: invalid JSON ({e.msg} at column {e.colno}); each line must "
                                f"be one JSON object like {{\"id\": \"a\", \"path\": \"a.wav\"}}") from e
        if not isinstance(record, dict):
            raise ManifestError(f"{path} row {n}: expected a JSON object, got {type(record).__name__}")
        yield n, record


def _csv_rows(path: Path, text: str):
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as e:
        raise ManifestError(f"{path}: malformed CSV ({e}); check quoting") from e
    if not rows:
        raise ManifestError(f"{path}: manifest is empty; the first row must be a header with an 'id' column")
    header = [name.strip() for name in rows[0]]
    for k, name in enumerate(header, 1):
        if not name:
            raise ManifestError(f"{path} row 1 (header): column {k} has no name; name it or delete it")
        if header.index(name) != k - 1:
            raise ManifestError(f"{path} row 1 (header): column {name!r} appears twice; rename one")
    if "id" not in header:
        raise ManifestError(f"{path} row 1 (header): no 'id' column (columns: {', '.join(header)}); "
                            f"the first row must be the header, including 'id'")
    for n, values in enumerate(rows[1:], 2):
        if not values or all(not v.strip() for v in values):
            continue
        if len(values) != len(header):
            raise ManifestError(f"{path} row {n} (header = row 1): {len(values)} fields but the header "
                                f"has {len(header)}; quote values that contain commas")
        yield n, dict(zip(header, values))


def _clip_from_record(record: dict, n: int, where: str, manifest: Path, require_audio: bool,
                      fmt: str) -> ClipRef:
    is_csv = fmt == "csv"
    for key in record:
        if key not in MANIFEST_COLUMNS:  # a misspelt column would be dropped in silence: refuse it
            absent = [c for c in MANIFEST_COLUMNS if c not in record]
            close = difflib.get_close_matches(str(key), absent, n=1, cutoff=0.75)
            if close:
                raise ManifestError(f"{where}: unknown column {key!r} and no {close[0]!r} column; did you mean "
                                    f"{close[0]!r}? (columns read: {', '.join(MANIFEST_COLUMNS)}; others are "
                                    f"kept as notes)")
    clip_id = record.get("id")
    if clip_id is None:
        raise ManifestError(f"{where}: field 'id' is missing; every row needs a unique string id")
    if not isinstance(clip_id, str):
        raise ManifestError(f"{where}: field 'id' must be a string, got {type(clip_id).__name__} "
                            f"{clip_id!r}; quote it")
    if not clip_id.strip():
        raise ManifestError(f"{where}: field 'id' is empty; every row needs a unique string id")
    if any(c in clip_id for c in "\t\n\r"):
        raise ManifestError(f"{where}: field 'id' {clip_id!r} contains a tab or line break; remove it")

    raw_path = record.get("path")
    if raw_path is not None and not isinstance(raw_path, str):
        raise ManifestError(f"{where}: field 'path' must be a string, got {type(raw_path).__name__}")
    audio_path = None
    if raw_path and raw_path.strip():
        audio_path = Path(raw_path).expanduser()
        if not audio_path.is_absolute():
            audio_path = manifest.parent / audio_path
        if require_audio and not audio_path.is_file():
            what = ("is a folder, not a file" if audio_path.is_dir()
                    else "is a dangling symbolic link" if audio_path.is_symlink() and not audio_path.exists()
                    else "is not a regular file (a FIFO or device)" if audio_path.exists() else "does not exist")
            raise ManifestError(f"{where}: field 'path' {raw_path!r} {what} (resolved to {audio_path}; "
                                f"relative paths resolve against the manifest's folder)")
    elif require_audio:
        raise ManifestError(f"{where}: field 'path' is missing or empty; give the audio file "
                            f"(relative paths resolve against the manifest's folder)")

    caption = record.get("caption")
    if caption is not None and not isinstance(caption, str):
        raise ManifestError(f"{where}: field 'caption' must be a string, got {type(caption).__name__}")
    if is_csv and caption == "":
        caption = None

    labels = record.get("labels")
    if labels is None:
        labels = ()
    elif is_csv:
        labels = tuple(s.strip() for s in labels.split(";") if s.strip())
    elif isinstance(labels, list) and all(isinstance(s, str) for s in labels):
        labels = tuple(labels)
    else:
        raise ManifestError(f"{where}: field 'labels' must be a list of strings like [\"dog\", \"bark\"], "
                            f"got {json.dumps(labels)}")

    references = record.get("references")
    if references is None or (is_csv and not references.strip()):
        references = ()
    elif is_csv:
        references = tuple(s.strip() for s in references.split("|") if s.strip())
    elif isinstance(references, list) and all(isinstance(s, str) and s.strip() for s in references):
        references = tuple(references)
    else:
        raise ManifestError(f"{where}: field 'references' must be a list of non-empty caption strings like "
                            f"[\"a dog barks\", \"a dog is barking\"], got {json.dumps(references)}")

    extra = tuple((k, _freeze(v)) for k, v in record.items()
                  if k not in ("id", "path", "caption", "labels", "references"))
    return ClipRef(clip_id, caption, labels, audio_path, f"{manifest} row {n}", extra, references)


def _freeze(value):
    """JSON lists/objects -> tuples, so ClipRef stays hashable."""
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple((k, _freeze(v)) for k, v in value.items())
    return value


# ---------------------------------------------------------------------------------------- folders

def load_directory(path: str | os.PathLike) -> ClipSet:
    """Every audio file under `path` (recursive, sorted, symbolic links followed); id = relative path
    without extension. An entry named like audio that cannot be read as a file is an error, not skipped."""
    path = Path(path)
    if not path.is_dir():
        raise ManifestError(f"{path}: audio folder not found" if not path.exists()
                            else f"{path}: not a folder; give a folder of audio files or a manifest")
    files, bad = [], []
    _walk(path, (), files, bad)
    if bad:
        raise ManifestError(f"{path}: {len(bad)} entr{'y' if len(bad) == 1 else 'ies'} named like audio "
                            f"cannot be read: " + "; ".join(bad[:20]) + ("; ..." if len(bad) > 20 else "")
                            + ". Fix or remove them")
    files.sort(key=lambda f: f.relative_to(path).as_posix())
    if not files:
        raise ManifestError(f"{path}: no audio files ({', '.join(AUDIO_EXTENSIONS)}, any case) in this folder "
                            f"or its subfolders")
    clips, seen = [], {}
    for f in files:
        clip_id = f.relative_to(path).with_suffix("").as_posix()
        if clip_id in seen:
            raise ManifestError(f"{path}: files {seen[clip_id]} and {f} both give clip id {clip_id!r}; "
                                f"rename or remove one")
        seen[clip_id] = f
        clips.append(ClipRef(clip_id, None, (), f, str(f)))
    return ClipSet(path.name, "directory", str(path), clips)


def _walk(folder: Path, ancestors: tuple, files: list[Path], bad: list[str]) -> None:
    """Collect audio files under `folder`; `ancestors` are the (device, inode) of the folders above, so a
    symbolic link back to one of them (a loop) is reported instead of followed forever."""
    try:
        info = folder.stat()
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as e:
        bad.append(f"{folder}: cannot list the folder ({e.strerror or e})")
        return
    ancestors = (*ancestors, (info.st_dev, info.st_ino))
    for entry in entries:
        p = Path(entry.path)
        try:
            st = os.stat(p)  # follows symbolic links
        except OSError as e:
            if is_audio_name(p):
                what = "dangling symbolic link" if p.is_symlink() else "unreadable entry"
                bad.append(f"{p}: {what} ({e.strerror or e})")
            continue
        if stat.S_ISDIR(st.st_mode):
            if (st.st_dev, st.st_ino) in ancestors:
                bad.append(f"{p}: symbolic link loop (points back to {p.resolve()}, a folder above it)")
            else:
                _walk(p, ancestors, files, bad)
        elif is_audio_name(p):
            if stat.S_ISREG(st.st_mode):
                files.append(p)
            else:
                bad.append(f"{p}: {'a FIFO' if stat.S_ISFIFO(st.st_mode) else 'not a regular file'}")
