"""Run a suite: for each cell generate (cached), score, write its RunRecord, log it to MLflow.

Resumable: a cell whose record exists with the same cell hash is not redone; generated samples and
embeddings come from the content-addressed cache, so a killed run loses at most the batch in flight.
"""
from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from bench.core.audio import write_audio
from bench.core.cache import ArrayCache, default_cache_root, stable_hash
from bench.core.clip_sources import open_clip_set
from bench.core.clipsets import load_manifest
from bench.core.crashpoints import crash_point
from bench.core.errors import BenchError, ConfigError, doing
from bench.core.folder_lock import folder_lock
from bench.core.mlflow_store import results_store_uri
from bench.core.records import SCHEMA, RunRecord, read_record, write_record
from bench.core.versions import git_revision, library_versions
from bench.core.weights import sha256_file
from bench.determinism import record_differences, relocate
from bench.executors import Job, LocalExecutor, make_executor
from bench.preflight import preflight_suite
from bench.scoring import ScoringFailed, score
from bench.suite import Cell, Gate, Suite, suite_text
from bench.sync import mark_unsynced, track
from bench.tracking import SUITE_FILE, TrackingError, check_tracking
from bench.training.suite_runs import ensure_evaluators, ensure_generator_training, resolve_trained_cells
from generators.base import GenerationRequest, GeneratorContext, Prompt, build_generator, generator_traits
from leaderboards import ci_summary, markdown
from metrics.backbones.base import WeightsChoice
from metrics.inputs import ScoreOptions


@dataclass
class RunOptions:
    results_dir: Path | None = None  # overrides the suite's results_dir
    cache_root: Path | None = None
    tracking_uri: str | None = None  # overrides the suite's [tracking] uri
    tracking: bool | None = None  # None: the suite decides (default on)
    force: bool = False  # recompute cells that already have a record
    progress: bool = True
    allow_download: bool | None = None
    baseline: Path | None = None  # records that ci-summary.md compares this run against
    executor: str | None = None  # "local" | "ray"; None: the suite decides (default local)
    ray_address: str | None = None  # overrides the suite's [executor] address
    check_determinism: bool = False  # recompute every cell without caches and diff the records


@dataclass
class GateResult:
    gate: Gate
    cell_id: str
    label: str
    value: float | None
    untrained: bool
    passed: bool

    def line(self) -> str:
        status = "PASS" if self.passed else "FAIL"
        value = "missing" if self.value is None else f"{self.value:.4g}"
        mark = " (untrained backbone)" if self.untrained else ""
        return f"{status}  {self.gate.text}  {self.label} ({self.cell_id}): {value}{mark}"


@dataclass
class RunOutcome:
    results_dir: Path
    records: list[RunRecord] = field(default_factory=list)
    gates: list[GateResult] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # cells that could not be computed
    tracking_errors: list[str] = field(default_factory=list)
    leaderboard: Path | None = None
    nondeterministic: dict[str, list[str]] = field(default_factory=dict)  # cell id -> differing fields

    @property
    def exit_code(self) -> int:
        if self.errors:
            return 2
        if any(not g.passed for g in self.gates):
            return 1
        if self.nondeterministic:
            return 4
        return 3 if self.tracking_errors else 0


def _weights_choice(suite: Suite, options: RunOptions, trained: tuple = ()) -> WeightsChoice:
    w = suite.weights
    local = tuple(sorted((k, str(suite.base_dir / v)) for k, v in w.checkpoints.items()))
    return WeightsChoice(mode=w.mode, seed=w.seed, local_files=local,
                         cache_root=options.cache_root, allow_download=options.allow_download, trained=trained)


def _score_options(suite: Suite, options: RunOptions, trained: tuple = ()) -> ScoreOptions:
    s = suite.scoring
    return ScoreOptions(weights=_weights_choice(suite, options, trained), cache_root=options.cache_root,
                        batch_size=s.batch_size, workers=s.workers, bootstrap=s.bootstrap,
                        bootstrap_seed=s.bootstrap_seed, ci_level=s.ci_level, progress=options.progress)


def build_prompts(suite: Suite, reference) -> list[Prompt]:
    spec = suite.prompts
    if spec.manifest is not None:
        source = load_manifest(suite.base_dir / spec.manifest, require_audio=False)
    else:
        source = reference
    missing = [c.origin for c in source.clips if not c.caption]
    if missing:
        raise ConfigError(f"prompts: {len(missing)} entries have no caption (first: {missing[0]}); give every "
                          "clip a caption or set [prompts] manifest = a file with id and caption")
    clips = source.clips[:spec.limit] if spec.limit is not None else source.clips
    return [Prompt(c.id, c.caption, i, c.references) for i, c in enumerate(clips)]


def _safe_name(prompt: Prompt, k: int, samples_per_prompt: int) -> str:
    stem = f"{prompt.index:05d}_{re.sub(r'[^A-Za-z0-9._-]+', '_', prompt.id)[:60]}"
    return f"{stem}_s{k}.wav" if samples_per_prompt > 1 else f"{stem}.wav"


def _generate(generator, request: GenerationRequest) -> list:
    return generator.generate(request)


def generate_cell(cell: Cell, prompts: list[Prompt], reference, cache_root: Path | None, out_dir: Path,
                  progress: bool, executor=None, work_dir: Path | None = None) -> tuple[object, dict]:
    """Generate (or take from the cache) every sample of a cell; return the generated set and a summary."""
    context = GeneratorContext(reference, cell.resampler, log_dir=out_dir / "logs", work_dir=work_dir)
    generator = build_generator(cell.generator, cell.checkpoint, context)
    # generators whose checkpoint is a folder or a hub repo id say what identifies it (`checkpoint_sha256`)
    ckpt_hash = getattr(generator, "checkpoint_sha256", None) or (
        sha256_file(Path(cell.checkpoint)) if cell.checkpoint else None)
    cache = ArrayCache(cache_root or default_cache_root(), "generated")
    use_cache = getattr(generator, "cache_outputs", True)  # `files`: the files are their own cache
    base = {"generator": cell.generator, "generator_version": generator.version, "checkpoint_sha256": ckpt_hash,
            "seed": cell.seed, "steps": cell.steps, "guidance": cell.guidance, "duration_s": cell.duration_s,
            "sample_rate": cell.sample_rate, "resampler": cell.resampler,
            **({"options": cell.options} if cell.options else {})}
    if getattr(generator, "reads_reference", False):
        base["reference_fingerprint"] = reference.fingerprint()

    def key(p: Prompt, k: int) -> dict:
        return {**base, "prompt_id": p.id, "prompt_text": p.text, "prompt_index": p.index, "sample_index": k}

    samples: dict[tuple[str, int], tuple[np.ndarray, int, dict]] = {}
    todo = []
    for p in prompts:
        hits = [cache.get(key(p, k)) if use_cache else None for k in range(cell.samples_per_prompt)]
        if any(h is None for h in hits):
            todo.append(p)
        else:
            for k, h in enumerate(hits):
                rate = int(h["sample_rate"]) if "sample_rate" in h else cell.sample_rate
                samples[(p.id, k)] = (h["waveform"], rate, json.loads(bytes(h["metadata"]).decode()))
    seconds = 0.0
    bar = tqdm(total=len(prompts), initial=len(prompts) - len(todo), unit="prompt", disable=not progress,
               desc=f"generate {cell.label}")
    requests = [GenerationRequest(prompts=tuple(todo[start:start + cell.batch_size]), seed=cell.seed,
                                  duration_s=cell.duration_s, sample_rate=cell.sample_rate, steps=cell.steps,
                                  guidance=cell.guidance, samples_per_prompt=cell.samples_per_prompt,
                                  options=cell.options)
                for start in range(0, len(todo), cell.batch_size)]
    job = Job(key=f"generate:{cell.generator}:{cell.checkpoint}:{ckpt_hash}:{cell.resampler}",
              build=build_generator, args=(cell.generator, cell.checkpoint, context), run=_generate,
              local=generator)
    # Time per batch as the driver sees it (with Ray: wall time, including waiting for the cluster).
    t0 = time.perf_counter()
    for request, outputs in zip(requests, (executor or LocalExecutor()).map(job, requests)):
        seconds += time.perf_counter() - t0
        batch = request.prompts
        by_id = {p.id: p for p in batch}
        for audio in outputs:
            if cell.sample_rate is not None and audio.sample_rate != cell.sample_rate:
                raise BenchError(f"generator {cell.generator!r} returned {audio.sample_rate} Hz for a "
                                 f"{cell.sample_rate} Hz request")
            if use_cache:
                cache.put(key(by_id[audio.prompt_id], audio.sample_index),
                          {"waveform": audio.waveform, "sample_rate": np.int64(audio.sample_rate),
                           "metadata": np.frombuffer(json.dumps(audio.metadata, sort_keys=True).encode(),
                                                     np.uint8)})
            samples[(audio.prompt_id, audio.sample_index)] = (audio.waveform, audio.sample_rate, audio.metadata)
        crash_point("generate")
        bar.update(len(batch))
        t0 = time.perf_counter()
    bar.close()

    skipped = [f"{p.id}#{k}" if cell.samples_per_prompt > 1 else p.id
               for p in prompts for k in range(cell.samples_per_prompt) if (p.id, k) not in samples]
    if skipped and not getattr(generator, "may_skip", False):
        raise BenchError(f"generator {cell.generator!r} returned no audio for {len(skipped)} sample(s) "
                         f"(first: {skipped[:5]})")
    if len(skipped) == len(prompts) * cell.samples_per_prompt:
        raise BenchError(f"generator {cell.generator!r} ({cell.checkpoint}): no audio for any prompt")
    rows = []
    for p in prompts:
        for k in range(cell.samples_per_prompt):
            if (p.id, k) not in samples:
                continue
            wave, rate, _ = samples[(p.id, k)]
            name = _safe_name(p, k, cell.samples_per_prompt)
            write_audio(out_dir / "audio" / name, wave, rate)
            clip_id = p.id if cell.samples_per_prompt == 1 else f"{p.id}#{k}"
            rows.append({"id": clip_id, "path": f"audio/{name}", "caption": p.text,
                         **({"references": list(p.references)} if p.references else {})})
    manifest = out_dir / "generated.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    metas = [m for _, _, m in samples.values()]
    summary = {"generator_version": generator.version, "checkpoint_sha256": ckpt_hash,
               "n_prompts": len(prompts), "n_clips": len(rows),
               "native_sample_rates": sorted({m.get("native_sample_rate") for m in metas} - {None}),
               "output_sample_rates": sorted({rate for _, rate, _ in samples.values()}),
               "channels": sorted({int(w.shape[0]) for w, _, _ in samples.values()}),
               "resampled_with": sorted({m.get("resampler") for m in metas} - {None}),
               **({"samplers": samplers} if (samplers := _samplers(metas)) else {}),
               # a generator with seeded random weights (no checkpoint): leaderboards and tags say so
               "untrained": any(bool(m.get("untrained")) for m in metas),
               "manifest": str(manifest),
               **({"skipped": {"policy": "skip", "n": len(skipped), "ids": skipped}} if skipped else {})}
    return load_manifest(manifest), {"summary": summary, "seconds": seconds,
                                     "fresh_samples": len(todo) * cell.samples_per_prompt,
                                     "existing_audio": getattr(generator, "existing_audio", False)}


def _samplers(metas: list[dict]) -> list[dict]:
    """Which samplers ran (generators that have several say so in each sample's metadata `sampler`), with
    the steps and guidance each used: the record says what ran, defaults included."""
    seen = {json.dumps({k: m[k] for k in ("sampler", "steps", "guidance") if k in m}, sort_keys=True)
            for m in metas if "sampler" in m}
    return [json.loads(s) for s in sorted(seen)]


def _cell_hash(cell: Cell, suite: Suite, reference, prompts: list[Prompt]) -> str:
    """Everything a cell's record depends on; a record with another hash is recomputed, never reused."""
    fingerprint = generator_traits(cell.generator).fingerprint  # a folder of audio: its content, not its name
    return stable_hash({"cell": cell.params(), "metrics": suite.metrics, "reference": reference.fingerprint(),
                        **({"checkpoint_content": fingerprint(cell.checkpoint)} if fingerprint else {}),
                        "prompts": [(p.id, p.text) for p in prompts], "weights": asdict(suite.weights),
                        "scoring": asdict(suite.scoring), "schema": SCHEMA,
                        **({"evaluators": suite.evaluators} if suite.evaluators else {}),
                        **({"training": suite.training} if suite.training else {})})


def _run_cell(cell: Cell, suite: Suite, reference, prompts, score_options: ScoreOptions, results_dir: Path,
              options: RunOptions) -> dict:
    cell_dir = results_dir / "cells" / cell.id
    record_path = results_dir / "records" / f"{cell.id}.json"
    cell_hash = _cell_hash(cell, suite, reference, prompts)
    if record_path.exists() and not options.force:
        try:
            record = read_record(record_path)
            if record.cell_hash == cell_hash and not record.failed_metrics:
                return record
        except BenchError:
            pass  # unreadable or foreign: recompute and overwrite
    # Generated audio lives in the same cache root as embeddings, so one override bypasses both.
    generated, gen = generate_cell(cell, prompts, reference, score_options.cache_root, cell_dir, options.progress,
                                   score_options.executor, suite.base_dir)
    t0 = time.perf_counter()
    try:
        results, failures = score(suite.metrics, generated, reference, score_options), []
    except ScoringFailed as exc:  # keep what was computed; the cell still reports an error
        results, failures = exc.results, exc.failures
    score_seconds = time.perf_counter() - t0
    audio_seconds = sum(r["generated"]["total_duration_s"] for r in results[:1])
    record = RunRecord(
        schema=SCHEMA,
        suite={"name": suite.name, "path": str(suite.path) if suite.path else "built-in quickstart",
               "hash": suite.hash},
        cell_id=cell.id,
        cell_hash=cell_hash,
        cell=cell.params(),
        generation=gen["summary"] | {"generated_dir": str(cell_dir)},
        reference=reference.describe(),
        metrics=tuple(results),
        untrained=any(r["untrained"] for r in results),
        failed_metrics=tuple(failures),
        git_revision=git_revision(),
        versions=library_versions(),
        timing={"generation_seconds": round(gen["seconds"], 4), "fresh_samples": gen["fresh_samples"],
                # audio read from files (reference, files) was not generated: no real-time factor
                "real_time_factor": (round(gen["seconds"] / audio_seconds, 6)
                                     if gen["fresh_samples"] and audio_seconds and not gen["existing_audio"]
                                     else None),
                "scoring_seconds": round(score_seconds, 4)},
    )
    write_record(record_path, record)
    if failures:
        raise ScoringFailed(results, failures)
    return record


def check_determinism(suite: Suite, reference, prompts, score_options: ScoreOptions, results_dir: Path,
                      options: RunOptions, records: list[RunRecord], log=print) -> dict[str, list[str]]:
    """Recompute each recorded cell with empty generation/embedding caches; the fields that differ, per cell."""
    cells = {c.id: c for c in suite.cells}
    differing = {}
    scratch = Path(tempfile.mkdtemp(prefix="determinism-", dir=results_dir))
    try:
        for record in records:
            cell = cells[record.cell_id]
            log(f"determinism: recomputing {cell.id} without caches")
            fresh_options = replace(score_options, cache_root=scratch / "cache")
            again = _run_cell(cell, suite, reference, prompts, fresh_options, scratch / "results",
                              replace(options, force=True))
            found = record_differences(record, relocate(again, scratch / "results", results_dir))
            log(f"  {'identical' if not found else f'{len(found)} field(s) differ'}")
            if found:
                differing[cell.id] = found
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report = {"identical": not differing, "cells": [r.cell_id for r in records], "differences": differing}
    (results_dir / "determinism.json").write_text(json.dumps(report, indent=2) + "\n")
    return differing


def evaluate_gates(gates: list[Gate], records: list[RunRecord]) -> list[GateResult]:
    out = []
    for gate in gates:
        for record in records:
            if not gate.applies_to(record.cell):
                continue
            result = next((r for r in record.metrics if r["metric"] == gate.metric), None)
            value = None if result is None else result["value"]
            out.append(GateResult(gate, record.cell_id, record.label, value,
                                  bool(result and result["untrained"]),
                                  value is not None and gate.passes(value)))
    return out


def run_suite(suite: Suite, options: RunOptions, log=print) -> RunOutcome:
    results_dir = Path(options.results_dir or suite.results_dir)
    try:
        results_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BenchError(f"results folder {results_dir}: cannot create it ({e.strerror or e}); give another --out") from e
    (results_dir / SUITE_FILE).write_text(suite_text(suite))  # the suite as it ran (also an MLflow artifact)
    # One run per results folder: records, summary and the default MLflow store are written by one process.
    with folder_lock(results_dir, f"bench run {suite.name}"):
        return _run_locked(suite, options, results_dir, log)


def _run_locked(suite: Suite, options: RunOptions, results_dir: Path, log) -> RunOutcome:
    outcome = RunOutcome(results_dir)
    reference = open_clip_set(suite.reference, suite.base_dir)
    prompts = build_prompts(suite, reference)
    # Everything the suite needs, checked before any training, generation or scoring: all problems at once.
    report = preflight_suite(suite, reference, prompts, _weights_choice(suite, options))
    for warning in report.warnings:
        log(f"warning: {warning}")
    report.raise_if_problems(f"suite {suite.name}")
    # Evaluators the suite trains itself ([evaluators]): trained once, then reused from the cache.
    trained = ensure_evaluators(suite.evaluators, suite.base_dir, options.cache_root, options.progress, log)
    # Generators the suite trains itself ([training]): trained once, `training:RUN/...` cells get their files.
    suite = resolve_trained_cells(suite, ensure_generator_training(suite.training, suite.base_dir,
                                                                   options.cache_root, options.progress, log))
    executor_spec = suite.executor
    executor = make_executor(options.executor or executor_spec.name, options.ray_address or executor_spec.address,
                             executor_spec.max_in_flight)
    score_options = replace(_score_options(suite, options, trained), executor=executor)
    tracking_on = options.tracking if options.tracking is not None else suite.tracking.enabled
    uri = options.tracking_uri or suite.tracking.uri or results_store_uri(results_dir)
    experiment = suite.tracking.experiment or suite.name
    log(f"suite {suite.name}: {len(suite.cells)} cells x {len(suite.metrics)} metrics, "
        f"{len(prompts)} prompts, reference {reference.name} ({len(reference)} clips) -> {results_dir}"
        + (f", executor {executor.name}" if executor.name != "local" else ""))
    # Checked once, up front: a server that is down costs seconds, not MLflow's retries for every cell.
    tracking_down = check_tracking(uri) if tracking_on else None
    if tracking_down:
        log(f"tracking unavailable, records are kept on disk (push them later with `bench sync {results_dir}`): "
            f"{tracking_down}")
    for i, cell in enumerate(suite.cells, 1):
        log(f"[{i}/{len(suite.cells)}] {cell.id}")
        try:
            with doing(f"computing cell {cell.id} into {results_dir}"):
                record = _run_cell(cell, suite, reference, prompts, score_options, results_dir, options)
        except BenchError as exc:
            outcome.errors.append(f"{cell.id}: {exc}")
            log(f"  error: {exc}")
            continue
        outcome.records.append(record)
        if tracking_on and tracking_down:
            mark_unsynced(record, uri, experiment, results_dir, f"not tried: {tracking_down}")
            outcome.tracking_errors.append(f"{cell.id}: not logged ({tracking_down}); run `bench sync "
                                           f"{results_dir}` later")
        elif tracking_on:
            try:
                track(record, uri, experiment, results_dir)
            except TrackingError as exc:
                tracking_down = str(exc)
                outcome.tracking_errors.append(str(exc))
                log(f"  tracking error (record kept on disk, marked unsynced; push it later with "
                    f"`bench sync {results_dir}`): {exc}")
    if options.check_determinism:
        outcome.nondeterministic = check_determinism(suite, reference, prompts, score_options, results_dir,
                                                     options, outcome.records, log)
    outcome.gates = evaluate_gates(suite.gates, outcome.records)
    outcome.leaderboard = results_dir / "leaderboard.md"
    outcome.leaderboard.write_text(markdown.render(outcome.records, title=f"{suite.name} leaderboard"))
    summary = {"suite": suite.name, "exit_code": outcome.exit_code, "errors": outcome.errors,
               "tracking_errors": outcome.tracking_errors, "tracking_uri": uri if tracking_on else None,
               **({"nondeterministic": outcome.nondeterministic} if options.check_determinism else {}),
               "records": [str(results_dir / "records" / f"{r.cell_id}.json") for r in outcome.records],
               "gates": [g.line() for g in outcome.gates]}
    (results_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    ci_summary.write(suite.name, outcome, options.baseline)
    return outcome
