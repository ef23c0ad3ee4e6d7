"""AudioLDM 2 (Liu et al. 2024) through diffusers' AudioLDM2Pipeline, mapped onto our request contract.

Checkpoints: a Hugging Face repo id (cvssp/audioldm2, cvssp/audioldm2-large, cvssp/audioldm2-music, or
any repo with the same layout; `hf://` prefix allowed, which suites need) read from the LOCAL HF cache
only, or a local folder written by `save_pretrained`. Nothing is downloaded here: a missing repo gives
the command that fetches it. Without a checkpoint the generator is a tiny seeded random pipeline of the
same architecture, labelled `untrained`.

Request mapping: one pipeline call per (prompt, sample) with that sample's own torch.Generator (batched
calls pad prompts to a common length, which changes the numbers, so batching would break batch
invariance); steps -> num_inference_steps, guidance -> guidance_scale, duration -> audio_length_in_s,
options eta / negative_prompt. num_waveforms_per_prompt is 1, so the pipeline's CLAP reranking never
runs unless `options.rerank_candidates = N` asks for it: then N candidates are drawn from the sample's
seed, CLAP keeps the best, and the metadata says so. The native rate is the checkpoint's vocoder rate
(16 kHz for the cvssp repos; a fine-tune whose vocoder runs at another rate is taken at that rate and the
records say so); other rates are resampled.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch

from bench.core.errors import CheckpointError, ConfigError
from bench.core.extras import require
from generators.audioldm2_tiny import build_tiny_pipeline, import_diffusers
from generators.base import (GeneratedAudio, GenerationRequest, GeneratorContext, at_requested_rate,
                             check_request, register_generator, sample_seed)
from generators.diffusers_audio import pipeline_folder

PUBLISHED_RATE = 16000  # the cvssp repos' vocoder rate
KNOWN_REPOS = {
    "cvssp/audioldm2": "general sound (AudioCaps, AudioSet, ...), 350M-parameter UNet",
    "cvssp/audioldm2-large": "general sound, 750M-parameter UNet",
    "cvssp/audioldm2-music": "music (trained on music data), 350M-parameter UNet",
}
DEFAULT_STEPS = 200  # AudioLDM2Pipeline's default; the paper states no step count
DEFAULT_GUIDANCE = 3.5  # paper section IV-E: DDIM with classifier-free guidance scale 3.5
OPTIONS = {"eta", "negative_prompt", "rerank_candidates"}


def load_pipeline(checkpoint: str):
    """(pipeline, provenance) from a local folder or a repo id in the local HF cache (resolved like every
    diffusers pipeline, generators.diffusers_audio), after checking it is an AudioLDM 2 layout."""
    diffusers = import_diffusers()
    where, provenance = pipeline_folder(checkpoint, "audioldm2")
    _check_layout(where, checkpoint)
    try:
        pipe = diffusers.AudioLDM2Pipeline.from_pretrained(str(where), local_files_only=True)
    except Exception as exc:
        raise CheckpointError(f"audioldm2 checkpoint {checkpoint} ({where}) cannot be loaded as an "
                              f"AudioLDM2Pipeline: {type(exc).__name__}: {exc}") from exc
    return pipe, provenance


def _check_layout(folder: Path, checkpoint: str) -> None:
    import json

    try:
        index = json.loads((folder / "model_index.json").read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"audioldm2 checkpoint {checkpoint}: {folder / 'model_index.json'} unreadable: "
                              f"{exc}") from exc
    if index.get("_class_name") != "AudioLDM2Pipeline":
        raise CheckpointError(f"audioldm2 checkpoint {checkpoint}: model_index.json names pipeline "
                              f"{index.get('_class_name')!r}, not 'AudioLDM2Pipeline' (an AudioLDM 1 or other "
                              "diffusers repo?); use an AudioLDM 2 repo such as cvssp/audioldm2")
    lm = index.get("language_model", [None, None])[1]
    if lm != "GPT2LMHeadModel":  # the pipeline drives a GPT-2 head; older snapshots stored GPT2Model
        raise CheckpointError(f"audioldm2 checkpoint {checkpoint}: language_model is {lm!r}, this diffusers "
                              "version needs 'GPT2LMHeadModel'; re-download a current revision of the repo")


def _candidate_generator(seed: int, prompt_index: int, sample_index: int, candidate: int) -> torch.Generator:
    # candidate 0 is the sample's own generator; later candidates get seeds derived from it
    if candidate == 0:
        value = sample_seed(seed, prompt_index, sample_index)
    else:
        digest = hashlib.sha256(f"{seed}/{prompt_index}/{sample_index}/candidate{candidate}".encode()).digest()
        value = int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)
    return torch.Generator(device="cpu").manual_seed(value)


class AudioLDM2Generator:
    name = "audioldm2"
    max_duration_s = None
    uses_steps = True
    uses_guidance = True
    options = OPTIONS

    def __init__(self, pipe, provenance: dict, context: GeneratorContext, untrained: bool):
        self.pipe = pipe
        self.provenance = provenance
        self.context = context
        self.untrained = untrained
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.pipe.to(self.device)
        self.pipe.set_progress_bar_config(disable=True)
        rate = getattr(pipe.vocoder.config, "sampling_rate", None)
        if isinstance(rate, bool) or not isinstance(rate, int) or rate <= 0:
            raise CheckpointError(f"audioldm2 checkpoint {provenance.get('checkpoint')}: vocoder config "
                                  f"sampling_rate is {rate!r}, not a positive integer (vocoder/config.json)")
        self.native_rate = rate
        self.native_sample_rates = (rate,)
        ident = provenance.get("revision") or (provenance.get("checkpoint_sha256") or "")[:12]
        self.version = "untrained-tiny-seed0" if untrained else f"diffusers-{ident}"
        self.checkpoint_sha256 = provenance.get("checkpoint_sha256")

    def _options(self, request: GenerationRequest) -> tuple[float, str | None, int]:
        eta = float(request.options.get("eta", 0.0))
        if not 0.0 <= eta <= 1.0:
            raise ConfigError(f"audioldm2: option eta must be in [0, 1] (DDIM), got {eta}")
        negative = request.options.get("negative_prompt")
        candidates = request.options.get("rerank_candidates", 1)
        if isinstance(candidates, bool) or not isinstance(candidates, int) or candidates < 1:
            raise ConfigError(f"audioldm2: option rerank_candidates must be an integer >= 1, got {candidates!r}")
        if candidates > 1:
            # without librosa the pipeline silently skips the CLAP ranking
            require("librosa", "diffusers", "audioldm2 option rerank_candidates")
        return eta, negative, candidates

    def generate(self, request: GenerationRequest) -> list[GeneratedAudio]:
        check_request(self, request)
        eta, negative, candidates = self._options(request)
        steps = request.steps or DEFAULT_STEPS
        guidance = DEFAULT_GUIDANCE if request.guidance is None else float(request.guidance)
        n = int(round(request.duration_s * self.native_rate))
        empty = [p.id for p in request.prompts if not p.text.strip()]
        if empty:
            raise ConfigError(f"audioldm2: prompt {empty[0]!r} has empty text; give every prompt a caption")
        out = []
        for p in request.prompts:
            for k in range(request.samples_per_prompt):
                gens = [_candidate_generator(request.seed, p.index, k, c) for c in range(candidates)]
                # CLAP's feature extractor draws crops and its "is_longer" flag from numpy's global RNG when
                # reranking: seed it from this sample (and put the caller's state back)
                np_state = np.random.get_state()
                np.random.seed(sample_seed(request.seed, p.index, k) % (1 << 32))
                try:
                    with torch.inference_mode():
                        audio = self.pipe(prompt=p.text, negative_prompt=negative,
                                          audio_length_in_s=request.duration_s, num_inference_steps=steps,
                                          guidance_scale=guidance, eta=eta,
                                          num_waveforms_per_prompt=candidates, generator=gens,
                                          output_type="np").audios
                finally:
                    np.random.set_state(np_state)
                wave = np.asarray(audio[0], np.float32)[None, :n]  # candidates come back CLAP-sorted
                if wave.shape[1] < n:
                    wave = np.pad(wave, ((0, 0), (0, n - wave.shape[1])))
                wave, rate_meta = at_requested_rate(wave, self.native_rate, request, self.context.resampler)
                meta = {"generator": self.name, "generator_version": self.version, "untrained": self.untrained,
                        "checkpoint": self.provenance.get("checkpoint"),
                        "checkpoint_sha256": self.checkpoint_sha256, "checkpoint_source": self.provenance["source"],
                        "seed": request.seed, "prompt_index": p.index, "sample_index": k, "steps": steps,
                        "guidance": guidance, "eta": eta, "negative_prompt": negative,
                        "scheduler": type(self.pipe.scheduler).__name__, "device": self.device,
                        "vocoder_sample_rate": self.native_rate,
                        "clap_rerank": ({"candidates": candidates, "kept": 1, "scorer": "pipeline CLAP text_encoder",
                                         "numpy_rng": "seeded from the sample seed"}
                                        if candidates > 1 else None),
                        **rate_meta}
                out.append(GeneratedAudio(p.id, k, wave, request.sample_rate, meta))
        return out


@register_generator("audioldm2", "AudioLDM 2 via diffusers (cvssp/audioldm2[-large|-music] from the local HF "
                                 "cache; tiny untrained pipeline without a checkpoint)")
def _audioldm2(checkpoint: str | None, context: GeneratorContext) -> AudioLDM2Generator:
    if checkpoint is None:
        pipe = build_tiny_pipeline(seed=0)
        return AudioLDM2Generator(pipe, {"checkpoint": None, "source": "seeded random (tiny)",
                                         "checkpoint_sha256": None}, context, untrained=True)
    pipe, provenance = load_pipeline(os.fspath(checkpoint))
    return AudioLDM2Generator(pipe, provenance, context, untrained=False)
