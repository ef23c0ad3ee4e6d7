"""Audiobox Aesthetics (docs/protocols.md#audiobox-aesthetics): four reference-free per-clip ratings, each its
own metric (one leaderboard column with its CI each) on one protocol, so the backbone runs once per clip.

As the audiobox-aesthetics package's `AesPredictor.forward` (audiobox_aesthetics/infer.py): mean of the
channels, torchaudio.functional.resample to 16 kHz (its default: our "sinc-hann"), 10 s windows every 10 s
(`make_inference_batch(hop_size=10, window_size=10)`, the last one zero-padded and masked), each window
scored on the four axes, and the clip's score the average of its windows weighted by the fraction of the
window holding audio. The metric is the mean over clips, with a bootstrap CI over clips.
"""
from __future__ import annotations

import numpy as np

from bench.core.audio import to_mono
from bench.core.errors import AudioError
from bench.core.resample import resample
from metrics.backbones import audiobox
from metrics.bootstrap import mean_interval
from metrics.protocols import EmbeddingProtocol
from metrics.registry import MetricDef, register_metric

LINEAGE = ("audiobox-aesthetics 0.0.4 (Meta; Tjandra et al. 2025): AesPredictor with facebook/audiobox-aesthetics, "
           "as papers since 2025 report CE / CU / PC / PQ")
AXIS_NAMES = {"CE": "content enjoyment", "CU": "content usefulness", "PC": "production complexity",
              "PQ": "production quality"}


def _windows(waveform: np.ndarray, rate: int) -> np.ndarray:
    x = resample(to_mono(waveform, "mean"), rate, audiobox.SAMPLE_RATE, "sinc-hann")[0]
    starts = range(0, len(x), audiobox.WINDOW)
    out = np.zeros((len(starts), 2, audiobox.WINDOW), np.float32)
    for i, start in enumerate(starts):
        piece = x[start:start + audiobox.WINDOW]
        out[i, 0, :len(piece)] = piece
        out[i, 1, :len(piece)] = 1.0
    return out


AUDIOBOX = EmbeddingProtocol(
    id="audiobox-aesthetics@audiobox", version=1, backbone=audiobox.BACKBONE, sample_rate=audiobox.SAMPLE_RATE,
    resampler="sinc-hann", channels="mean of channels",
    steps=("mono: mean of the channels (read_wav)",
           "resample to 16 kHz: torchaudio.functional.resample's default (windowed sinc, our sinc-hann)",
           "10 s windows every 10 s to the end of the clip, the last zero-padded with a mask over the padding "
           "(make_inference_batch(hop_size=10, window_size=10))",
           "per window: WavLM-base, softmax-weighted sum of its 13 layer outputs per axis, masked mean over time, "
           "L2-normalised, a linear head per axis, then the checkpoint's target_transform inverted (float32)",
           "per clip: the windows' scores averaged with weights = fraction of the window holding audio"),
    prepare=_windows)


def clip_scores(generated, axis: str) -> tuple[np.ndarray, list[str], list[str]]:
    """(score per clip with at least one window, their ids, ids of clips without any window)."""
    index = audiobox.AXES.index(axis)
    values, ids, empty = [], [], []
    for cid, scores, weight in zip(generated.clip_ids, generated.per_clip("scores"), generated.per_clip("weight")):
        if not len(scores):
            empty.append(cid)
            continue
        w = np.asarray(weight, np.float64)[:, 0]
        values.append(float(np.asarray(scores, np.float64)[:, index] @ w / w.sum()))
        ids.append(cid)
    return np.array(values), ids, empty


def aesthetics_metric(axis: str):
    def compute(generated, reference, options) -> dict:
        values, ids, empty = clip_scores(generated, axis)
        if not len(values):
            raise AudioError(f"{generated.set_info.get('source')}: no clip has any audio to score ({len(empty)} "
                             "empty clip(s))")
        result = {"value": float(values.mean()), "ci": None,
                  "details": {"axis": f"{axis} ({AXIS_NAMES[axis]})", "clips": len(values),
                              "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                              "min": float(values.min()), "max": float(values.max()),
                              "clips_without_audio": {"count": len(empty), "ids": empty[:20],
                                                      "policy": "not scored (no window); named here"}},
                  "per_clip": [{"id": cid, "value": v} for cid, v in zip(ids, values.tolist())]}
        if options.bootstrap > 0:
            result["ci"] = mean_interval(values, options.bootstrap, options.bootstrap_seed,
                                         f"the expected {axis} rating of a generated clip (population mean over "
                                         "clips; clips resampled)", options.ci_level).to_dict()
        return result
    return compute


for _axis in audiobox.AXES:
    _neutral = _axis == "PC"  # production complexity: more is not better, only different
    register_metric(MetricDef(
        name=f"aesthetics-{_axis.lower()}", preset="audiobox", version=1, direction="higher", protocol=AUDIOBOX,
        summary=(f"Audiobox Aesthetics {_axis} ({AXIS_NAMES[_axis]}), mean per-clip rating (1-10 scale), "
                 "reference-free" + ("; higher means more complex, not better" if _neutral else "")),
        lineage=LINEAGE, compute=aesthetics_metric(_axis), kind="generated", output="scores", min_items=1,
        precision=3,
        expected_sensitivity=tuple((p, "any") for p in ("noise", "mask", "mix", "silence", "lowpass", "clipping",
                                                        "time-shift", "gain", "resample")) if _neutral else ()))
