"""Score sets of audio with registered metrics: decode -> prepare -> embed (cached) -> metric kernel.

Embeddings are cached per clip (clip content hash + backbone card + protocol id/version) and per set
(set fingerprint + the same), so an unchanged reference set is embedded once and reused. Work is done
in chunks: a killed run loses at most the chunk in flight.
"""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from bench.audio import check_waveform, is_silent
from bench.cache import ArrayCache, default_cache_root
from bench.errors import AudioError, BenchError
from bench.versions import library_versions
from metrics.backbones.base import Backbone, WeightsChoice, load_backbone
from metrics.protocols import EmbeddingProtocol
from metrics.registry import get_metric, metric_key


@dataclass(frozen=True)
class ScoreOptions:
    weights: WeightsChoice = field(default_factory=WeightsChoice)
    cache_root: Path | None = None
    batch_size: int = 32
    workers: int = 2
    chunk_clips: int = 64
    bootstrap: int = 200  # resamples for confidence intervals; 0 disables them
    bootstrap_seed: int = 0
    ci_level: float = 0.95
    progress: bool = True

    @property
    def root(self) -> Path:
        return Path(self.cache_root) if self.cache_root is not None else default_cache_root()


@dataclass
class SetEmbeddings:
    """Per-clip embeddings of one clip set under one (backbone, protocol)."""

    set_info: dict
    clip_ids: list[str]
    per_clip: list[np.ndarray]  # [k_i, dim] float32; k_i may be 0 (clip too short for the protocol)
    durations_s: list[float]
    silent: list[bool]

    def nonempty(self) -> list[np.ndarray]:
        return [e for e in self.per_clip if len(e)]

    def summary(self) -> dict:
        empty = [i for i, e in zip(self.clip_ids, self.per_clip) if not len(e)]
        silent = [i for i, s in zip(self.clip_ids, self.silent) if s]
        return {**self.set_info, "n_clips": len(self.clip_ids),
                "n_embeddings": int(sum(len(e) for e in self.per_clip)),
                "total_duration_s": round(float(sum(self.durations_s)), 6),
                # Policy: silent clips are scored like any other, and flagged here.
                "silent_clips": {"count": len(silent), "ids": silent[:20]},
                "clips_without_embeddings": {"count": len(empty), "ids": empty[:20]}}


def embed_fixed_batches(backbone: Backbone, inputs: list[np.ndarray], batch_size: int) -> np.ndarray:
    """Embed every example in batches of exactly `batch_size` (the last one zero-padded).

    CPU kernels pick different code paths for different batch shapes, which moves embeddings by ~1e-5;
    with one fixed shape an example's embedding does not depend on its neighbours, so a resumed or
    re-chunked run reproduces an uninterrupted one bit for bit.
    """
    nonempty = [x for x in inputs if len(x)]
    if not nonempty:
        return np.zeros((0, backbone.dim), np.float32)
    stacked = np.concatenate(nonempty)
    n = len(stacked)
    padded = np.zeros((-(-n // batch_size) * batch_size, *stacked.shape[1:]), stacked.dtype)
    padded[:n] = stacked
    return np.concatenate([backbone.embed(padded[i:i + batch_size])
                           for i in range(0, len(padded), batch_size)])[:n]


def _embed_chunk(clipset, clips, protocol: EmbeddingProtocol, backbone: Backbone, pool, batch_size):
    def prepare(clip):
        wave, rate = clipset.load(clip)
        check_waveform(wave, clip.origin)
        return protocol.prepare(wave, rate), wave.shape[1] / rate, is_silent(wave)

    prepared = list(pool.map(prepare, clips))
    inputs = [p[0] for p in prepared]
    sizes = [len(x) for x in inputs]
    flat = embed_fixed_batches(backbone, inputs, batch_size)
    splits = np.split(flat, np.cumsum(sizes)[:-1])
    return [(emb, dur, silent) for emb, (_, dur, silent) in zip(splits, prepared)]


def embed_set(clipset, protocol: EmbeddingProtocol, backbone: Backbone, options: ScoreOptions,
              label: str = "") -> SetEmbeddings:
    base_key = {"backbone": backbone.card_key, "protocol": protocol.id, "protocol_version": protocol.version,
                "batch_size": options.batch_size}
    set_cache = ArrayCache(options.root, "set-embeddings")
    clip_cache = ArrayCache(options.root, "embeddings")
    set_key = {**base_key, "set_fingerprint": clipset.fingerprint()}
    hit = set_cache.get(set_key)
    if hit is not None:
        offsets = np.cumsum(hit["counts"])[:-1]
        return SetEmbeddings(clipset.describe(), json.loads(bytes(hit["ids"]).decode()),
                             np.split(hit["embeddings"], offsets), hit["durations"].tolist(),
                             hit["silent"].tolist())

    results: dict[str, tuple] = {}
    todo = []
    for clip in clipset.clips:
        entry = clip_cache.get({**base_key, "clip_hash": clipset.clip_hash(clip)})
        if entry is None:
            todo.append(clip)
        else:
            results[clip.id] = (entry["embedding"], float(entry["duration"]), bool(entry["silent"]))
    bar = tqdm(total=len(clipset), initial=len(results), unit="clip", disable=not options.progress,
               desc=f"{protocol.id} {label}".strip())
    with ThreadPoolExecutor(max_workers=max(1, options.workers)) as pool:
        for start in range(0, len(todo), options.chunk_clips):
            chunk = todo[start:start + options.chunk_clips]
            for clip, (emb, dur, silent) in zip(chunk, _embed_chunk(clipset, chunk, protocol, backbone,
                                                                    pool, options.batch_size)):
                clip_cache.put({**base_key, "clip_hash": clipset.clip_hash(clip)},
                               {"embedding": emb, "duration": np.float64(dur), "silent": np.bool_(silent)})
                results[clip.id] = (emb, dur, silent)
            bar.update(len(chunk))
    bar.close()

    ids = [c.id for c in clipset.clips]
    per_clip = [results[i][0] for i in ids]
    out = SetEmbeddings(clipset.describe(), ids, per_clip, [results[i][1] for i in ids],
                        [results[i][2] for i in ids])
    set_cache.put(set_key, {"ids": np.frombuffer(json.dumps(ids).encode(), np.uint8),
                            "counts": np.array([len(e) for e in per_clip], np.int64),
                            "embeddings": np.concatenate(per_clip) if per_clip else np.zeros((0, backbone.dim)),
                            "durations": np.array(out.durations_s), "silent": np.array(out.silent)})
    return out


def _require_embeddings(emb: SetEmbeddings, role: str, protocol: EmbeddingProtocol) -> None:
    n = sum(len(e) for e in emb.per_clip)
    if n < 2:
        raise AudioError(
            f"{role} set {emb.set_info.get('source')}: {protocol.id} produced {n} embedding(s) from "
            f"{len(emb.clip_ids)} clip(s); a Gaussian fit needs at least 2. Clips shorter than the "
            f"protocol's window yield none: {protocol.steps}")


def score(metric_ids: list[str], generated, reference, options: ScoreOptions) -> list[dict]:
    """One result dict per metric, each saying exactly how it was computed."""
    metrics = [get_metric(m) for m in metric_ids]  # fail on a bad name before any work
    if len(set(metric_ids)) != len(metric_ids):
        raise BenchError(f"metric listed twice: {metric_ids}")
    results = []
    for metric in metrics:
        backbone = load_backbone(metric.protocol.backbone, options.weights)
        gen = embed_set(generated, metric.protocol, backbone, options, "generated")
        ref = embed_set(reference, metric.protocol, backbone, options, "reference")
        _require_embeddings(gen, "generated", metric.protocol)
        _require_embeddings(ref, "reference", metric.protocol)
        computed = metric.compute(gen, ref, options)
        results.append({
            "key": metric_key(metric.id, backbone.untrained),
            **metric.describe(),
            "untrained": backbone.untrained,
            "value": computed["value"],
            "ci": computed["ci"],
            "details": computed["details"],
            "protocol": metric.protocol.info(),
            "backbone": backbone.provenance,
            "device": backbone.device,
            "generated": gen.summary(),
            "reference": ref.summary(),
            "batch_size": options.batch_size,
            "bootstrap": {"resamples": options.bootstrap, "seed": options.bootstrap_seed,
                          "level": options.ci_level},
            "versions": library_versions(),
        })
    return results
