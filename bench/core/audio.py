"""Waveform conventions and audio file I/O.

A waveform is a numpy float32 array shaped [channels, frames]. Files are read and written with
soundfile (torchaudio cannot load on CPU-only installs here, see ENVIRONMENT.md). Everything that can
be wrong with a file or a generated waveform is reported as an AudioError naming where it came from.
"""
from __future__ import annotations

import os
import re
import stat
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf

from bench.core.errors import AudioError

SILENCE_PEAK = 1e-5  # -100 dBFS: below this a clip counts as silent
MONO_POLICIES = ("mean", "first")
# The one list of file extensions read as audio (any case): the containers libsndfile (soundfile) decodes.
AUDIO_EXTENSIONS = (".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc",
                    ".au", ".snd", ".caf", ".w64", ".rf64")
BLOCK_FRAMES = 1 << 18  # frames per block when a long file is streamed (about 6 s at 44.1 kHz)
# A file with more samples (frames x channels) than this is never decoded whole where a streaming path
# exists (hashing; protocols with `stream`): 8.4M samples, 95 s of 44.1 kHz stereo, 32 MB as float32.
LONG_CLIP_SAMPLES = 1 << 23
MAX_WHOLE_SAMPLES = 1 << 30  # read_audio refuses to decode more at once (4 GiB of float32)
_DECODE_ERRORS = (sf.SoundFileError, RuntimeError, ValueError, TypeError, OSError, EOFError)
_SHOULD_BE = re.compile(r"(\d+)\s*\(should be (\d+)\)")


def is_audio_name(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in AUDIO_EXTENSIONS


def _check_is_file(path: Path) -> None:
    if not os.path.lexists(path):
        raise AudioError(f"{path}: audio file not found; check the path (relative manifest paths "
                         f"resolve against the manifest's folder)")
    if not path.exists():
        raise AudioError(f"{path}: dangling symbolic link (to {os.readlink(path)}); fix or remove the link")
    mode = path.stat().st_mode
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "not a regular file"
        raise AudioError(f"{path}: {kind}, not an audio file; point to a file "
                         f"({', '.join(AUDIO_EXTENSIONS)}) or remove it")


def _open(path: Path) -> sf.SoundFile:
    _check_is_file(path)
    try:
        f = sf.SoundFile(str(path))
    except _DECODE_ERRORS as e:
        raise _corrupt(path, e) from e
    if f.frames == 0:
        f.close()
        raise AudioError(f"{path}: audio file is empty (0 frames); replace it or drop it from the set")
    # libsndfile clamps the frame count of a truncated file to what is present and says so in its log:
    # "data : 135156 (should be 67556)". A header promising more than the file holds is a corrupt file.
    for claimed, present in _SHOULD_BE.findall(f.extra_info):
        if int(present) < int(claimed):
            f.close()
            raise AudioError(f"{path}: truncated: the header promises {claimed} bytes, the file holds "
                             f"{present}; the file is corrupt (an interrupted copy or write): re-export or "
                             f"replace it")
    return f


def _corrupt(path: Path, e: Exception) -> AudioError:
    return AudioError(f"{path}: cannot decode audio ({e}); the file is corrupt or not in a format soundfile "
                      f"reads ({', '.join(AUDIO_EXTENSIONS)}): re-export or replace it")


def _short_read(path: Path, read: int, expected: int) -> AudioError:
    return AudioError(f"{path}: truncated: the header says {expected} frames, only {read} could be decoded; the "
                      f"file is corrupt: re-export or replace it")


def audio_info(path: str | os.PathLike) -> tuple[int, int, int]:
    """(frames, sample rate, channels) from the file's header, with the checks read_audio makes."""
    path = Path(path)
    with _open(path) as f:
        return int(f.frames), int(f.samplerate), int(f.channels)


def read_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Read an audio file as float32 [channels, frames] and its sample rate."""
    path = Path(path)
    with _open(path) as f:
        if f.frames * f.channels > MAX_WHOLE_SAMPLES:  # a decompression bomb or a corrupt header
            raise AudioError(f"{path}: would decode to {f.frames * f.channels * 4 / 2 ** 30:.1f} GiB "
                             f"({f.frames} frames x {f.channels} channels); too large to decode whole: cut it "
                             f"into parts")
        try:
            data = f.read(dtype="float32", always_2d=True)
        except _DECODE_ERRORS as e:
            raise _corrupt(path, e) from e
        if len(data) < f.frames:
            raise _short_read(path, len(data), f.frames)
        sample_rate = f.samplerate
    waveform = np.ascontiguousarray(data.T)
    _check_finite(waveform, str(path))
    return waveform, int(sample_rate)


def read_blocks(path: str | os.PathLike, block_frames: int = BLOCK_FRAMES) -> Iterator[np.ndarray]:
    """The file's audio as consecutive float32 [channels, <= block_frames] blocks, checked like read_audio
    (finite samples, no short read), holding one block in memory at a time."""
    path = Path(path)
    with _open(path) as f:
        done = 0
        while done < f.frames:
            try:
                data = f.read(min(block_frames, f.frames - done), dtype="float32", always_2d=True)
            except _DECODE_ERRORS as e:
                raise _corrupt(path, e) from e
            if len(data) == 0:
                raise _short_read(path, done, f.frames)
            block = np.ascontiguousarray(data.T)
            _check_finite(block, str(path), offset=done)
            done += block.shape[1]
            yield block


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


def _check_finite(waveform: np.ndarray, where: str, offset: int = 0) -> None:
    bad = ~np.isfinite(waveform)
    if bad.any():
        first = offset + int(np.argmax(bad.any(axis=0)))
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

