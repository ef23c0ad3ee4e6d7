"""The built-in captioned reference set: seven classes of synthesised sounds, each clip determined by
(seed, index), so the set is identical on every machine and needs no download."""
from __future__ import annotations

import math

import numpy as np

from bench.core.clipsets import ClipRef, ClipSet
from bench.core.errors import ConfigError

BUILTIN_SETS = ("synthetic",)

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
