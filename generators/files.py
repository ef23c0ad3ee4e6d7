"""`files`: audio generated elsewhere, one folder (or .jsonl/.csv manifest) per checkpoint.

Each prompt's audio is found through `options.pattern`: a name relative to the folder with the fields
{prompt_id}, {sample} (the sample index, for samples_per_prompt > 1) and {seed} (the cell's seed, given in
the generator's own `seeds`). Without an audio extension the name matches any of AUDIO_EXTENSIONS; with
one, exactly that file. For a manifest the pattern names the row id. Default "{prompt_id}".

Prompts without audio are one error listing all of them, unless `options.missing = "skip"`: then the
prompts that have audio are scored and the skipped ones are recorded. Audio is returned as it is (its own
rate, channels and duration); a `sample_rates` in the generator's own table resamples it (recorded).
A checkpoint's identity is the sha256 of its audio files' bytes, so a regenerated folder is a new
checkpoint: caches and records never serve it stale.
"""
from __future__ import annotations

import hashlib
import string
from pathlib import Path

from bench.core.clipsets import AUDIO_EXTENSIONS, MANIFEST_FORMATS, ClipSet, load_directory, load_manifest
from bench.core.errors import CheckpointError, ConfigError, ManifestError
from generators.base import (GeneratedAudio, GenerationRequest, GeneratorContext, GeneratorTraits, PreflightQuery,
                             at_requested_rate, check_request, register_generator)

DEFAULT_PATTERN = "{prompt_id}"
PATTERN_FIELDS = ("prompt_id", "sample", "seed")
MISSING_POLICIES = ("error", "skip")
OPTIONS = ("pattern", "missing")
_SHOWN = 20  # names listed in an error before "... and N more"


def open_checkpoint(checkpoint: str) -> ClipSet:
    """The audio of one checkpoint: a folder (ids = relative paths without extension) or a manifest."""
    path = Path(checkpoint)
    try:
        if path.is_dir():
            return load_directory(path)
        if path.suffix.lower() in MANIFEST_FORMATS and path.is_file():
            return load_manifest(path)
    except ManifestError as exc:
        raise CheckpointError(f"files checkpoint {checkpoint}: {exc}") from exc
    what = "does not exist" if not path.exists() else "is neither a folder nor a .jsonl/.csv manifest"
    raise CheckpointError(f"files checkpoint {checkpoint} {what}; give a folder of audio or a manifest of "
                          "id,path rows (one per checkpoint)")


def check_options(options: dict, samples_per_prompt: int, seeds) -> tuple[str, str]:
    """(pattern, missing policy), after checking the pattern's fields against what the cell asks."""
    pattern = options.get("pattern", DEFAULT_PATTERN)
    missing = options.get("missing", "error")
    if not isinstance(pattern, str) or not pattern.strip():
        raise ConfigError(f"files: options.pattern must be a non-empty string like \"{DEFAULT_PATTERN}.wav\", "
                          f"got {pattern!r}")
    if missing not in MISSING_POLICIES:
        raise ConfigError(f"files: options.missing must be one of {MISSING_POLICIES}, got {missing!r}")
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(pattern) if f is not None}
    except ValueError as exc:
        raise ConfigError(f"files: options.pattern {pattern!r} is not a valid pattern ({exc})") from exc
    unknown = sorted(fields - set(PATTERN_FIELDS))
    if unknown or "prompt_id" not in fields:
        raise ConfigError(f"files: options.pattern {pattern!r} must contain {{prompt_id}} and may contain "
                          f"{{sample}} and {{seed}}" + (f"; unknown field(s) {unknown}" if unknown else ""))
    if samples_per_prompt > 1 and "sample" not in fields:
        raise ConfigError(f"files: samples_per_prompt = {samples_per_prompt} needs {{sample}} in options.pattern "
                          f"(e.g. \"{{prompt_id}}_{{sample}}\"), got {pattern!r}")
    if "seed" in fields and any(s is None for s in seeds):
        raise ConfigError(f"files: options.pattern {pattern!r} uses {{seed}}: give `seeds = [...]` in this "
                          "generator's table")
    if "seed" not in fields and any(s is not None for s in seeds):
        raise ConfigError(f"files: `seeds` given but options.pattern {pattern!r} has no {{seed}} field; every "
                          "seed would score the same files")
    return pattern, missing


def _lookup(clips: ClipSet, name: str):
    """The clip a formatted pattern names: exact file (with extension) in a folder, else by id."""
    if clips.kind == "directory" and Path(name).suffix.lower() in AUDIO_EXTENSIONS:
        root = Path(clips.source)
        return clips.by_id().get(Path(name).with_suffix("").as_posix()) if (root / name).is_file() else None
    return clips.by_id().get(name)


def match(clips: ClipSet, pattern: str, prompts, samples_per_prompt: int, seeds) -> tuple[dict, list[str]]:
    """({(prompt id, sample, seed): clip}, names of the files that are missing)."""
    found, missing = {}, []
    for seed in seeds:
        for p in prompts:
            for k in range(samples_per_prompt):
                name = pattern.format(prompt_id=p.id, sample=k, seed=seed)
                clip = _lookup(clips, name)
                if clip is None:
                    missing.append(name)
                else:
                    found[(p.id, k, seed)] = clip
    return found, missing


def listing(names: list[str]) -> str:
    more = f" ... and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
    return ", ".join(names[:_SHOWN]) + more


def fingerprint(checkpoint: str) -> str:
    """sha256 over (name, sha256 of the file's bytes) of every audio file the checkpoint holds."""
    clips = open_checkpoint(checkpoint)
    h = hashlib.sha256()
    for clip in sorted(clips.clips, key=lambda c: c.id):
        h.update(f"{clip.id}\t{hashlib.sha256(clip.path.read_bytes()).hexdigest()}\n".encode())
    return h.hexdigest()


def preflight(query: PreflightQuery) -> tuple[list[str], list[str]]:
    """Missing audio (problems) and audio that no prompt asks for (warnings), without decoding anything."""
    try:
        clips = open_checkpoint(query.checkpoint)
        pattern, policy = check_options(query.options, query.samples_per_prompt, query.seeds)
    except (CheckpointError, ConfigError) as exc:
        return [str(exc)], []
    found, missing = match(clips, pattern, query.prompts, query.samples_per_prompt, query.seeds)
    problems, warnings = [], []
    if missing and policy == "error":
        problems.append(f"files checkpoint {query.checkpoint}: {len(missing)} prompt file(s) missing (pattern "
                        f"{pattern!r}): {listing(missing)}; add them, or set options.missing = \"skip\"")
    elif missing:
        warnings.append(f"files checkpoint {query.checkpoint}: {len(missing)} prompt file(s) missing, skipped "
                        f"(options.missing = \"skip\"): {listing(missing)}")
    used = {c.id for c in found.values()}
    unmatched = sorted(c.id for c in clips.clips if c.id not in used)
    if unmatched:
        warnings.append(f"files checkpoint {query.checkpoint}: {len(unmatched)} file(s) match no prompt (pattern "
                        f"{pattern!r}) and are not scored: {listing(unmatched)}")
    return problems, warnings


class FilesGenerator:
    name = "files"
    native_sample_rates = None
    max_duration_s = None
    uses_steps = False
    uses_guidance = False
    existing_audio = True
    options = OPTIONS
    may_skip = True  # with options.missing = "skip" it returns fewer samples than asked (recorded)
    cache_outputs = False  # the files are their own cache

    def __init__(self, checkpoint: str, context: GeneratorContext):
        self.checkpoint = checkpoint
        self.context = context
        self.clips = open_checkpoint(checkpoint)
        self.checkpoint_sha256 = fingerprint(checkpoint)
        self.version = "1"

    def generate(self, request: GenerationRequest) -> list[GeneratedAudio]:
        check_request(self, request)
        pattern, policy = check_options(request.options, request.samples_per_prompt, (request.seed,))
        found, missing = match(self.clips, pattern, request.prompts, request.samples_per_prompt, (request.seed,))
        if missing and policy == "error":
            raise ConfigError(f"files checkpoint {self.checkpoint}: {len(missing)} prompt file(s) missing "
                              f"(pattern {pattern!r}): {listing(missing)}; add them, or set options.missing = "
                              "\"skip\"")
        out = []
        for (prompt_id, k, _), clip in found.items():
            wave, rate = self.clips.load(clip)
            wave, rate_meta = at_requested_rate(wave, rate, request, self.context.resampler)
            p = next(p for p in request.prompts if p.id == prompt_id)
            meta = {"generator": self.name, "generator_version": self.version, "checkpoint": self.checkpoint,
                    "checkpoint_sha256": self.checkpoint_sha256, "source_file": str(clip.path),
                    "seed": request.seed, "prompt_index": p.index, "sample_index": k, "steps": None,
                    "guidance": None, "channels": int(wave.shape[0]),
                    "duration_s": round(wave.shape[1] / rate_meta["output_sample_rate"], 6), **rate_meta}
            out.append(GeneratedAudio(prompt_id, k, wave, rate_meta["output_sample_rate"], meta))
        return out


@register_generator("files", "audio generated elsewhere: a folder or manifest per checkpoint, matched to "
                    "prompts by id (options.pattern), at its own rate", GeneratorTraits(
                        existing_audio=True, preflight=preflight, fingerprint=fingerprint))
def _files(checkpoint: str | None, context: GeneratorContext) -> FilesGenerator:
    if checkpoint is None:
        raise ConfigError("generator 'files' needs `checkpoints`: one folder (or manifest) of audio per checkpoint, "
                          "e.g. checkpoints = [\"outputs/step-*\"]")
    return FilesGenerator(checkpoint, context)
