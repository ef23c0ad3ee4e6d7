"""Diffsound's FID and KL (section V-B) on its InceptionV3-style log-mel classifier ("mel-inception").

- `fid-mel@diffsound`: Fréchet distance between the Gaussian fits of the classifier's pooled features
  (one vector per clip; Diffsound's evaluation code reads Melception's 2048-d pre-classifier layer).
- `kl-mel@diffsound`: per pair of clips with the same id, KL(reference || generated) of the softmax
  class outputs with eps 1e-6 on the generated side, averaged over pairs (Diffsound's
  evaluation/metrics/kl.py: kl_div((fake + eps).log(), real, reduction="sum") / number of fakes; a
  prompt with several samples is paired with its one reference clip each time).

Diffsound scored the generated mel-spectrograms directly; we score audio, so the same transform that
made their reference mels is applied to the generated audio too.
"""
from __future__ import annotations

import numpy as np

from bench.core.audio import to_mono
from bench.core.resample import resample
from metrics.backbones import mel_inception as mi
from metrics.classwise import softmax
from metrics.frechet import frechet_metric
from metrics.paired_kl import paired_kl_metric
from metrics.protocols import EmbeddingProtocol
from metrics.registry import MetricDef, register_metric

LINEAGE = "Diffsound (Yang et al. 2023) evaluation: FID / KL on Melception, as SpecVQGAN"


def _diffsound_mel(waveform: np.ndarray, rate: int) -> np.ndarray:
    x = resample(to_mono(waveform, "mean"), rate, mi.SAMPLE_RATE, "resampy-kaiser-best")[0]
    return mi.log_mel(mi.fit_length(x))[None]  # one [80, 860] example per clip


MEL_DIFFSOUND = EmbeddingProtocol(
    id="mel-inception@diffsound", version=1, backbone=mi.BACKBONE, sample_rate=mi.SAMPLE_RATE,
    resampler="resampy-kaiser-best", channels="mean of channels",
    steps=("mono (mean of channels), as librosa.load",
           "resample to 22.05 kHz with resampy kaiser_best (librosa 0.8's load default), length ceil",
           "zero-pad at the end or cut to 10 s (220500 samples)",
           "|STFT|: 1024-point periodic Hann window, hop 256, centred (reflect padding)",
           "80 Slaney mel bands 125-7600 Hz (area-normalised), magnitude (power 1)",
           "20 log10(max(1e-5, mel)) - 20, then (+100) / 100, clipped to [0, 1]; first 860 frames",
           "standardise each mel bin with the evaluator's training-set mean and std (stored with the "
           "weights; SpecVQGAN's StandardNormalizeAudio)",
           "one [80, 860] input per clip; embedding: globally average-pooled features before the "
           "classifier (2048-d in the full config); logits: the classifier's outputs"),
    prepare=_diffsound_mel)


kl_metric = paired_kl_metric(softmax, "softmax over the evaluator's class logits, float64")


register_metric(MetricDef(
    name="fid-mel", preset="diffsound", version=1, direction="lower", protocol=MEL_DIFFSOUND,
    summary="FID on the InceptionV3-style log-mel classifier's pooled features (22.05 kHz, 80 mels, 10 s)",
    lineage=LINEAGE, compute=frechet_metric, family="frechet"))

register_metric(MetricDef(
    name="kl-mel", preset="diffsound", version=1, direction="lower", protocol=MEL_DIFFSOUND,
    summary="KL(reference || generated) of the log-mel classifier's softmax outputs, eps 1e-6, mean over id pairs",
    lineage=LINEAGE, compute=kl_metric, kind="paired", output="logits", min_items=1))
