"""Baselines every leaderboard needs: the reference itself (oracle), white noise, and silence."""
from __future__ import annotations

import numpy as np
import torch

from bench.core.errors import ConfigError
from generators.base import (GeneratedAudio, GenerationRequest, GeneratorContext, GeneratorTraits,
                             at_requested_rate, check_request, register_generator, sample_rng)


class _Baseline:
    version = "1"
    native_sample_rates = None
    max_duration_s = None
    uses_steps = False
    uses_guidance = False

    def __init__(self, context: GeneratorContext):
        self.context = context

    def _meta(self, request: GenerationRequest, prompt_index: int, sample_index: int) -> dict:
        return {"generator": self.name, "generator_version": self.version, "checkpoint": None,
                "seed": request.seed, "prompt_index": prompt_index, "sample_index": sample_index,
                "steps": None, "guidance": None}


class NoiseGenerator(_Baseline):
    """White Gaussian noise, RMS 0.1 (-20 dBFS): the floor any model should beat."""

    name = "noise"
    rms = 0.1

    def generate(self, request: GenerationRequest) -> list[GeneratedAudio]:
        check_request(self, request)
        n = int(round(request.duration_s * request.sample_rate))
        out = []
        for p in request.prompts:
            for k in range(request.samples_per_prompt):
                rng = sample_rng(request.seed, p.index, k)
                wave = (torch.randn(1, n, generator=rng, dtype=torch.float64) * self.rms).numpy()
                meta = {**self._meta(request, p.index, k), "native_sample_rate": request.sample_rate,
                        "output_sample_rate": request.sample_rate, "resampler": None}
                out.append(GeneratedAudio(p.id, k, wave.astype(np.float32), request.sample_rate, meta))
        return out


class SilenceGenerator(_Baseline):
    """All-zero audio: exposes metrics that reward silence (audioldm_eval notes PANNs FD/KL do)."""

    name = "silence"

    def generate(self, request: GenerationRequest) -> list[GeneratedAudio]:
        check_request(self, request)
        n = int(round(request.duration_s * request.sample_rate))
        meta_rates = {"native_sample_rate": request.sample_rate, "output_sample_rate": request.sample_rate,
                      "resampler": None}
        return [GeneratedAudio(p.id, k, np.zeros((1, n), np.float32), request.sample_rate,
                               {**self._meta(request, p.index, k), **meta_rates})
                for p in request.prompts for k in range(request.samples_per_prompt)]


class ReferenceGenerator(_Baseline):
    """Oracle: returns the reference clip whose id equals the prompt id (the metric's best case), at the
    clip's own rate and channels unless a rate is asked for, so its scores are exactly the best case."""

    name = "reference"
    reads_reference = True  # its output depends on the reference set's content (generation cache key)
    existing_audio = True

    def __init__(self, context: GeneratorContext):
        super().__init__(context)
        if context.reference is None:
            raise ConfigError("generator 'reference' needs a reference set")
        self.clips = context.reference.by_id()

    def generate(self, request: GenerationRequest) -> list[GeneratedAudio]:
        check_request(self, request)
        missing = [p.id for p in request.prompts if p.id not in self.clips]
        if missing:
            raise ConfigError(f"generator 'reference': prompt ids not in the reference set "
                              f"{self.context.reference.source}: {', '.join(missing[:10])}")
        out = []
        for p in request.prompts:
            wave, rate = self.context.reference.load(self.clips[p.id])
            wave, rate_meta = at_requested_rate(wave, rate, request, self.context.resampler)
            for k in range(request.samples_per_prompt):
                meta = {**self._meta(request, p.index, k), **rate_meta,
                        "reference_clip_hash": self.context.reference.clip_hash(self.clips[p.id])}
                out.append(GeneratedAudio(p.id, k, wave, rate_meta["output_sample_rate"], meta))
        return out


@register_generator("noise", "white Gaussian noise at -20 dBFS RMS (lower-bound baseline)")
def _noise(checkpoint: str | None, context: GeneratorContext) -> NoiseGenerator:
    _no_checkpoint("noise", checkpoint)
    return NoiseGenerator(context)


@register_generator("silence", "digital silence (exposes metrics that reward silence)")
def _silence(checkpoint: str | None, context: GeneratorContext) -> SilenceGenerator:
    _no_checkpoint("silence", checkpoint)
    return SilenceGenerator(context)


@register_generator("reference", "oracle: the reference clip with the prompt's id, at its own rate (upper bound)",
                    GeneratorTraits(existing_audio=True))
def _reference(checkpoint: str | None, context: GeneratorContext) -> ReferenceGenerator:
    _no_checkpoint("reference", checkpoint)
    return ReferenceGenerator(context)


def _no_checkpoint(name: str, checkpoint: str | None) -> None:
    if checkpoint is not None:
        raise ConfigError(f"generator {name!r} takes no checkpoint, got {checkpoint!r}")
