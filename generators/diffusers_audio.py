"""`diffusers`: the text-to-audio pipelines diffusers ships, loaded from the local Hugging Face cache.

Checkpoint: `hf://org/name` (read from the local HF cache only; nothing is downloaded here, a missing repo
gives the command that fetches it) or a folder written by `save_pretrained`. The pipeline class comes
from the repo's model_index.json: AudioLDMPipeline, AudioLDM2Pipeline, MusicLDMPipeline or
StableAudioPipeline. One pipeline call per (prompt, sample) with that sample's own torch.Generator, so a
sample does not depend on batch size or order; steps -> num_inference_steps, guidance -> guidance_scale
(the pipeline's own defaults when not given, recorded), duration -> audio_length_in_s (audio_end_in_s for
Stable Audio), options.negative_prompt. The native rate (the vocoder's or the autoencoder's) is recorded;
other requested rates are resampled (recorded).
"""
from __future__ import annotations

import inspect
import json
import os
import re
from pathlib import Path

import numpy as np
import torch

from bench.core.errors import CheckpointError, ConfigError
from bench.core.weights import folder_fingerprint
from generators.base import (GeneratedAudio, GenerationRequest, GeneratorContext, at_requested_rate, check_request,
                             register_generator, sample_rng)

PIPELINES = ("AudioLDMPipeline", "AudioLDM2Pipeline", "MusicLDMPipeline", "StableAudioPipeline")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def hf_cache_dir() -> Path:
    """The HF hub cache as the environment says now (huggingface_hub reads it once at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    from huggingface_hub.constants import HF_HUB_CACHE

    return Path(HF_HUB_CACHE)


def fetch_instruction(repo: str) -> str:
    return (f"fetch it once with network access: `hf download {repo}` (or `huggingface-cli download {repo}`, or "
            f"DiffusionPipeline.from_pretrained({repo!r}) in Python); it lands in the HF cache "
            f"{hf_cache_dir()} (set HF_HOME to move it)")


def repo_id(checkpoint: str) -> str | None:
    """The hub repo a checkpoint names (`hf://org/name`, or `org/name` that is not a local path), else None."""
    name = checkpoint[len("hf://"):] if checkpoint.startswith("hf://") else checkpoint
    if checkpoint.startswith("hf://") or (_REPO_ID.match(name) and not Path(checkpoint).exists()):
        return name
    return None


def pipeline_folder(checkpoint: str, generator: str, index_file: str = "model_index.json") -> tuple[Path, dict]:
    """(folder holding `index_file`, provenance) for a local folder or a repo in the local HF cache."""
    repo = repo_id(checkpoint)
    if repo is None:
        folder = Path(checkpoint).expanduser()
        if not (folder / index_file).is_file():
            what = "is not a folder" if not folder.is_dir() else f"has no {index_file}"
            raise CheckpointError(f"{generator} checkpoint {checkpoint}: {what}; give a folder written by "
                                  "save_pretrained or a hub repo as hf://org/name")
        source = "local folder"
    else:
        if not _REPO_ID.match(repo):
            raise CheckpointError(f"{generator} checkpoint {checkpoint!r} is neither a folder nor a repo id (org/name)")
        from huggingface_hub import snapshot_download

        try:  # local_files_only: never the network, whatever HF_HUB_OFFLINE says
            folder = Path(snapshot_download(repo, cache_dir=hf_cache_dir(), local_files_only=True))
        except Exception as exc:  # huggingface_hub raises LocalEntryNotFoundError / OSError subclasses
            raise CheckpointError(f"{generator} checkpoint {repo!r} is not in the local HF cache "
                                  f"({type(exc).__name__}); {fetch_instruction(repo)}") from exc
        source = "hf cache"
    return folder, {"checkpoint": checkpoint, "source": source, "path": str(folder),
                    "revision": folder.name if source == "hf cache" else None,
                    "checkpoint_sha256": folder_fingerprint(folder)}


def pipeline_class(folder: Path, checkpoint: str, generator: str, allowed=PIPELINES) -> str:
    try:
        name = json.loads((folder / "model_index.json").read_text()).get("_class_name")
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{generator} checkpoint {checkpoint}: {folder / 'model_index.json'} unreadable: "
                              f"{exc}") from exc
    if name not in allowed:
        raise CheckpointError(f"{generator} checkpoint {checkpoint}: model_index.json names pipeline {name!r}; "
                              f"supported: {', '.join(allowed)}")
    return name


def load_pipeline(checkpoint: str):
    """(pipeline, its class name, provenance) of a diffusers audio pipeline."""
    from generators.audioldm2_tiny import import_diffusers

    diffusers = import_diffusers()
    folder, provenance = pipeline_folder(checkpoint, "diffusers")
    name = pipeline_class(folder, checkpoint, "diffusers")
    try:
        pipe = getattr(diffusers, name).from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:
        raise CheckpointError(f"diffusers checkpoint {checkpoint} ({folder}) cannot be loaded as a {name}: "
                              f"{type(exc).__name__}: {exc}") from exc
    return pipe, name, provenance


def native_rate(pipe) -> int:
    """The rate a pipeline's audio comes out at: its vocoder's (AudioLDM family) or autoencoder's (Stable Audio)."""
    vocoder = getattr(pipe, "vocoder", None)
    if vocoder is not None:
        return int(vocoder.config.sampling_rate)
    return int(pipe.vae.config.sampling_rate)


class DiffusersGenerator:
    name = "diffusers"
    max_duration_s = None
    uses_steps = True
    uses_guidance = True
    options = ("negative_prompt",)

    def __init__(self, pipe, pipeline: str, provenance: dict, context: GeneratorContext):
        self.pipe, self.pipeline, self.provenance, self.context = pipe, pipeline, provenance, context
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.pipe.to(self.device)
        self.pipe.set_progress_bar_config(disable=True)
        self.rate = native_rate(pipe)
        self.native_sample_rates = (self.rate,)
        self.checkpoint_sha256 = provenance["checkpoint_sha256"]
        self.version = f"{pipeline}-{provenance.get('revision') or self.checkpoint_sha256[:12]}"
        defaults = inspect.signature(pipe.__call__).parameters
        self.default_steps = defaults["num_inference_steps"].default
        self.default_guidance = defaults["guidance_scale"].default
        self.duration_arg = "audio_end_in_s" if "audio_end_in_s" in defaults else "audio_length_in_s"

    def generate(self, request: GenerationRequest) -> list[GeneratedAudio]:
        check_request(self, request)
        steps = request.steps or self.default_steps
        guidance = self.default_guidance if request.guidance is None else float(request.guidance)
        negative = request.options.get("negative_prompt")
        n = int(round(request.duration_s * self.rate))
        out = []
        for p in request.prompts:
            if not p.text.strip():
                raise ConfigError(f"diffusers: prompt {p.id!r} has empty text; give every prompt a caption")
            for k in range(request.samples_per_prompt):
                with torch.inference_mode():
                    audio = self.pipe(prompt=p.text, negative_prompt=negative, num_inference_steps=steps,
                                      guidance_scale=guidance, num_waveforms_per_prompt=1,
                                      generator=[sample_rng(request.seed, p.index, k)], output_type="np",
                                      **{self.duration_arg: request.duration_s}).audios
                wave = np.asarray(audio[0], np.float32)
                wave = (wave[None] if wave.ndim == 1 else wave)[:, :n]
                if wave.shape[1] < n:
                    wave = np.pad(wave, ((0, 0), (0, n - wave.shape[1])))
                wave, rate_meta = at_requested_rate(wave, self.rate, request, self.context.resampler)
                meta = {"generator": self.name, "generator_version": self.version, "pipeline": self.pipeline,
                        "checkpoint": self.provenance["checkpoint"], "checkpoint_sha256": self.checkpoint_sha256,
                        "checkpoint_source": self.provenance["source"], "seed": request.seed,
                        "prompt_index": p.index, "sample_index": k, "steps": steps, "guidance": guidance,
                        "negative_prompt": negative, "scheduler": type(self.pipe.scheduler).__name__,
                        "device": self.device, **rate_meta}
                out.append(GeneratedAudio(p.id, k, wave, rate_meta["output_sample_rate"], meta))
        return out


@register_generator("diffusers", "a diffusers audio pipeline (AudioLDM, AudioLDM 2, MusicLDM, Stable Audio) from the "
                    "local HF cache (hf://org/name) or a saved folder; class from model_index.json")
def _diffusers(checkpoint: str | None, context: GeneratorContext) -> DiffusersGenerator:
    if checkpoint is None:
        raise ConfigError("generator 'diffusers' needs `checkpoints`, e.g. [\"hf://cvssp/audioldm-s-full-v2\"]")
    pipe, pipeline, provenance = load_pipeline(os.fspath(checkpoint))
    return DiffusersGenerator(pipe, pipeline, provenance, context)
