"""`musicgen`: MusicGen (Copet et al. 2023) through transformers' MusicgenForConditionalGeneration.

Checkpoint: `hf://facebook/musicgen-small` (or -medium, -large, -melody's text path, -stereo-*), read from
the local HF cache only, or a folder written by save_pretrained (model + processor). Sampling is
autoregressive (no steps): guidance -> guidance_scale (default 3.0, the model card's), top-k 250 as in
audiocraft (options.top_k), duration -> the number of EnCodec frames plus the codebook delay. transformers
samples from the global torch RNG, so each (prompt, sample) is generated alone inside a fenced RNG seeded
from the sample's own seed: a sample does not depend on the batch, and the caller's RNG state is untouched.
Native rate and channels (mono or stereo) come from the model's EnCodec config and are recorded.
"""
from __future__ import annotations

import math
import os

import numpy as np
import torch

from bench.core.errors import CheckpointError, ConfigError
from generators.base import (GeneratedAudio, GenerationRequest, GeneratorContext, at_requested_rate, check_request,
                             register_generator, sample_seed)
from generators.diffusers_audio import pipeline_folder

DEFAULT_GUIDANCE = 3.0
DEFAULT_TOP_K = 250  # audiocraft's MusicGen default


def import_transformers():
    """transformers' MusicGen import pulls in torchvision/torchaudio: the project's compat shim first."""
    from bench.core.torch_compat import ensure_torchaudio_importable, ensure_torchvision_importable

    ensure_torchvision_importable()
    ensure_torchaudio_importable()
    import transformers

    return transformers


def load_model(checkpoint: str):
    tf = import_transformers()
    folder, provenance = pipeline_folder(checkpoint, "musicgen", index_file="config.json")
    try:
        model = tf.MusicgenForConditionalGeneration.from_pretrained(str(folder), local_files_only=True)
        processor = tf.AutoProcessor.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:
        raise CheckpointError(f"musicgen checkpoint {checkpoint} ({folder}) cannot be loaded as "
                              f"MusicgenForConditionalGeneration + its processor: {type(exc).__name__}: {exc}") from exc
    return model, processor, provenance


class MusicgenGenerator:
    name = "musicgen"
    max_duration_s = None
    uses_steps = False
    uses_guidance = True
    options = ("top_k",)

    def __init__(self, model, processor, provenance: dict, context: GeneratorContext):
        self.model, self.processor, self.provenance, self.context = model.eval(), processor, provenance, context
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model.to(self.device)
        audio = model.config.audio_encoder
        self.rate, self.frame_rate = int(audio.sampling_rate), float(audio.frame_rate)
        self.native_sample_rates = (self.rate,)
        self.checkpoint_sha256 = provenance["checkpoint_sha256"]
        self.version = f"transformers-{provenance.get('revision') or self.checkpoint_sha256[:12]}"

    def generate(self, request: GenerationRequest) -> list[GeneratedAudio]:
        check_request(self, request)
        guidance = DEFAULT_GUIDANCE if request.guidance is None else float(request.guidance)
        top_k = request.options.get("top_k", DEFAULT_TOP_K)
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ConfigError(f"musicgen: option top_k must be an integer >= 1, got {top_k!r}")
        frames = math.ceil(request.duration_s * self.frame_rate)
        tokens = frames + self.model.decoder.num_codebooks - 1  # the delay pattern costs num_codebooks - 1 steps
        n = int(round(request.duration_s * self.rate))
        out = []
        for p in request.prompts:
            inputs = self.processor(text=[p.text], padding=True, return_tensors="pt").to(self.device)
            for k in range(request.samples_per_prompt):
                with torch.random.fork_rng(devices=[]), torch.inference_mode():
                    torch.manual_seed(sample_seed(request.seed, p.index, k))
                    audio = self.model.generate(**inputs, do_sample=True, top_k=top_k, guidance_scale=guidance,
                                                max_new_tokens=tokens)
                wave = audio[0].float().cpu().numpy()[:, :n]  # [channels, samples]
                if wave.shape[1] < n:
                    wave = np.pad(wave, ((0, 0), (0, n - wave.shape[1])))
                wave, rate_meta = at_requested_rate(wave, self.rate, request, self.context.resampler)
                meta = {"generator": self.name, "generator_version": self.version,
                        "checkpoint": self.provenance["checkpoint"], "checkpoint_sha256": self.checkpoint_sha256,
                        "checkpoint_source": self.provenance["source"], "seed": request.seed, "prompt_index": p.index,
                        "sample_index": k, "steps": None, "guidance": guidance, "top_k": top_k,
                        "max_new_tokens": tokens, "device": self.device, "channels": int(wave.shape[0]),
                        "rng": "global torch RNG, fenced and seeded per sample", **rate_meta}
                out.append(GeneratedAudio(p.id, k, wave, rate_meta["output_sample_rate"], meta))
        return out


@register_generator("musicgen", "MusicGen via transformers (hf://facebook/musicgen-small|medium|large, ... from "
                    "the local HF cache, or a saved folder)")
def _musicgen(checkpoint: str | None, context: GeneratorContext) -> MusicgenGenerator:
    if checkpoint is None:
        raise ConfigError("generator 'musicgen' needs `checkpoints`, e.g. [\"hf://facebook/musicgen-small\"]")
    model, processor, provenance = load_model(os.fspath(checkpoint))
    return MusicgenGenerator(model, processor, provenance, context)
