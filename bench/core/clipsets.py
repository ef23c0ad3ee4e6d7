"""Reference and prompt sets: manifests (JSONL/CSV), folders of audio, and the built-in synthetic set.

A ClipSet is a list of ClipRefs plus how to load each clip's audio. Its fingerprint hashes the clips'
content (decoded samples, whatever the container), so a result can name exactly which
reference audio it was computed on.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import parse_qsl

import numpy as np

from bench.core.audio import read_audio
from bench.core.errors import AudioError, ConfigError, ManifestError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".opus")
MANIFEST_FORMATS = {".jsonl": "jsonl", ".json-lines": "jsonl", ".csv": "csv"}
BUILTIN_SETS = ("synthetic",)


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
                 synthesize: Callable[[ClipRef], tuple[np.ndarray, int]] | None = None):
        self.name, self.kind, self.source, self.clips = name, kind, source, list(clips)
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

    def clip_hash(self, clip: ClipRef | str) -> str:
        """sha256 of the decoded audio (rate + shape + float32 samples), so container metadata such as
        libsndfile's timestamped PEAK chunk never changes a clip's identity; of the caption and labels
        for clips without audio (prompt sets)."""
        clip = self._clip(clip)
        if clip.id not in self._hashes:
            h = hashlib.sha256()
            if clip.path is not None or self._synthesize is not None:
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
                "fingerprint": self.fingerprint()}

    def _clip(self, clip: ClipRef | str) -> ClipRef:
        key = clip if isinstance(clip, str) else clip.id
        if key not in self._by_id:
            raise KeyError(f"clip {key!r} is not in clip set {self.name!r} ({self.source})")
        return self._by_id[key]


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
    return ClipSet(path.stem, "manifest", str(path), clips)


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
            what = "is a folder, not a file" if audio_path.is_dir() else "does not exist"
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
    """Every audio file under `path` (recursive, sorted); id = relative path without extension."""
    path = Path(path)
    if not path.is_dir():
        raise ManifestError(f"{path}: audio folder not found" if not path.exists()
                            else f"{path}: not a folder; give a folder of audio files or a manifest")
    files = sorted((f for f in path.rglob("*") if f.suffix.lower() in AUDIO_EXTENSIONS and f.is_file()),
                   key=lambda f: f.relative_to(path).as_posix())
    if not files:
        raise ManifestError(f"{path}: no audio files ({', '.join(AUDIO_EXTENSIONS)}) in this folder or "
                            f"its subfolders")
    clips, seen = [], {}
    for f in files:
        clip_id = f.relative_to(path).with_suffix("").as_posix()
        if clip_id in seen:
            raise ManifestError(f"{path}: files {seen[clip_id]} and {f} both give clip id {clip_id!r}; "
                                f"rename or remove one")
        seen[clip_id] = f
        clips.append(ClipRef(clip_id, None, (), f, str(f)))
    return ClipSet(path.name, "directory", str(path), clips)


# ---------------------------------------------------------------------------------------- synthetic

NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
_NUMBER_WORDS = {3: "three", 4: "four", 5: "five", 6: "six"}


def _hz(midi: int) -> float:
    return 440.0 * 2.0 ** ((midi - 69) / 12)


def _note(midi: int) -> str:
    return f"{NOTE_NAMES[midi % 12]}{midi // 12 - 1}"


# Each class: draw(rng) -> params (every frequency stays below 3600 Hz = 0.45 * 8000, so parameters
# need not depend on the sample rate), describe(params) -> (caption, qualifier label),
# render(params, t, sr, rng) -> float64 samples.

def _tone_draw(rng):
    return {"frequency_hz": int(rng.integers(100, 2001)), "phase": float(rng.uniform(0, 2 * np.pi))}


def _tone_describe(p):
    f = p["frequency_hz"]
    return f"a steady {f} Hz sine tone", ("low-pitched" if f < 300 else "high-pitched" if f >= 1000
                                          else "mid-pitched")


def _tone_render(p, t, sr, rng):
    return np.sin(2 * np.pi * p["frequency_hz"] * t + p["phase"])


def _chord_draw(rng):
    return {"root_midi": int(rng.integers(48, 72)), "quality": ("major", "minor")[int(rng.integers(2))],
            "n_notes": int(rng.integers(3, 5))}


def _chord_notes(p):
    notes = [0, 4 if p["quality"] == "major" else 3, 7, 12][:p["n_notes"]]
    return [p["root_midi"] + k for k in notes]


def _chord_describe(p):
    name = NOTE_NAMES[p["root_midi"] % 12]
    article = "an" if name[0] in "AEF" else "a"
    doubled = ", the root doubled an octave up" if p["n_notes"] == 4 else ""
    return (f"{article} {name} {p['quality']} chord of {_NUMBER_WORDS[p['n_notes']]} organ-like "
            f"notes{doubled}", p["quality"])


def _chord_render(p, t, sr, rng):
    out = np.zeros_like(t)
    for m in _chord_notes(p):  # three harmonics per note; the highest lands below 3000 Hz
        for h in (1, 2, 3):
            out += np.sin(2 * np.pi * h * _hz(m) * t) / h
    return out


def _burst_draw(rng):
    white = bool(rng.integers(2))
    return {"rate_per_s": int(rng.integers(1, 5)), "burst_ms": int(rng.integers(50, 201)),
            "noise": "white" if white else "lowpassed",
            "cutoff_hz": None if white else int(rng.integers(5, 21)) * 100}


def _burst_describe(p):
    kind = "white noise" if p["noise"] == "white" else f"low-pass filtered noise below {p['cutoff_hz']} Hz"
    return f"short bursts of {kind}, {p['rate_per_s']} per second", p["noise"]


def _burst_render(p, t, sr, rng):
    noise = _band_limit(rng.standard_normal(len(t)), sr, p["cutoff_hz"] or 0.45 * sr)
    length = max(1, int(sr * p["burst_ms"] / 1000))
    envelope = np.zeros_like(t)
    for k in range(math.ceil(len(t) * p["rate_per_s"] / sr)):  # bursts start every 1/rate s
        start = int(round(k * sr / p["rate_per_s"]))
        piece = np.hanning(length + 2)[1:-1][:len(t) - start]
        envelope[start:start + len(piece)] = piece
    return noise * envelope


def _chirp_draw(rng):
    lo = int(rng.integers(150, 601))
    return {"low_hz": lo, "high_hz": int(rng.integers(2 * lo, 3001)),
            "direction": ("rising", "falling")[int(rng.integers(2))]}


def _chirp_describe(p):
    a, b = (p["low_hz"], p["high_hz"]) if p["direction"] == "rising" else (p["high_hz"], p["low_hz"])
    return f"a sine sweep {p['direction']} from {a} Hz to {b} Hz", p["direction"]


def _chirp_render(p, t, sr, rng):
    f0, f1 = (p["low_hz"], p["high_hz"]) if p["direction"] == "rising" else (p["high_hz"], p["low_hz"])
    span = t[-1] + 1 / sr
    ratio = f1 / f0  # exponential sweep: instantaneous frequency f0 * ratio ** (t / span)
    return np.sin(2 * np.pi * f0 * span / np.log(ratio) * (ratio ** (t / span) - 1))


def _clicks_draw(rng):
    return {"rate_per_s": int(rng.integers(2, 11)), "click_hz": int(rng.integers(15, 31)) * 100,
            "offset_s": float(rng.uniform(0, 0.1))}


def _clicks_describe(p):
    return (f"sharp rhythmic clicks, {p['rate_per_s']} per second",
            "slow" if p["rate_per_s"] <= 5 else "fast")


def _clicks_render(p, t, sr, rng):
    tail = np.arange(int(0.005 * sr)) / sr  # 5 ms damped sine: a click without energy up to Nyquist
    click = np.sin(2 * np.pi * p["click_hz"] * tail) * np.exp(-tail / 0.001)
    out = np.zeros_like(t)
    for start_s in np.arange(p["offset_s"], t[-1] + 1 / sr, 1 / p["rate_per_s"]):
        start = int(round(start_s * sr))
        piece = click[:len(t) - start]
        out[start:start + len(piece)] += piece
    return out


def _am_draw(rng):
    return {"carrier_hz": int(rng.integers(200, 1501)), "rate_hz": int(rng.integers(2, 13)),
            "depth": round(float(rng.uniform(0.5, 1.0)), 2)}


def _am_describe(p):
    return (f"a {p['carrier_hz']} Hz tone with tremolo at {p['rate_hz']} Hz",
            "slow-tremolo" if p["rate_hz"] < 6 else "fast-tremolo")


def _am_render(p, t, sr, rng):
    gain = 1 - p["depth"] * (0.5 - 0.5 * np.cos(2 * np.pi * p["rate_hz"] * t))
    return gain * np.sin(2 * np.pi * p["carrier_hz"] * t)


_PENTATONIC = tuple(48 + 12 * octave + k for octave in (0, 1) for k in (0, 2, 4, 7, 9)) + (72,)


def _plucks_draw(rng):
    n = int(rng.integers(3, 7))
    return {"notes": tuple(int(m) for m in rng.choice(_PENTATONIC, n)),
            "decay_per_s": round(float(rng.uniform(3, 8)), 2)}


def _plucks_describe(p):
    notes = p["notes"]
    steps = np.diff(notes)
    shape = "ascending" if (steps > 0).all() else "descending" if (steps < 0).all() else "melody"
    return f"{_NUMBER_WORDS[len(notes)]} plucked string notes: {' '.join(_note(m) for m in notes)}", shape


def _plucks_render(p, t, sr, rng):
    out = np.zeros_like(t)
    span = t[-1] + 1 / sr
    for k, m in enumerate(p["notes"]):  # evenly spaced onsets; harmonics decay faster than the fundamental
        start = int(round(k * span / len(p["notes"]) * sr))
        local = t[start:] - t[start]
        for h in range(1, 6):  # 5th harmonic of C5 is 2616 Hz
            out[start:] += np.sin(2 * np.pi * h * _hz(m) * local) * np.exp(-local * p["decay_per_s"] * h) / h
    return out


SYNTHETIC_CLASSES = {
    "tone": (_tone_draw, _tone_describe, _tone_render),
    "chord": (_chord_draw, _chord_describe, _chord_render),
    "noise-burst": (_burst_draw, _burst_describe, _burst_render),
    "chirp": (_chirp_draw, _chirp_describe, _chirp_render),
    "clicks": (_clicks_draw, _clicks_describe, _clicks_render),
    "am-tone": (_am_draw, _am_describe, _am_render),
    "plucks": (_plucks_draw, _plucks_describe, _plucks_render),
}


def _band_limit(x: np.ndarray, sr: int, cutoff_hz: float) -> np.ndarray:
    """Zero every FFT bin above cutoff_hz (a brick wall; circular, fine for synthetic clips)."""
    spectrum = np.fft.rfft(x)
    spectrum[np.fft.rfftfreq(len(x), 1 / sr) > cutoff_hz] = 0
    return np.fft.irfft(spectrum, len(x))


def _synthetic_clip(seed: int, index: int, sample_rate: int, n_frames: int, render: bool):
    """(class, params, caption, qualifier, waveform or None) of clip `index`, all from rng([seed, index])."""
    cls = list(SYNTHETIC_CLASSES)[index % len(SYNTHETIC_CLASSES)]
    draw, describe, render_fn = SYNTHETIC_CLASSES[cls]
    rng = np.random.default_rng([seed, index])
    params = draw(rng)
    params["peak"] = round(float(rng.uniform(0.4, 0.6)), 3)
    caption, qualifier = describe(params)
    if not render:
        return cls, params, caption, qualifier, None
    t = np.arange(n_frames) / sample_rate
    x = render_fn(params, t, sample_rate, rng)
    fade = min(int(0.005 * sample_rate), n_frames // 4)  # 5 ms fades: no clicks at the clip edges
    if fade:
        ramp = np.sin(np.linspace(0, np.pi / 2, fade)) ** 2
        x[:fade] *= ramp
        x[-fade:] *= ramp[::-1]
    x = _band_limit(x, sample_rate, 0.45 * sample_rate)
    top = np.max(np.abs(x))
    x = x * (params["peak"] / top) if top > 0 else x
    return cls, params, caption, qualifier, x.astype(np.float32)[None, :]


def synthetic_dataset(n_clips: int = 40, sample_rate: int = 16000, duration_s: float = 4.0,
                      seed: int = 0) -> ClipSet:
    """The built-in captioned set: classes round-robin, each clip determined by (seed, index)."""
    _check_int("n_clips", n_clips, 1)
    _check_int("sample_rate", sample_rate, 8000)
    _check_int("seed", seed, 0)
    if isinstance(duration_s, bool) or not isinstance(duration_s, (int, float)) \
            or not math.isfinite(duration_s) or duration_s <= 0:
        raise ConfigError(f"synthetic dataset: duration_s must be a number > 0, got {duration_s!r}")
    n_frames = int(round(duration_s * sample_rate))
    if n_frames < 1:
        raise ConfigError(f"synthetic dataset: duration_s={duration_s} is shorter than one sample at "
                          f"{sample_rate} Hz; use a longer duration")
    clips, index_of = [], {}
    for i in range(n_clips):
        cls, params, caption, qualifier, _ = _synthetic_clip(seed, i, sample_rate, n_frames, render=False)
        clip = ClipRef(f"synthetic-{i:04d}", caption, (cls, qualifier), None,
                       f"builtin:synthetic clip {i}", tuple(sorted(params.items())))
        clips.append(clip)
        index_of[clip.id] = i

    def synthesize(clip: ClipRef) -> tuple[np.ndarray, int]:
        return _synthetic_clip(seed, index_of[clip.id], sample_rate, n_frames, render=True)[4], sample_rate

    source = (f"builtin:synthetic?n_clips={n_clips}&sample_rate={sample_rate}"
              f"&duration_s={duration_s}&seed={seed}")
    return ClipSet("synthetic", "synthetic", source, clips, synthesize)


def _check_int(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"synthetic dataset: {name} must be an integer >= {minimum}, got {value!r}")


# ---------------------------------------------------------------------------------------- specs

_SPEC_KEYS = {"builtin": ("builtin", "n_clips", "sample_rate", "duration_s", "seed"),
              "manifest": ("manifest",), "directory": ("directory",)}


def open_clip_set(spec, base_dir: Path, require_audio: bool = True, where: str = "clip set") -> ClipSet:
    """Open a set from a suite spec: "builtin:synthetic", a path (folder or .jsonl/.csv manifest), or a
    table {"builtin": ..., params} | {"manifest": path} | {"directory": path}. `where` names the
    setting in error messages (e.g. "suite.toml [reference]")."""
    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
    if isinstance(spec, str):
        if spec.startswith("builtin:"):
            return _open_builtin(spec.removeprefix("builtin:"), {}, where)
        path = _resolve(spec, base_dir, where)
        if path.is_dir():
            return load_directory(path)
        if path.suffix.lower() in MANIFEST_FORMATS:
            return load_manifest(path, require_audio)
        raise ConfigError(f"{where}: {path} is neither a folder nor a manifest "
                          f"({', '.join(MANIFEST_FORMATS)})")
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: expected a path, \"builtin:synthetic\" or a table with one of "
                          f"{', '.join(_SPEC_KEYS)}; got {type(spec).__name__}")
    kinds = [k for k in _SPEC_KEYS if k in spec]
    if len(kinds) != 1:
        raise ConfigError(f"{where}: give exactly one of {', '.join(_SPEC_KEYS)}"
                          + (f" (got {', '.join(kinds)})" if kinds else f" (got keys {', '.join(spec)})"))
    kind = kinds[0]
    for key in spec:
        if key not in _SPEC_KEYS[kind]:
            raise ConfigError(f"{where}: unknown key {key!r} for a {kind} set; valid keys: "
                              f"{', '.join(_SPEC_KEYS[kind])}")
    if kind == "builtin":
        return _open_builtin(spec["builtin"], {k: v for k, v in spec.items() if k != "builtin"}, where)
    if not isinstance(spec[kind], str):
        raise ConfigError(f"{where}: {kind} must be a path string, got {spec[kind]!r}")
    path = _resolve(spec[kind], base_dir, where)
    if kind == "directory":
        return load_directory(path)
    return load_manifest(path, require_audio)


def _open_builtin(name, params: dict, where: str) -> ClipSet:
    if name not in BUILTIN_SETS:
        raise ConfigError(f"{where}: unknown built-in set {name!r}; built-in sets: {', '.join(BUILTIN_SETS)}")
    try:
        return synthetic_dataset(**params)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from e


def _resolve(value: str, base_dir: Path, where: str) -> Path:
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = Path(base_dir) / path
    if not path.exists():
        raise ConfigError(f"{where}: {value!r} does not exist (resolved to {path}; relative paths resolve "
                          f"against {base_dir})")
    return path


def open_training_set(spec, base_dir: Path):
    """A clip set from a suite spec or a CLI string; "builtin:synthetic?n_clips=140&seed=1" sets parameters."""
    if isinstance(spec, str) and spec.startswith("builtin:") and "?" in spec:
        name, _, query = spec.partition("?")
        params = {}
        for key, value in parse_qsl(query, strict_parsing=True):
            params[key] = float(value) if key == "duration_s" else int(value)
        spec = {"builtin": name.removeprefix("builtin:"), **params}
    return open_clip_set(spec, base_dir, where="training data")
