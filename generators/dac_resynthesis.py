"""`dac-resynthesis`: the reference clip encoded and decoded by DAC (DiscoDiff's "DAC Enc-Decoded" bound).

The best a generator of DAC latents can score: whatever it loses is the codec's loss. Option
`n_codebooks` (1..9, default all) quantises with the first n residual codebooks only, which traces the
bound against bitrate. Deterministic: no randomness at all, so every sample of a prompt is the same.

Checkpoint argument: none -> the released 44.1 kHz weights (`bench weights fetch dac-44khz`);
"untrained" -> full-size DAC with seeded random weights; "untrained-tiny" -> the tiny test codec;
or a path to a DAC weights.pth.
"""
from __future__ import annotations

import numpy as np
import torch

from bench.core.errors import ConfigError
from generators.base import (GeneratedAudio, GenerationRequest, GeneratorContext, at_requested_rate,
                             check_request, register_generator)
from generators.dac_codec import DACCodec, load_codec

VERSION = "1"


class ReferenceAudio:
    """Reference clips by prompt id, mono, at the codec's rate (DAC is a mono codec)."""

    def __init__(self, generator: str, context: GeneratorContext):
        if context.reference is None:
            raise ConfigError(f"generator {generator!r} needs reference audio (a suite [reference] set); "
                              "it encodes the reference clip with the prompt's id")
        self.generator, self.context, self.clips = generator, context, context.reference.by_id()

    def check(self, request: GenerationRequest) -> None:
        missing = [p.id for p in request.prompts if p.id not in self.clips]
        if missing:
            raise ConfigError(f"generator {self.generator!r}: prompt ids not in the reference set "
                              f"{self.context.reference.source}: {', '.join(missing[:10])}")

    def load(self, prompt_id: str, rate: int) -> tuple[torch.Tensor, dict]:
        """[1, 1, N] float32 at `rate`, and what to record about it."""
        from bench.core.resample import resample

        clip = self.clips[prompt_id]
        wave, native = self.context.reference.load(clip)
        wave = np.asarray(wave, np.float32).mean(axis=0, keepdims=True)
        if native != rate:
            wave = resample(wave, native, rate, self.context.resampler)
        meta = {"reference_clip_hash": self.context.reference.clip_hash(clip), "reference_sample_rate": native,
                "reference_resampler": self.context.resampler if native != rate else None}
        return torch.from_numpy(np.ascontiguousarray(wave, np.float32))[None], meta


class DACResynthesis:
    name = "dac-resynthesis"
    native_sample_rates: tuple[int, ...]
    max_duration_s = None
    uses_steps = False
    uses_guidance = False
    options = ("n_codebooks",)
    reads_reference = True  # output depends on the reference set's content (generation cache key)

    def __init__(self, codec: DACCodec, provenance: dict, context: GeneratorContext):
        self.codec, self.provenance, self.context = codec, provenance, context
        self.reference = ReferenceAudio(self.name, context)
        self.native_sample_rates = (codec.sample_rate,)
        untrained = provenance.get("weights") == "untrained"
        self.version = f"{VERSION}+{provenance['codec']}" + ("-untrained" if untrained else
                                                             f"-{provenance.get('sha256', '')[:12]}")

    def n_codebooks(self, request: GenerationRequest) -> int:
        n = request.options.get("n_codebooks", self.codec.n_codebooks)
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= self.codec.n_codebooks:
            raise ConfigError(f"generator {self.name!r}: option n_codebooks must be an integer from 1 to "
                              f"{self.codec.n_codebooks}, got {n!r}")
        return n

    def generate(self, request: GenerationRequest) -> list[GeneratedAudio]:
        check_request(self, request)
        n_codebooks = self.n_codebooks(request)
        self.reference.check(request)
        rate = self.codec.sample_rate
        out = []
        for p in request.prompts:
            audio, ref_meta = self.reference.load(p.id, rate)
            wave = self.codec.resynthesize(audio, n_codebooks)[0].numpy()
            wave, rate_meta = at_requested_rate(wave, rate, request, self.context.resampler)
            for k in range(request.samples_per_prompt):
                meta = {"generator": self.name, "generator_version": self.version, "checkpoint": self.provenance,
                        "untrained": self.provenance.get("weights") == "untrained", "seed": request.seed,
                        "prompt_index": p.index, "sample_index": k, "steps": None, "guidance": None,
                        "n_codebooks": n_codebooks, **ref_meta, **rate_meta}
                out.append(GeneratedAudio(p.id, k, wave, request.sample_rate, meta))
        return out


@register_generator("dac-resynthesis", "reference clip encoded+decoded by DAC 44.1 kHz (DiscoDiff's upper bound); "
                    "option n_codebooks; needs `bench weights fetch dac-44khz` or checkpoint 'untrained'")
def _dac_resynthesis(checkpoint: str | None, context: GeneratorContext) -> DACResynthesis:
    codec, provenance = load_codec(checkpoint or "dac-44khz")
    return DACResynthesis(codec, provenance, context)
