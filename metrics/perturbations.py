"""Perturbations for metric sanity checks (Diffsound V-C): degrade clean audio by a known amount.

Each perturbation is a small pure function `fn(x, rate, level, rng, clip) -> y` on float64 [channels, n]
samples, registered with what its level means: unit, the identity level (audio unchanged), defaults,
the valid range, which way is "stronger", and what a metric is expected to do by default ("degrade",
"invariant" or "any"; metrics override per perturbation in MetricDef.expected_sensitivity).

Randomness comes only from a numpy Generator seeded by (seed, clip index, perturbation name), never from
the level: the same noise draw, mask order or interferer is scaled up as the level grows, so curves
are smooth and nested (what level 0.5 masks contains what level 0.25 masks). Adding a perturbation is
one function plus its `@perturbation(...)` registration; plugins use entry-point group
"bench.perturbations".
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from functools import cached_property
from typing import Callable

import numpy as np

from bench.core.errors import ConfigError
from bench.core.registry import Registry
from bench.core.resample import resample

EXPECTATIONS = ("degrade", "invariant", "any")
STRENGTH_ORDERS = ("higher", "lower", "farther")  # stronger = higher level | lower level | farther from identity


@dataclass
class SetContext:
    """What a perturbation may know beyond its own clip: the set's size, its clean clips, its seeds."""

    name: str
    seed: int
    n_clips: int
    load: Callable[[int], tuple[np.ndarray, int]]  # clean clip j -> (float32 [C, n], rate)

    def rng(self, index: int) -> np.random.Generator:
        """The only source of randomness: seeded by (seed, clip index, perturbation name)."""
        name_key = int.from_bytes(hashlib.sha256(self.name.encode()).digest()[:4], "little")
        return np.random.default_rng([self.seed, index, name_key])

    @cached_property
    def ranks(self) -> np.ndarray:
        """Each clip's rank among one uniform draw per clip (from its own rng): the k lowest ranks pick
        exactly k clips, the same ones whatever order clips are processed in, nested as k grows."""
        draws = np.array([self.rng(j).random() for j in range(self.n_clips)])
        return np.argsort(np.argsort(draws, kind="stable"), kind="stable")


@dataclass(frozen=True)
class ClipContext:
    index: int
    set: SetContext


@dataclass(frozen=True)
class Perturbation:
    name: str
    fn: Callable  # (x float64 [C, n], rate, level, rng, clip: ClipContext) -> float64 [C, n]
    unit: str  # how levels are written, e.g. "dB SNR"
    meaning: str  # what a level does, in words
    identity: float  # the level that leaves the audio unchanged
    defaults: tuple[float, ...]  # default levels, identity first, weakest to strongest
    valid: tuple[float, float]  # inclusive range of levels
    stronger: str  # "higher", "lower" or "farther" (from identity)
    expect: str  # default expectation for every metric: "degrade", "invariant" or "any"
    integer: bool = False  # finite levels must be whole numbers (sample rates)
    notes: str = ""  # edge cases (silent clips, ...)

    def strength(self, level: float) -> float:
        if self.stronger == "higher":
            return level
        if self.stronger == "lower":
            return -level
        return abs(level - self.identity)

    def check_levels(self, levels) -> tuple[float, ...]:
        """Levels as floats, validated; a ConfigError names the perturbation, the level and the range."""
        out = []
        lo, hi = self.valid
        for level in levels:
            try:
                value = float(level)
            except (TypeError, ValueError):
                raise ConfigError(f"perturbation {self.name!r}: level {level!r} is not a number") from None
            if math.isnan(value) or not lo <= value <= hi:
                raise ConfigError(f"perturbation {self.name!r}: level {level!r} is outside the valid range "
                                  f"[{format_level(lo)}, {format_level(hi)}] ({self.unit}: {self.meaning})")
            if self.integer and math.isfinite(value) and value != int(value):
                raise ConfigError(f"perturbation {self.name!r}: level {level!r} must be a whole number "
                                  f"({self.unit})")
            out.append(value)
        if len(set(out)) != len(out):
            raise ConfigError(f"perturbation {self.name!r}: levels repeat: {list(levels)}")
        return tuple(out)

    def order(self, levels) -> tuple[float, ...]:
        """Validated levels with the identity included, weakest first."""
        levels = set(self.check_levels(levels)) | {self.identity}
        return tuple(sorted(levels, key=lambda v: (self.strength(v), v)))

    def describe(self) -> dict:
        return {"name": self.name, "unit": self.unit, "meaning": self.meaning,
                "identity": format_level(self.identity), "defaults": [format_level(v) for v in self.defaults],
                "valid": [format_level(v) for v in self.valid], "stronger": self.stronger, "expect": self.expect,
                "notes": self.notes}


def format_level(value: float):
    """Levels for JSON and tables: inf as the string "inf", whole numbers as ints."""
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return int(value) if value == int(value) else value


# name -> Perturbation; plugins: entry-point group "bench.perturbations".
PERTURBATIONS = Registry("perturbation", ("metrics.perturbations",), "bench.perturbations")


def perturbation(name: str, *, unit: str, meaning: str, identity: float, defaults: tuple, valid: tuple,
                 stronger: str, expect: str, integer: bool = False, notes: str = ""):
    """Decorator: register `fn(x, rate, level, rng, clip)` as the perturbation `name`."""
    if stronger not in STRENGTH_ORDERS or expect not in EXPECTATIONS:
        raise ValueError(f"perturbation {name!r}: stronger must be one of {STRENGTH_ORDERS} and expect one "
                         f"of {EXPECTATIONS}")
    if defaults[0] != identity:
        raise ValueError(f"perturbation {name!r}: the first default level must be the identity {identity}")

    def wrap(fn):
        PERTURBATIONS.add(name, Perturbation(name, fn, unit, meaning, float(identity),
                                             tuple(float(v) for v in defaults),
                                             (float(valid[0]), float(valid[1])), stronger, expect, integer,
                                             notes))
        return fn

    return wrap


def get_perturbation(name: str) -> Perturbation:
    return PERTURBATIONS.lookup(name)


def all_perturbations() -> dict[str, Perturbation]:
    return PERTURBATIONS.load()


def apply(p: Perturbation, waveform: np.ndarray, rate: int, level: float, index: int,
          context: SetContext) -> np.ndarray:
    """Perturb clip `index` (float32 [C, n]) at `level`; float32 out, same shape. Identity is exact."""
    level = float(level)
    if level == p.identity:
        return waveform
    y = p.fn(waveform.astype(np.float64), rate, level, context.rng(index), ClipContext(index, context))
    if y.shape != waveform.shape:
        raise AssertionError(f"perturbation {p.name!r} changed the shape {waveform.shape} -> {y.shape}")
    return np.ascontiguousarray(y, dtype=np.float32)


def _power(x: np.ndarray) -> float:
    return float(np.mean(x * x))


# ---------------------------------------------------------------------------------------- the perturbations

@perturbation("noise", unit="dB SNR", identity=math.inf, defaults=(math.inf, 40, 30, 20, 10, 0),
              valid=(-40, math.inf), stronger="lower", expect="degrade",
              meaning="white Gaussian noise added at this signal-to-noise ratio (power over all channels)",
              notes="silent clips stay silent (their SNR is undefined)")
def add_noise(x, rate, level, rng, clip):
    signal = _power(x)
    if signal == 0:
        return x
    noise = rng.standard_normal(x.shape)
    # Scale the drawn noise itself (not its expected power) so the measured SNR is exactly the level.
    noise *= math.sqrt(signal / 10 ** (level / 10) / _power(noise))
    return x + noise


MASK_SEGMENT_S = 0.1


@perturbation("mask", unit="fraction of time zeroed", identity=0, defaults=(0, 0.1, 0.25, 0.5, 0.75),
              valid=(0, 1), stronger="higher", expect="degrade",
              meaning=f"round(level * n) samples zeroed, as {MASK_SEGMENT_S:g} s segments in random order "
                      "(the last one partly)")
def mask(x, rate, level, rng, clip):
    n = x.shape[1]
    todo = round(level * n)
    segment = max(1, round(MASK_SEGMENT_S * rate))
    y = x.copy()
    for start in rng.permutation(-(-n // segment)) * segment:  # the order does not depend on the level
        if todo <= 0:
            break
        length = min(segment, n - start, todo)
        y[:, start:start + length] = 0
        todo -= length
    return y


def _match(other: np.ndarray, other_rate: int, channels: int, n: int, rate: int) -> np.ndarray:
    """The interferer at the clip's rate, channel count and length (mono-mixed if channels differ,
    looped if shorter)."""
    if other_rate != rate:
        other = resample(other.astype(np.float32), other_rate, rate, "soxr-vhq").astype(np.float64)
    if other.shape[0] != channels:
        other = np.repeat(other.mean(axis=0, keepdims=True), channels, axis=0)
    return np.tile(other, (1, -(-n // other.shape[1])))[:, :n]


@perturbation("mix", unit="dB SIR", identity=math.inf, defaults=(math.inf, 30, 20, 10, 5, 0),
              valid=(0, math.inf), stronger="lower", expect="degrade",
              meaning="another clip of the set (uniformly drawn) added at this signal-to-interference ratio",
              notes="below 0 dB the interferer dominates and the set becomes a shuffled copy of itself, "
                    "so the range stops at 0 dB; silent clips or silent interferers leave the clip as is")
def mix(x, rate, level, rng, clip):
    n_clips = clip.set.n_clips
    if n_clips < 2:
        raise ConfigError("perturbation 'mix' needs a set of at least 2 clips (the interferer comes from "
                          "elsewhere in the set)")
    j = (clip.index + 1 + int(rng.integers(n_clips - 1))) % n_clips  # any clip but this one
    other, other_rate = clip.set.load(j)
    z = _match(other.astype(np.float64), other_rate, x.shape[0], x.shape[1], rate)
    signal, interference = _power(x), _power(z)
    if signal == 0 or interference == 0:
        return x
    return x + z * math.sqrt(signal / 10 ** (level / 10) / interference)


@perturbation("silence", unit="fraction of clips silenced", identity=0, defaults=(0, 0.1, 0.25, 0.5, 1.0),
              valid=(0, 1), stronger="higher", expect="degrade",
              meaning="round(level * n_clips) whole clips replaced by digital silence (the same clips at "
                      "every seed-level pair, nested as the level grows)",
              notes="audioldm_eval notes that silent generations can score well on some metrics")
def silence(x, rate, level, rng, clip):
    chosen = clip.set.ranks[clip.index] < round(level * clip.set.n_clips)
    return np.zeros_like(x) if chosen else x


LOWPASS_ORDER = 8


@perturbation("lowpass", unit="Hz cutoff", identity=math.inf, defaults=(math.inf, 4000, 2000, 1000, 500),
              valid=(20, math.inf), stronger="lower", expect="degrade",
              meaning=f"zero-phase Butterworth low-pass (order {LOWPASS_ORDER}, run forward and backward: "
                      "-6 dB at the cutoff)",
              notes="a cutoff at or above the clip's Nyquist frequency leaves it unchanged")
def lowpass(x, rate, level, rng, clip):
    from scipy.signal import butter, sosfiltfilt

    if level >= rate / 2:
        return x
    sos = butter(LOWPASS_ORDER, level, btype="low", fs=rate, output="sos")
    return sosfiltfilt(sos, x, axis=-1, padlen=min(x.shape[1] - 1, 3 * (2 * len(sos) + 1)))


@perturbation("clipping", unit="threshold / peak", identity=1, defaults=(1, 0.5, 0.25, 0.1, 0.05),
              valid=(0.001, 1), stronger="lower", expect="degrade",
              meaning="hard clipping at this fraction of the clip's peak (no make-up gain)")
def clipping(x, rate, level, rng, clip):
    limit = level * float(np.max(np.abs(x)))
    return np.clip(x, -limit, limit)


@perturbation("time-shift", unit="ms delay", identity=0, defaults=(0, 5, 10, 20, 50),
              valid=(0, math.inf), stronger="higher", expect="invariant",
              meaning="content delayed by round(level/1000 * rate) samples: zeros in front, the tail cut "
                      "(length kept)",
              notes="a generation that starts a few ms late is as good; set metrics should not react")
def time_shift(x, rate, level, rng, clip):
    d = min(round(level / 1000 * rate), x.shape[1])
    y = np.zeros_like(x)
    y[:, d:] = x[:, :x.shape[1] - d]
    return y


@perturbation("gain", unit="dB", identity=0, defaults=(0, -6, -12, -24, -40),
              valid=(-120, 40), stronger="farther", expect="any",
              meaning="every sample multiplied by 10^(level/20)",
              notes="whether a metric should ignore loudness depends on its protocol (peak-normalising "
                    "presets should): declared per metric")
def gain(x, rate, level, rng, clip):
    return x * 10 ** (level / 20)


@perturbation("resample", unit="Hz intermediate rate", identity=math.inf,
              defaults=(math.inf, 16000, 8000, 4000, 2000), valid=(1000, math.inf), stronger="lower",
              expect="degrade", integer=True,
              meaning="resampled down to this rate and back (soxr VHQ), length kept: removes content above "
                      "half the intermediate rate",
              notes="a rate at or above the clip's own leaves it unchanged")
def resample_down_up(x, rate, level, rng, clip):
    low = int(level)
    if low >= rate:
        return x
    down = resample(x.astype(np.float32), rate, low, "soxr-vhq")
    back = resample(down, low, rate, "soxr-vhq").astype(np.float64)
    n = x.shape[1]
    return back[:, :n] if back.shape[1] >= n else np.pad(back, [(0, 0), (0, n - back.shape[1])])
