"""Named resamplers. The resampler moves metric values (docs/protocols.md#shared-rules), so every result records which one.

- "soxr-vhq":   libsoxr, very high quality.
- "soxr-hq":    libsoxr, high quality, output length ceil(n * target / orig): librosa.load's default
                (res_type "soxr_hq", then fix_length), as stable-audio-metrics reads audio.
- "julius":     julius.resample_frac with its defaults, as audiocraft converts audio.
- "sinc-hann":  our float64 implementation of torchaudio.functional.resample's default algorithm
                (Hann-windowed sinc, lowpass_filter_width=6, rolloff=0.99); runs without torchaudio.
- "sinc-kaiser-best": the same algorithm with torchaudio's "kaiser_best" settings (Kaiser window, beta
                14.769656459379492, lowpass_filter_width=64, rolloff=0.9475937167399596), float64: how fadtk
                resamples every file (fadtk/fad.py, FrechetAudioDistance.load_audio).
- "torchaudio": torchaudio.functional.resample itself, where torchaudio loads (on CPU-only torch without
                its compiled extension: bench.core.torch_compat.ensure_torchaudio_importable).
- "resampy-kaiser-best": resampy's kaiser_best filter, output length ceil(n * target / orig): librosa<0.10's
                load default, as Diffsound / SpecVQGAN read audio (librosa 0.8 + resampy).
"""
from __future__ import annotations

import math
from importlib import metadata

import numpy as np

from bench.core.audio import check_waveform
from bench.core.errors import BenchError, ConfigError

RESAMPLERS = ("soxr-vhq", "julius", "sinc-hann", "torchaudio", "soxr-hq", "resampy-kaiser-best", "sinc-kaiser-best")
NO_RESAMPLING = "none"  # e.g. a suite's `resampler = "none"`: equal rates pass, anything else is refused

SINC_HANN_VERSION = "1"  # bump when the sinc-hann output changes
SINC_HANN_PARAMS = {"lowpass_filter_width": 6, "rolloff": 0.99, "window": "hann"}
SINC_KAISER_VERSION = "1"  # bump when the sinc-kaiser-best output changes
SINC_KAISER_PARAMS = {"lowpass_filter_width": 64, "rolloff": 0.9475937167399596, "window": "kaiser",
                      "beta": 14.769656459379492}
_MAX_KERNEL_TAPS = 20_000_000  # phases x taps; beyond this the polyphase matrix is too large
_FRAMES_PER_BLOCK = 16384      # bounds the memory of the strided convolution


def resample(waveform: np.ndarray, orig_sr: int, target_sr: int, method: str, dtype=np.float32) -> np.ndarray:
    """Resample float [C, n] from orig_sr to target_sr; returns the input itself when rates match. The output
    is float32 unless `dtype=np.float64`, which keeps a float64 input in float64 through "soxr-hq" and
    "resampy-kaiser-best" (toolkits that resample in float64, e.g. openl3 on pyloudnorm's output)."""
    if method != NO_RESAMPLING:
        _check_method(method)
    for name, rate in (("orig_sr", orig_sr), ("target_sr", target_sr)):
        if not isinstance(rate, (int, np.integer)) or isinstance(rate, bool) or rate <= 0:
            raise ConfigError(f"resample: {name} must be a positive integer, got {rate!r}")
    orig_sr, target_sr = int(orig_sr), int(target_sr)
    if orig_sr == target_sr:
        return waveform
    if method == NO_RESAMPLING:
        raise ConfigError(f"{orig_sr} Hz audio would have to be resampled to {target_sr} Hz, but the resampler is "
                          f"{NO_RESAMPLING!r} (resampling refused); use matching rates or name a resampler")
    check_waveform(waveform, f"resample input ({orig_sr} -> {target_sr} Hz, {method})")
    if np.dtype(dtype) not in (np.float32, np.float64):
        raise ValueError(f"resample: dtype must be float32 or float64, got {dtype!r}")
    if np.dtype(dtype) == np.float64 and method not in ("soxr-hq", "resampy-kaiser-best"):
        raise ValueError(f"resample: float64 output is only kept by soxr-hq and resampy-kaiser-best, not {method!r}")
    out = _METHODS[method](waveform, orig_sr, target_sr)
    return np.ascontiguousarray(out, dtype=dtype)


def resampler_info(method: str) -> dict:
    """What a result record says about the resampler: name, library, its version, parameters."""
    _check_method(method)
    if method == "soxr-vhq":
        return {"name": method, "library": "soxr", "library_version": _version("soxr"),
                "params": {"quality": "VHQ"}}
    if method == "soxr-hq":
        return {"name": method, "library": "soxr", "library_version": _version("soxr"),
                "params": {"quality": "HQ", "output_length": "ceil (zero-padded or cut, as librosa)"}}
    if method == "resampy-kaiser-best":
        return {"name": method, "library": "resampy", "library_version": _version("resampy"),
                "params": {"filter": "kaiser_best", "output_length": "ceil (zero-padded, as librosa.load)"}}
    if method == "julius":
        return {"name": method, "library": "julius", "library_version": _version("julius"),
                "params": {"zeros": 24, "rolloff": 0.945, "output_length": "floor"}}
    if method == "sinc-hann":
        return {"name": method, "library": "bench.core.resample", "library_version": SINC_HANN_VERSION,
                "params": {**SINC_HANN_PARAMS, "precision": "float64", "output_length": "ceil"}}
    if method == "sinc-kaiser-best":
        return {"name": method, "library": "bench.core.resample", "library_version": SINC_KAISER_VERSION,
                "params": {**SINC_KAISER_PARAMS, "precision": "float64", "output_length": "ceil"}}
    return {"name": method, "library": "torchaudio", "library_version": _version("torchaudio"),
            "params": {**SINC_HANN_PARAMS, "resampling_method": "sinc_interp_hann"}}


def _check_method(method: str) -> None:
    if method not in RESAMPLERS:
        raise ConfigError(f"unknown resampler {method!r}; known: {', '.join(RESAMPLERS)}")


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _soxr(waveform: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    import soxr

    # soxr takes [frames, channels]; resampling channels separately gives the same result.
    return np.stack([soxr.resample(ch, orig_sr, target_sr, quality="VHQ") for ch in waveform])


def _soxr_hq(waveform: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    import soxr

    # librosa fixes soxr's rounded length to ceil(n * ratio) with ratio = target / orig in floating point,
    # which can exceed the exact ceiling by one (2.5 s at 44.1 kHz -> 120001 samples at 48 kHz).
    n = int(np.ceil(waveform.shape[-1] * (float(target_sr) / orig_sr)))
    out = np.stack([soxr.resample(ch, orig_sr, target_sr, quality="HQ") for ch in waveform])[:, :n]
    return np.pad(out, [(0, 0), (0, n - out.shape[1])])


def _resampy_kaiser_best(waveform: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    import resampy  # installed with frechet-audio-distance

    n = -(-waveform.shape[-1] * target_sr // orig_sr)  # librosa pads resampy's floor length to the ceiling
    x = np.ascontiguousarray(waveform, np.float64 if waveform.dtype == np.float64 else np.float32)
    out = resampy.resample(x, orig_sr, target_sr, filter="kaiser_best", axis=-1)[:, :n]
    return np.pad(out, [(0, 0), (0, n - out.shape[1])])


def _julius(waveform: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    import julius
    import torch

    x = torch.from_numpy(np.ascontiguousarray(waveform, dtype=np.float32))
    with torch.no_grad():
        return julius.resample_frac(x, orig_sr, target_sr).numpy()


def _torchaudio(waveform: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    from bench.core.torch_compat import ensure_torchaudio_importable

    try:
        # resample is pure Python: on CPU-only torch it runs with the CUDA wheel's extension left out.
        ensure_torchaudio_importable()
        import torchaudio.functional as taf
    except (ImportError, OSError, RuntimeError) as e:
        raise BenchError(f"resampler 'torchaudio' is unavailable: torchaudio cannot load here ({e}); the "
                         f"registry only has CUDA builds, which fail on CPU-only torch. Use resampler "
                         f"'sinc-hann', the same algorithm and defaults implemented without torchaudio") from e
    import torch

    x = torch.from_numpy(np.ascontiguousarray(waveform, dtype=np.float32))
    with torch.no_grad():
        return taf.resample(x, orig_sr, target_sr).numpy()


def _sinc_hann_width(orig: int, new: int, lowpass_filter_width: int, rolloff: float) -> int:
    """Taps on each side: lowpass_filter_width zero crossings of the cutoff sinc, in input samples."""
    return math.ceil(lowpass_filter_width * orig / (min(orig, new) * rolloff))


def sinc_hann_kernels(orig: int, new: int, lowpass_filter_width: int = 6,
                      rolloff: float = 0.99, beta: float | None = None) -> tuple[np.ndarray, int]:
    """Polyphase kernels [new, 2*width + orig] (float64) and width, for rates already reduced by gcd;
    Hann-windowed, or Kaiser-windowed with `beta` (torchaudio's sinc_interp_kaiser)."""
    base_freq = min(orig, new) * rolloff  # cutoff below the lower Nyquist, in reduced units
    width = _sinc_hann_width(orig, new, lowpass_filter_width, rolloff)
    # t: distance between input tap k and output phase j, in units of the cutoff period
    t = (np.arange(-width, width + orig)[None, :] / orig - np.arange(new)[:, None] / new) * base_freq
    t = np.clip(t, -lowpass_filter_width, lowpass_filter_width)
    if beta is None:
        window = np.cos(t * np.pi / lowpass_filter_width / 2) ** 2
    else:
        window = np.i0(beta * np.sqrt(np.clip(1 - (t / lowpass_filter_width) ** 2, 0.0, None))) / np.i0(beta)
    t = t * np.pi
    with np.errstate(invalid="ignore", divide="ignore"):
        sinc = np.where(t == 0, 1.0, np.sin(t) / t)
    return sinc * window * (base_freq / orig), width


def _sinc_hann(waveform: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    return _windowed_sinc(waveform, orig_sr, target_sr, "sinc-hann", SINC_HANN_PARAMS)


def _sinc_kaiser_best(waveform: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    return _windowed_sinc(waveform, orig_sr, target_sr, "sinc-kaiser-best", SINC_KAISER_PARAMS)


def _windowed_sinc(waveform: np.ndarray, orig_sr: int, target_sr: int, name: str, params: dict) -> np.ndarray:
    g = math.gcd(orig_sr, target_sr)
    orig, new = orig_sr // g, target_sr // g
    lpw, rolloff = params["lowpass_filter_width"], params["rolloff"]
    n_taps = 2 * _sinc_hann_width(orig, new, lpw, rolloff) + orig
    if new * n_taps > _MAX_KERNEL_TAPS:
        raise ConfigError(f"resampler {name!r}: {orig_sr} -> {target_sr} Hz reduces to {orig}:{new}, "
                          f"whose polyphase kernel ({new} x {n_taps}) is too large; use 'soxr-vhq'")
    kernels, width = sinc_hann_kernels(orig, new, lpw, rolloff, params.get("beta"))
    n = waveform.shape[-1]
    x = np.pad(waveform.astype(np.float64), [(0, 0), (width, width + orig)])
    # Strided convolution: frame i sees x[i*orig : i*orig + taps] and yields `new` output samples.
    windows = np.lib.stride_tricks.sliding_window_view(x, kernels.shape[1], axis=-1)[:, ::orig]
    blocks = [windows[:, i:i + _FRAMES_PER_BLOCK] @ kernels.T
              for i in range(0, windows.shape[1], _FRAMES_PER_BLOCK)]
    out = np.concatenate(blocks, axis=1).reshape(waveform.shape[0], -1)  # interleave phases
    return out[:, :-(-new * n // orig)]  # ceil(new * n / orig) samples


_METHODS = {"soxr-vhq": _soxr, "julius": _julius, "sinc-hann": _sinc_hann, "torchaudio": _torchaudio,
            "soxr-hq": _soxr_hq, "resampy-kaiser-best": _resampy_kaiser_best, "sinc-kaiser-best": _sinc_kaiser_best}


class SincHannStream:
    """"sinc-hann" resampling fed block by block, for clips too long to hold whole.

    The output equals `resample(x, orig_sr, target_sr, "sinc-hann")` on the whole signal sample for sample:
    the same kernels, frames and matrix blocks of _FRAMES_PER_BLOCK frames (so the same arithmetic), while
    only about one block of input is held. `push` returns the output samples that are final so far,
    `finish` the rest (float32 [channels, m])."""

    def __init__(self, orig_sr: int, target_sr: int):
        self.passthrough = orig_sr == target_sr  # as resample(): equal rates return the input itself
        g = math.gcd(orig_sr, target_sr)
        self.orig, self.new = orig_sr // g, target_sr // g
        lpw, rolloff = SINC_HANN_PARAMS["lowpass_filter_width"], SINC_HANN_PARAMS["rolloff"]
        n_taps = 2 * _sinc_hann_width(self.orig, self.new, lpw, rolloff) + self.orig
        if self.new * n_taps > _MAX_KERNEL_TAPS:
            raise ConfigError(f"resampler 'sinc-hann': {orig_sr} -> {target_sr} Hz reduces to {self.orig}:"
                              f"{self.new}, whose polyphase kernel is too large; use 'soxr-vhq'")
        self.kernels, self.width = sinc_hann_kernels(self.orig, self.new, lpw, rolloff)
        self.taps = self.kernels.shape[1]
        self.buffer: np.ndarray | None = None  # padded input from frame `self.frame` on
        self.frame = 0  # index of the next output frame (each frame yields `new` samples)
        self.n_in = 0

    def push(self, block: np.ndarray) -> np.ndarray:
        if self.passthrough:
            self.channels = block.shape[0]
            return block
        block = block.astype(np.float64)
        if self.buffer is None:
            self.buffer = np.zeros((block.shape[0], self.width))
        self.buffer = np.concatenate([self.buffer, block], axis=1)
        self.n_in += block.shape[1]
        return self._frames(final=False)

    def finish(self) -> np.ndarray:
        if self.passthrough:
            return np.zeros((getattr(self, "channels", 1), 0), np.float32)
        if self.buffer is None:
            raise ConfigError("sinc-hann stream: no input was pushed")
        self.buffer = np.concatenate([self.buffer, np.zeros((self.buffer.shape[0], self.width + self.orig))], 1)
        out = self._frames(final=True)
        done = self.frame * self.new  # everything up to here has been returned
        excess = done - (-(-self.new * self.n_in // self.orig))  # the whole-signal output stops at the ceiling
        return out[:, :out.shape[1] - excess] if excess > 0 else out

    def _frames(self, final: bool) -> np.ndarray:
        pieces = []
        while True:
            available = (self.buffer.shape[1] - self.taps) // self.orig + 1 if self.buffer.shape[1] >= self.taps else 0
            count = min(_FRAMES_PER_BLOCK, available) if final else _FRAMES_PER_BLOCK
            if count <= 0 or count > available:
                break
            segment = self.buffer[:, :(count - 1) * self.orig + self.taps]
            windows = np.lib.stride_tricks.sliding_window_view(segment, self.taps, axis=-1)[:, ::self.orig]
            pieces.append((windows @ self.kernels.T).reshape(self.buffer.shape[0], -1))
            self.buffer = self.buffer[:, count * self.orig:].copy()
            self.frame += count
        if not pieces:
            return np.zeros((self.buffer.shape[0], 0), np.float32)
        return np.concatenate(pieces, axis=1).astype(np.float32)
