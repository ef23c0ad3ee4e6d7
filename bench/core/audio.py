"""Waveform conventions and audio file I/O.

A waveform is a numpy float32 array shaped [channels, frames]. Files are read and written with
soundfile (torchaudio cannot load on CPU-only installs here, see ENVIRONMENT.md). Everything that can
be wrong with a file or a generated waveform is reported as an AudioError naming where it came from.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from bench.core.errors import AudioError

SILENCE_PEAK = 1e-5  # -100 dBFS: below this a clip counts as silent
MONO_POLICIES = ("mean", "first")


def read_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Read an audio file as float32 [channels, frames] and its sample rate."""
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: audio file not found; check the path (relative manifest paths "
                         f"resolve against the manifest's folder)")
    if not path.is_file():
        raise AudioError(f"{path}: not a file; point to an audio file (wav, flac, ogg, mp3, opus)")
    try:
        data, sample_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError, ValueError, TypeError, OSError, EOFError) as e:
        raise AudioError(f"{path}: cannot decode audio ({e}); the file is corrupt or not in a format "
                         f"soundfile reads (wav, flac, ogg, mp3, opus): re-export or replace it") from e
    waveform = np.ascontiguousarray(data.T)
    if waveform.shape[1] == 0:
        raise AudioError(f"{path}: audio file is empty (0 frames); replace it or drop it from the set")
    _check_finite(waveform, str(path))
    return waveform, int(sample_rate)


def write_audio(path: str | os.PathLike, waveform: np.ndarray, sample_rate: int) -> None:
    """Write float32 WAV (bit-exact round trip), atomically: a reader never sees a partial file."""
    path = Path(path)
    if path.suffix.lower() != ".wav":
        raise AudioError(f"{path}: write_audio writes float WAV; give the path a .wav extension")
    check_waveform(waveform, str(path))
    if not isinstance(sample_rate, (int, np.integer)) or isinstance(sample_rate, bool) or sample_rate <= 0:
        raise AudioError(f"{path}: sample rate must be a positive integer, got {sample_rate!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        data = np.ascontiguousarray(waveform.T, dtype=np.float32)
        sf.write(tmp, data, int(sample_rate), format="WAV", subtype="FLOAT")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_waveform(waveform, where: str) -> None:
    """Raise AudioError (mentioning `where`) unless waveform is a finite float [channels, frames>0]."""
    if not isinstance(waveform, np.ndarray):
        raise AudioError(f"{where}: expected a numpy array [channels, frames], got {type(waveform).__name__}")
    if waveform.ndim != 2:
        raise AudioError(f"{where}: expected a 2-D waveform [channels, frames], got shape "
                         f"{waveform.shape}; use waveform[None] for mono 1-D audio")
    if not np.issubdtype(waveform.dtype, np.floating):
        raise AudioError(f"{where}: expected float samples in [-1, 1], got dtype {waveform.dtype}; "
                         f"convert integer PCM by dividing by its full scale")
    if waveform.shape[0] == 0 or waveform.shape[1] == 0:
        raise AudioError(f"{where}: waveform is empty (shape {waveform.shape}); need >= 1 channel "
                         f"and >= 1 frame")
    _check_finite(waveform, where)


def _check_finite(waveform: np.ndarray, where: str) -> None:
    bad = ~np.isfinite(waveform)
    if bad.any():
        first = int(np.argmax(bad.any(axis=0)))
        raise AudioError(f"{where}: {int(bad.sum())} non-finite samples (NaN or inf), first at frame "
                         f"{first}; fix the producer of this audio or drop the clip")


def peak(waveform: np.ndarray) -> float:
    """Largest absolute sample value (0.0 for an empty array)."""
    return float(np.max(np.abs(waveform))) if waveform.size else 0.0


def is_silent(waveform: np.ndarray) -> bool:
    return peak(waveform) < SILENCE_PEAK


def to_mono(waveform: np.ndarray, policy: str) -> np.ndarray:
    """[C, n] -> [1, n]: "mean" averages the channels, "first" keeps channel 0 (protocols differ)."""
    if policy == "mean":
        return waveform.mean(axis=0, keepdims=True, dtype=np.float64).astype(waveform.dtype)
    if policy == "first":
        return waveform[:1].copy()
    raise ValueError(f"unknown mono policy {policy!r}; known: {', '.join(MONO_POLICIES)}")


def pad_to_min_length(waveform: np.ndarray, n: int) -> np.ndarray:
    """Zero-pad at the end to at least n frames; longer waveforms are returned unchanged."""
    if n < 0:
        raise ValueError(f"length must be >= 0, got {n}")
    missing = n - waveform.shape[-1]
    if missing <= 0:
        return waveform
    return np.pad(waveform, [(0, 0)] * (waveform.ndim - 1) + [(0, missing)])

