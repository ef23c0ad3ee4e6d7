"""The Generator contract every reference system and baseline follows.

Parameters travel with every call (never set statefully). Randomness comes only from one CPU
torch.Generator per sample, seeded from (seed, prompt index, sample index), so a sample does not depend
on batch size, batch order or device.
"""
from __future__ import annotations

import hashlib
import importlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import torch

from bench.core.errors import ConfigError
from bench.core.registry import Registry


@dataclass(frozen=True)
class Prompt:
    id: str
    text: str
    index: int  # position in the full prompt set; part of the per-sample seed
    # Further captions of the prompt's reference audio: carried to the generated set for caption
    # metrics; never a generation input.
    references: tuple[str, ...] = ()


@dataclass(frozen=True)
class GenerationRequest:
    prompts: tuple[Prompt, ...]
    seed: int | None  # None: generators that return existing audio (no randomness)
    duration_s: float | None  # None: the audio's own duration (existing-audio generators only)
    sample_rate: int | None  # None: each clip at its native rate (existing-audio generators only)
    steps: int | None = None
    guidance: float | None = None
    samples_per_prompt: int = 1
    options: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.prompts:
            raise ConfigError("generation request has an empty prompt list")
        problems = generation_problems(self.duration_s, self.sample_rate, self.steps, self.samples_per_prompt,
                                       self.guidance, self.seed)
        if problems:
            raise ConfigError(problems[0])


def generation_problems(duration_s, sample_rate, steps=None, samples_per_prompt=1, guidance=None,
                        seed=0) -> list[str]:
    """What is wrong with these generation values (empty: nothing); checked for every request and, for a
    whole suite grid, when the suite loads. None for duration, rate or seed: existing audio, taken as it is."""
    problems = []
    if duration_s is not None and (not duration_s > 0 or not math.isfinite(duration_s)):
        problems.append(f"duration_s must be > 0, got {duration_s}")
    if sample_rate is not None and sample_rate <= 0:
        problems.append(f"sample_rate must be > 0, got {sample_rate}")
    if steps is not None and steps <= 0:
        problems.append(f"steps must be > 0, got {steps}")
    if samples_per_prompt < 1:
        problems.append(f"samples_per_prompt must be >= 1, got {samples_per_prompt}")
    if guidance is not None and not math.isfinite(guidance):
        problems.append(f"guidance must be a finite number, got {guidance}")
    if seed is not None and seed < 0:
        problems.append(f"seed must be >= 0, got {seed}")
    return problems


@dataclass
class GeneratedAudio:
    prompt_id: str
    sample_index: int
    waveform: np.ndarray  # float32 [channels, n]
    sample_rate: int
    metadata: dict


class Generator(Protocol):
    name: str
    version: str
    native_sample_rates: tuple[int, ...] | None  # None: any rate natively
    max_duration_s: float | None
    uses_steps: bool
    uses_guidance: bool

    def generate(self, request: GenerationRequest) -> list[GeneratedAudio]: ...


def sample_seed(seed: int, prompt_index: int, sample_index: int) -> int:
    digest = hashlib.sha256(f"{seed}/{prompt_index}/{sample_index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def sample_rng(seed: int, prompt_index: int, sample_index: int) -> torch.Generator:
    """The one source of randomness for one sample."""
    return torch.Generator(device="cpu").manual_seed(sample_seed(seed, prompt_index, sample_index))


def check_request(generator: Generator, request: GenerationRequest) -> None:
    """Refuse parameters a generator cannot honour instead of silently ignoring them."""
    unknown = sorted(set(request.options) - set(getattr(generator, "options", ())))
    if unknown:
        known = sorted(getattr(generator, "options", ()))
        raise ConfigError(f"generator {generator.name!r}: unknown options {unknown}; "
                          + (f"known: {known}" if known else "it takes no options"))
    if not getattr(generator, "existing_audio", False):
        for name in ("seed", "duration_s", "sample_rate"):
            if getattr(request, name) is None:
                raise ConfigError(f"generator {generator.name!r} generates audio and needs {name}")
    if request.steps is not None and not generator.uses_steps:
        raise ConfigError(f"generator {generator.name!r} has no sampling steps; remove `steps` for it")
    if request.guidance is not None and not generator.uses_guidance:
        raise ConfigError(f"generator {generator.name!r} has no guidance scale; remove `guidance` for it")
    if (generator.max_duration_s is not None and request.duration_s is not None
            and request.duration_s > generator.max_duration_s):
        raise ConfigError(f"generator {generator.name!r} generates at most {generator.max_duration_s} s, "
                          f"asked for {request.duration_s} s")


@dataclass(frozen=True)
class GeneratorContext:
    """What a generator factory may need besides its checkpoint."""

    reference: object | None = None  # bench.core.clipsets.ClipSet, for generators that read reference audio
    resampler: str = "soxr-vhq"
    log_dir: Path | None = None  # where a generator keeps what it wants the results folder to hold (logs)
    work_dir: Path | None = None  # the suite's folder: where a user's command runs


@dataclass(frozen=True)
class PreflightQuery:
    """What the suite will ask of one (generator, checkpoint), for checks before any work."""

    checkpoint: str | None
    options: dict
    prompts: tuple[Prompt, ...]
    seeds: tuple[int | None, ...]
    samples_per_prompt: int


@dataclass(frozen=True)
class GeneratorTraits:
    """What the suite and the preflight know of a generator before building it.

    existing_audio: it returns audio that exists (the reference set, a folder): each clip at its own rate,
    channels and duration; the suite's [generation] settings do not apply to it.
    preflight: (PreflightQuery) -> (problems, warnings), cheap checks run before anything is generated.
    fingerprint: (checkpoint) -> content id of a checkpoint that is not one file (a folder of audio):
    part of the cell's identity, so a changed folder is never served from an old record.
    """

    existing_audio: bool = False
    preflight: Callable[[PreflightQuery], tuple[list[str], list[str]]] | None = None
    fingerprint: Callable[[str], str] | None = None


GeneratorFactory = Callable[[str | None, GeneratorContext], Generator]
# name -> (factory, one-line summary); plugins: entry-point group "bench.generators".
GENERATORS = Registry("generator", ("generators.baselines", "generators.archisound", "generators.archisound_latent",
                                    "generators.audioldm2", "generators.dac_resynthesis", "generators.discodiff",
                                    "generators.diffsound", "generators.srcgaudio", "generators.files",
                                    "generators.command", "generators.diffusers_audio", "generators.musicgen"),
                      "bench.generators")


_TRAITS: dict[str, GeneratorTraits] = {}


def register_generator(name: str, summary: str, traits: GeneratorTraits | None = None):
    """Decorator registering a factory `(checkpoint, context) -> Generator` under `name`."""

    def wrap(factory: GeneratorFactory) -> GeneratorFactory:
        GENERATORS.add(name, (factory, summary))
        if traits is not None:
            _TRAITS[name] = traits
        return factory

    return wrap


def is_factory_path(name: str) -> bool:
    """A suite's `factory = "module.path:function"` (a user's generator that is not a registered plugin)."""
    return ":" in name


def import_factory(path: str) -> GeneratorFactory:
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or the user's module failing at import
        raise ConfigError(f"factory {path!r}: cannot import module {module_name!r} ({type(exc).__name__}: {exc}); "
                          "it must be importable from the current directory or PYTHONPATH") from exc
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ConfigError(f"factory {path!r}: module {module_name!r} has no callable {attr!r}")
    return factory


def generator_traits(name: str) -> GeneratorTraits:
    if is_factory_path(name):
        return GeneratorTraits()
    GENERATORS.lookup(name)
    return _TRAITS.get(name, GeneratorTraits())


def build_generator(name: str, checkpoint: str | None, context: GeneratorContext) -> Generator:
    factory = import_factory(name) if is_factory_path(name) else GENERATORS.lookup(name)[0]
    return factory(checkpoint, context)


def at_requested_rate(waveform: np.ndarray, native_rate: int, request: GenerationRequest,
                      resampler: str) -> tuple[np.ndarray, dict]:
    """Resample a native-rate output to the requested rate (none asked: kept native); the metadata says
    what was done."""
    from bench.core.resample import NO_RESAMPLING, resample

    meta = {"native_sample_rate": native_rate, "output_sample_rate": request.sample_rate or native_rate,
            "resampler": None}
    if request.sample_rate is None:
        return waveform.astype(np.float32, copy=False), meta
    if native_rate != request.sample_rate and resampler == NO_RESAMPLING:
        raise ConfigError(f"the generator makes {native_rate} Hz audio and {request.sample_rate} Hz was asked "
                          f"for, but resampler = {NO_RESAMPLING!r} refuses to resample; ask for {native_rate} Hz "
                          "or name a resampler")
    if native_rate != request.sample_rate:
        waveform = resample(waveform, native_rate, request.sample_rate, resampler)
        meta["resampler"] = resampler
    return waveform.astype(np.float32, copy=False), meta
