"""Score sets of audio with registered metrics: decode -> prepare -> backbone outputs (cached) -> kernel.

Backbone outputs (embeddings, logits, ...) are cached per clip (decoded-audio hash + backbone card +
protocol id/version + batching scheme) and per set (set fingerprint + the same), so an unchanged reference
set is processed once and reused. A clip's outputs are those of each example alone (bench.batching), so
neither the batch size nor the rest of the set is part of its key. Work is done in chunks of clips: a
killed run loses at most the chunk in flight.
"""
from __future__ import annotations

import functools
import hashlib
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm import tqdm

from bench.batching import batch_rows, embed_clip, run_batches, streamed
from bench.core.allocator import keep_freed_buffers
from bench.core.audio import SILENCE_PEAK, check_waveform, is_silent, read_blocks
from bench.core.cache import ArrayCache, stable_hash
from bench.core.crashpoints import crash_point
from bench.core.errors import AudioError, BenchError, ConfigError, doing
from bench.core.versions import library_versions
from bench.executors import Job, LocalExecutor
from metrics.backbones.base import Backbone, WeightsChoice, load_backbone
from metrics.inputs import ScoreOptions, SetEmbeddings, pair_ids
from metrics.noise_floor import SPLITS as FLOOR_SPLITS, noise_floor
from metrics.protocols import EmbeddingProtocol
from metrics.registry import MetricDef, get_metric, metric_key

# Bump when the layout of cached backbone outputs or the batching that produced them changes: older
# entries then miss instead of breaking. 5: each example's outputs alone, batched only where bitwise equal;
# 4: pieces of same-signature clips; 3: per-clip batches without padding; before: fixed-shape padded batches.
CACHE_FORMAT = 5
BATCHING = ("each example's outputs as it gives them alone (2-d linear layers in blocks of 8 rows); batched "
            "only where each kind of batch was checked to give those bits")


@dataclass(frozen=True)
class LongClip:
    """A clip file too long to decode whole, streamed by the protocol where the embedding runs."""

    path: Path
    origin: str
    frames: int
    rate: int


def _decode(clipset, clip, protocol: EmbeddingProtocol):
    """(waveform, rate, origin) for the embedder, or a LongClip it streams; a clip longer than a whole-clip
    protocol takes is an error naming it (the duration policy in metrics.protocols)."""
    info = clipset.file_info(clip)
    if info is not None:
        frames, rate, channels = info
        if streamed(info, protocol):
            return LongClip(clip.path, clip.origin, frames, rate)
        if protocol.stream is None and frames / rate > protocol.max_whole_clip_s:
            raise AudioError(f"{clip.origin}: the clip lasts {frames / rate:.0f} s; {protocol.id} feeds whole "
                             f"clips and takes at most {protocol.max_whole_clip_s:g} s (its memory grows with "
                             f"the clip): cut the clip into parts, or use a metric whose protocol streams "
                             f"long clips (vggish@audioldm)")
    return (*clipset.load(clip), clip.origin)


def _embed_long(embedder: "_Embedder", clip: LongClip):
    """(outputs, duration_s, silent) of a long clip, its examples embedded as they come, a batch at a time."""
    backbone, batch_size = embedder.backbone, embedder.batch_size
    peak = 0.0

    def read():
        nonlocal peak
        for block in read_blocks(clip.path):
            peak = max(peak, float(np.max(np.abs(block))))
            yield block

    outputs: dict[str, list[np.ndarray]] = {name: [] for name in backbone.outputs}
    pending: list[np.ndarray] = []

    def run(examples: np.ndarray) -> None:
        for name, values in embed_clip(backbone, examples, batch_size).items():
            outputs[name].append(values)

    for examples in embedder.protocol.stream(read, clip.rate):
        pending.append(examples)
        held = sum(len(e) for e in pending)
        rows = batch_rows(examples.shape[1:], batch_size, backbone.device)
        if held >= rows:
            run(np.concatenate(pending))
            pending = []
    if sum(len(e) for e in pending):
        run(np.concatenate(pending))
    return ({name: np.concatenate(v) if v else np.zeros((0, dim), np.float32)
             for (name, v), dim in zip(outputs.items(), backbone.outputs.values())},
            clip.frames / clip.rate, peak < SILENCE_PEAK)


@dataclass
class _Embedder:
    """What an executor's worker needs to turn decoded clips into backbone outputs."""

    backbone: Backbone
    protocol: EmbeddingProtocol
    batch_size: int
    workers: int
    on_clip: Callable[[int], object] | None = None  # progress, in this process only (never shipped)


def _build_embedder(backbone_name: str, weights: WeightsChoice, protocol: EmbeddingProtocol, batch_size: int,
                    workers: int) -> _Embedder:
    return _Embedder(load_backbone(backbone_name, weights), protocol, batch_size, workers)


def _prepare(protocol: EmbeddingProtocol, item):
    if isinstance(item, LongClip):  # streamed where it is embedded
        return item
    wave, rate, origin = item
    check_waveform(wave, origin)
    return protocol.prepare(wave, rate), wave.shape[1] / rate, is_silent(wave)


def _embed_chunk(embedder: _Embedder, decoded: list):
    """Decoded clips, (waveform, rate, origin) or a LongClip -> (outputs, duration_s, silent) per clip.

    Worker threads prepare the clips ahead while this thread runs each batch as soon as its clips are
    prepared (bench.batching) and streams the long clips; the outputs reach the host once per chunk (on a
    GPU the host never waits on a single batch)."""
    keep_freed_buffers()  # in the process that runs the forwards (a Ray worker too)
    done: list = [None] * len(decoded)
    whole: list[int] = []  # clips embedded from their prepared examples

    def examples(prepared):
        for i, item in enumerate(prepared):
            if isinstance(item, LongClip):
                done[i] = _embed_long(embedder, item)
            else:
                whole.append(i)
                done[i] = item[1:]  # duration, silent
                yield item[0]
            if embedder.on_clip is not None:
                embedder.on_clip(1)

    with ThreadPoolExecutor(max_workers=max(1, embedder.workers)) as pool:
        prepared = pool.map(functools.partial(_prepare, embedder.protocol), decoded)
        outs = run_batches(embedder.backbone, examples(prepared), embedder.batch_size)
    for i, o in zip(whole, outs.host(embedder.backbone.outputs)):
        done[i] = (o, *done[i])
    return done


def embed_set(clipset, protocol: EmbeddingProtocol, backbone: Backbone, options: ScoreOptions,
              label: str = "") -> SetEmbeddings:
    base_key = {"backbone": backbone.card_key, "protocol": protocol.id, "protocol_version": protocol.version,
                "batching": BATCHING, "format": CACHE_FORMAT}
    names = list(backbone.outputs)
    ids = [c.id for c in clipset.clips]
    captions = [c.caption for c in clipset.clips]
    set_cache = ArrayCache(options.root, "set-embeddings")
    set_key = {**base_key, "set_fingerprint": clipset.fingerprint()}
    hit = set_cache.get(set_key)
    if hit is not None:
        bounds = np.cumsum(hit["counts"])[:-1]
        return SetEmbeddings(clipset.describe(), ids, captions,
                             {n: np.split(hit[f"out.{n}"], bounds) for n in names},
                             hit["durations"].tolist(), hit["silent"].tolist())

    clip_cache = ArrayCache(options.root, "embeddings")

    def clip_key(clip):
        return {**base_key, "clip_hash": clipset.clip_hash(clip)}

    results: dict[str, tuple] = {}
    todo = []
    for clip in clipset.clips:
        entry = clip_cache.get(clip_key(clip))
        if entry is None:
            todo.append(clip)
        else:
            results[clip.id] = ({n: entry[f"out.{n}"] for n in names}, float(entry["duration"]),
                                bool(entry["silent"]))
    bar = tqdm(total=len(clipset), initial=len(results), unit="clip", disable=not options.progress,
               desc=f"{protocol.id} {label}".strip())
    step = options.chunk_clips or options.batch_size
    chunks = [todo[start:start + step] for start in range(0, len(todo), step)]
    job = Job(key=f"embed:{protocol.id}:{options.batch_size}:{options.workers}:{stable_hash(repr(options.weights))}",
              build=_build_embedder,
              args=(protocol.backbone, options.weights, protocol, options.batch_size, options.workers),
              run=_embed_chunk, local=_Embedder(backbone, protocol, options.batch_size, options.workers, bar.update))
    with ThreadPoolExecutor(max_workers=max(1, options.workers)) as pool:
        def load(clip):
            with doing(f"reading clip {clip.origin}"):
                return _decode(clipset, clip, protocol)

        def decoded():
            # The next chunk decodes while this one is embedded; at most two chunks are held in memory.
            ahead = None
            for chunk in chunks:
                loading = [pool.submit(load, c) for c in chunk]
                if ahead is not None:
                    yield [f.result() for f in ahead]
                ahead = loading
            if ahead is not None:
                yield [f.result() for f in ahead]

        executor = options.executor or LocalExecutor()
        for chunk, embedded in zip(chunks, executor.map(job, decoded())):
            for clip, (outs, dur, silent) in zip(chunk, embedded):
                clip_cache.put(clip_key(clip), {**{f"out.{n}": v for n, v in outs.items()},
                                                "duration": np.float64(dur), "silent": np.bool_(silent)})
                results[clip.id] = (outs, dur, silent)
            crash_point("embed")
            bar.update(len(results) - bar.n)  # executors that run elsewhere report per chunk
    bar.close()

    outputs = {n: [results[i][0][n] for i in ids] for n in names}
    out = SetEmbeddings(clipset.describe(), ids, captions, outputs, [results[i][1] for i in ids],
                        [results[i][2] for i in ids])
    set_cache.put(set_key, {**{f"out.{n}": np.concatenate(v) for n, v in outputs.items()},
                            "counts": np.array([len(e) for e in outputs[names[0]]], np.int64),
                            "durations": np.array(out.durations_s), "silent": np.array(out.silent)})
    return out


def embed_captions(emb: SetEmbeddings, protocol: EmbeddingProtocol, backbone: Backbone,
                   options: ScoreOptions) -> np.ndarray:
    """Text embeddings of every clip's caption (text-audio metrics), cached per caption text."""
    if backbone.embed_text is None:
        raise ConfigError(f"backbone {backbone.id!r} has no text encoder")
    missing = [i for i, c in zip(emb.clip_ids, emb.captions) if not c]
    if missing:
        raise ConfigError(f"{emb.set_info.get('source')}: {len(missing)} clip(s) have no caption (first: "
                          f"{missing[0]!r}); text-audio metrics need the prompt of every clip in the manifest")
    cache = ArrayCache(options.root, "text-embeddings")
    base = {"backbone": backbone.card_key, "protocol": protocol.id, "protocol_version": protocol.version,
            "batch_size": options.batch_size}
    keys = [{**base, "text_sha256": hashlib.sha256(c.encode()).hexdigest()} for c in emb.captions]
    found = [cache.get(k) for k in keys]
    todo = sorted({c for c, f in zip(emb.captions, found) if f is None})
    computed = {}
    for start in range(0, len(todo), options.batch_size):
        texts = todo[start:start + options.batch_size]
        # Fixed batch shape (padded with empty strings): a caption's bits do not depend on its companions.
        values = backbone.embed_text(texts + [""] * (options.batch_size - len(texts)))[:len(texts)]
        computed.update(zip(texts, values))
    rows = []
    for key, caption, hit in zip(keys, emb.captions, found):
        if hit is None:
            cache.put(key, {"embedding": computed[caption]})
            rows.append(computed[caption])
        else:
            rows.append(hit["embedding"])
    return np.stack(rows)


def _require_outputs(emb: SetEmbeddings, role: str, metric: MetricDef) -> None:
    n = sum(len(e) for e in emb.per_clip(metric.output))
    if n < metric.min_items:
        raise AudioError(
            f"{role} set {emb.set_info.get('source')}: {metric.protocol.id} produced {n} output(s) from "
            f"{len(emb.clip_ids)} clip(s); {metric.id} needs at least {metric.min_items}. Clips shorter "
            f"than the protocol's window yield none: {metric.protocol.steps}")


class ScoringFailed(BenchError):
    """Some metrics failed; `results` holds those computed (never discarded), `failures` the others."""

    def __init__(self, results: list[dict], failures: list[dict], errors: tuple[BenchError, ...] = ()):
        self.results, self.failures, self.errors = results, failures, errors  # errors: the exceptions themselves
        lines = "; ".join(f"{f['metric']}: {f['error']}" for f in failures)
        super().__init__(f"{len(failures)} of {len(results) + len(failures)} metric(s) failed ({lines})")


DEGENERATE = ("the generated set is the reference set itself (same clip contents): the value is 0 by construction "
              "and its interval is meaningless; a perfect generator scores the noise floor instead")


def same_content(a: SetEmbeddings, b: SetEmbeddings, output: str) -> bool:
    """The two sets hold the same clip outputs (as multisets)."""
    if len(a.clip_ids) != len(b.clip_ids):
        return False
    digest = lambda e: hashlib.sha256(np.ascontiguousarray(e).tobytes() + repr(np.shape(e)).encode()).hexdigest()  # noqa: E731
    return sorted(map(digest, a.per_clip(output))) == sorted(map(digest, b.per_clip(output)))


# Fewer embedding rows per dimension than this: FD intervals lose coverage (bench.benchmarks.ci_coverage).
COVERAGE_ROWS_PER_DIM = 3


def size_warnings(metric: MetricDef, emb: SetEmbeddings, role: str) -> list[str]:
    """Recorded warnings when a set is too small for what its metric estimates."""
    rows = sum(len(e) for e in emb.per_clip(metric.output))
    dim = next((e.shape[1] for e in emb.per_clip(metric.output) if len(e)), 0)
    if metric.kind != "set" or metric.family not in ("frechet", "frechet-inf"):
        return []
    if rows <= dim:
        return [f"{role} set: {rows} embedding(s) of {dim} dimensions; a covariance of N vectors has rank at "
                f"most N - 1 < {dim}, so this Fréchet distance is dominated by its bias and not comparable to "
                f"values on other set sizes (use at least {dim + 1} embeddings, ideally many times more)"]
    if rows < COVERAGE_ROWS_PER_DIM * dim:
        return [f"{role} set: {rows} embeddings of {dim} dimensions (fewer than {COVERAGE_ROWS_PER_DIM} per "
                "dimension): the bootstrap under-corrects FD's bias here and its interval covers the population "
                "value less often than nominal (python -m bench.benchmarks.ci_coverage: 46-70% at 50 rows of 32 "
                "dimensions, >= 93% from 100)"]
    return []


def cached_noise_floor(metric: MetricDef, ref: SetEmbeddings, identity: dict, options: ScoreOptions) -> dict:
    """The metric's noise floor on this reference set (metrics.noise_floor), cached per `identity` (what
    determines the reference outputs: set content and backbone), metric and protocol version."""
    cache = ArrayCache(options.root, "noise-floor")
    key = {**identity, "metric": metric.id, "metric_version": metric.version, "protocol": metric.protocol.id,
           "protocol_version": metric.protocol.version, "splits": FLOOR_SPLITS, "seed": options.bootstrap_seed,
           "format": CACHE_FORMAT}
    hit = cache.get(key)
    if hit is not None:
        return json.loads(bytes(hit["floor"]).decode())
    try:
        floor = noise_floor(metric, ref, options)
    except (ArithmeticError, ValueError, BenchError) as exc:
        floor = {"mean": None, "reason": f"could not be computed: {exc}"}
    cache.put(key, {"floor": np.frombuffer(json.dumps(floor, sort_keys=True).encode(), np.uint8)})
    return floor


def score(metric_ids: list[str], generated, reference, options: ScoreOptions) -> list[dict]:
    """One result dict per metric, each saying exactly how it was computed. `reference` may be None
    when every metric is reference-free (IS, CLAP score). A metric that fails does not stop the others:
    ScoringFailed then carries every result computed and every failure (when none was computed, the
    first failure's own error is raised)."""
    if len(set(metric_ids)) != len(metric_ids):
        raise BenchError(f"metric listed twice: {metric_ids}")
    metrics = [get_metric(m) for m in metric_ids]  # fail on a bad name before any work
    needs_ref = [m.id for m in metrics if m.needs_reference]
    if needs_ref and reference is None:
        raise ConfigError(f"{', '.join(needs_ref)} compare against a reference set: give --reference")
    # Paired metrics match clips by id: a pairing problem is reported before any embedding.
    for metric in metrics:
        if metric.kind == "paired":
            pair_ids([c.id for c in generated.clips], [c.id for c in reference.clips], options.pairing)
    results, failures, errors = [], [], []
    for metric in metrics:
        try:
            results.append(_score_metric(metric, generated, reference, options))
        except BenchError as exc:
            failures.append({"metric": metric.id, "error": str(exc)})
            errors.append(exc)
    if failures and not results:
        raise errors[0]  # nothing computed, nothing to keep: the error itself, with its type
    if failures:
        raise ScoringFailed(results, failures, tuple(errors))
    return results


def _score_metric(metric: MetricDef, generated, reference, options: ScoreOptions) -> dict:
    def say(message: str) -> None:  # every step that can take long says so (stderr, like the bars)
        if options.progress:
            tqdm.write(message, file=sys.stderr)

    say(f"{metric.id}: loading backbone {metric.protocol.backbone}")
    with doing(f"loading backbone {metric.protocol.backbone!r} for {metric.id}"):
        backbone = load_backbone(metric.protocol.backbone, options.weights)
    with doing(f"embedding generated set {generated.source} with {metric.protocol.id}"):
        gen = embed_set(generated, metric.protocol, backbone, options, "generated")
    _require_outputs(gen, "generated", metric)
    ref = None
    if metric.needs_reference:
        with doing(f"embedding reference set {reference.source} with {metric.protocol.id}"):
            ref = embed_set(reference, metric.protocol, backbone, options, "reference")
        _require_outputs(ref, "reference", metric)
    if metric.kind == "text-audio":
        say(f"{metric.id}: embedding {len(gen.captions)} captions")
        gen.text = embed_captions(gen, metric.protocol, backbone, options)
    if metric.kind == "caption":
        gen.references = [c.references for c in generated.clips]
    say(f"{metric.id}: computing" + (f" (bootstrap {options.bootstrap} resamples)" if options.bootstrap else ""))
    return describe_result(metric, gen, ref, backbone, options,
                           floor=lambda: cached_noise_floor(metric, ref, {
                               "set_fingerprint": reference.fingerprint(), "backbone": backbone.card_key}, options),
                           where=f"{generated.source} vs {reference.source if ref is not None else '-'}")


def describe_result(metric: MetricDef, gen: SetEmbeddings, ref: SetEmbeddings | None, backbone, options: ScoreOptions,
                    floor, where: str) -> dict:
    """Compute `metric` on backbone outputs and build its result dict (also for precomputed embeddings).
    `floor()` gives the noise floor of set metrics; `backbone` needs provenance, device and weights_label."""
    try:
        with doing(f"computing {metric.id} on {where}"):
            computed = metric.compute(gen, ref, options)
    except ArithmeticError as exc:
        raise BenchError(f"{metric.id} on {where}: {exc}") from exc
    warnings = size_warnings(metric, gen, "generated") + (size_warnings(metric, ref, "reference") if ref else [])
    degenerate = ref is not None and same_content(gen, ref, metric.output)
    return {
        "key": metric_key(metric.id, backbone.weights_label),
        **metric.describe(),
        "untrained": backbone.weights_label == "untrained",
        "unverified": backbone.weights_label == "unverified",
        "value": computed["value"],
        "ci": computed.get("ci"),
        "details": computed.get("details", {}),
        "per_clip": computed.get("per_clip"),
        **({"noise_floor": floor()} if metric.kind == "set" else {}),
        "warnings": warnings,
        # A set scored against itself (e.g. an oracle that copies the reference): 0 by construction, its
        # interval says nothing; the noise floor is what a perfect generator would score.
        "degenerate": DEGENERATE if degenerate else None,
        "protocol": metric.protocol.info(),
        "backbone": backbone.provenance,
        "device": backbone.device,
        "generated": gen.summary(),
        "reference": ref.summary() if ref is not None else None,
        "batch_size": options.batch_size,
        "bootstrap": {"resamples": options.bootstrap, "seed": options.bootstrap_seed,
                      "level": options.ci_level},
        "versions": library_versions(),
    }
