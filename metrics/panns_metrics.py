"""FD, IS and KL on PANNs Cnn14 as audioldm_eval computes them (docs/protocols.md#panns-fd-is-and-kl):
AudioLDM, AudioLDM 2, Tango report these.

audioldm_eval's WaveDataset reads each file, keeps its first channel, subtracts its mean, resamples it
with torchaudio's default sinc to the evaluation rate, and zero-pads it to at least 32000 samples; the
whole clip then goes through Cnn14 in one forward (batch 1), giving one 2048-d embedding and one set of
527 logits per clip.
"""
from __future__ import annotations

import functools

import numpy as np

from bench.core.audio import pad_to_min_length, to_mono
from bench.core.resample import resample
from metrics.bootstrap import bootstrap_interval, content_order
from metrics.classwise import inception_score, sigmoid, softmax
from metrics.frechet import frechet_metric
from metrics.paired_kl import one_row_per_clip, paired_kl_metric
from metrics.protocols import EmbeddingProtocol
from metrics.registry import MetricDef, register_metric

# audioldm_eval's pad_short_audio(min_samples=32000) counts samples, not seconds: 2 s at 16 kHz, 1 s at 32 kHz.
MIN_SAMPLES = 32000
IS_SPLITS = 10
IS_SHUFFLE_SEED = 2020
LINEAGE = "audioldm_eval's code (the toolkit released with AudioLDM; Tango evaluates with it)"
# AudioLDM 2's paper computes KL with PaSST "in the same way as AudioGen" (section IV-B), not with PANNs.
KL_LINEAGE = (f"{LINEAGE}; not AudioLDM 2's KL, which uses PaSST as AudioGen does (see kl-passt@audiocraft)")


def _audioldm_input(waveform: np.ndarray, rate: int, target_rate: int) -> np.ndarray:
    x = to_mono(waveform, "first").astype(np.float64)
    x = (x - x.mean()).astype(np.float32)  # before resampling, at the file's own rate, as audioldm_eval
    x = pad_to_min_length(resample(x, rate, target_rate, "sinc-hann"), MIN_SAMPLES)
    return np.ascontiguousarray(x, dtype=np.float32)  # [1, n]: the whole clip is one input


def _protocol(backbone: str, rate: int, window: int, hop: int, fmax: int, extra: tuple[str, ...] = ()):
    return EmbeddingProtocol(
        id=f"{backbone}@audioldm", version=1, backbone=backbone, sample_rate=rate, resampler="sinc-hann",
        channels="first channel only",
        steps=("first channel only", "subtract the clip's mean (at the file's rate, before resampling)",
               f"resample to {rate // 1000} kHz (windowed sinc, torchaudio's default algorithm)",
               f"zero-pad at the end to at least {MIN_SAMPLES} samples ({MIN_SAMPLES / rate:g} s)",
               "the whole clip is one input (no cropping, no windows, no peak normalisation)",
               f"log-mel front end: Hann window {window}, hop {hop}, 64 mels 50-{fmax} Hz "
               "(STFT kernels and filterbank as stored in the checkpoint)", *extra,
               "2048-d embedding ReLU(fc1(max + mean over time)); 527 pre-sigmoid logits fc_audioset(embedding)"),
        prepare=functools.partial(_audioldm_input, target_rate=rate))


PANNS_16K_AUDIOLDM = _protocol("panns-cnn14-16k", 16000, 512, 160, 8000)
PANNS_32K_AUDIOLDM = _protocol("panns-cnn14-32k", 32000, 1024, 320, 14000, extra=(
    "fmax 14000 as PANNs and audioldm_eval build Cnn14 at 32 kHz (frechet-audio-distance builds it with "
    "16000; the checkpoint's stored filterbank replaces either)",))


def inception_metric(generated, reference, options) -> dict:
    """Mean IS over 10 splits after a fixed shuffle (seed 2020); the std over splits is in details."""
    logits = one_row_per_clip(generated, "logits")
    mean, std = inception_score(logits, IS_SPLITS, IS_SHUFFLE_SEED)
    result = {"value": mean, "ci": None,
              "details": {"std_over_splits": std, "splits": IS_SPLITS, "shuffle_seed": IS_SHUFFLE_SEED,
                          "probabilities": "softmax over the 527 pre-sigmoid logits, float64",
                          "ci_note": "the CI resamples clips; std_over_splits is what audioldm_eval reports. "
                                     "The value splits the clips in file order (the toolkit's); the interval "
                                     "works on the clips in content order, so its reflection point (ci.estimate) "
                                     "can differ slightly from the value"}}
    if options.bootstrap > 0:
        order = content_order(logits)
        canonical = logits[order]
        result["ci"] = bootstrap_interval(
            lambda counts: inception_score(np.repeat(canonical, counts[0][order], axis=0), IS_SPLITS,
                                           IS_SHUFFLE_SEED)[0],
            [order], options.bootstrap, options.bootstrap_seed, IS_COVERS, options.ci_level, floor=1.0).to_dict()
    return result


IS_COVERS = ("the population Inception Score exp(E KL(p(y|x) || p(y))) of the generator's output distribution "
             "(the 10-split estimate is biased at finite n; the interval is bias-corrected)")


register_metric(MetricDef(
    name="fd-panns", preset="audioldm", version=1, direction="lower", protocol=PANNS_16K_AUDIOLDM,
    summary="FD on PANNs Cnn14_16k 2048-d clip embeddings, audioldm_eval preprocessing (16 kHz, whole clip)",
    lineage=LINEAGE, compute=frechet_metric, family="frechet"))

register_metric(MetricDef(
    name="fd-panns32k", preset="audioldm", version=1, direction="lower", protocol=PANNS_32K_AUDIOLDM,
    summary="FD on PANNs Cnn14 (32 kHz, fmax 14000, not frechet-audio-distance's 16000) 2048-d clip embeddings",
    lineage="audioldm_eval's code with its 32 kHz Cnn14", compute=frechet_metric, family="frechet"))

register_metric(MetricDef(
    name="is-panns", preset="audioldm", version=1, direction="higher", protocol=PANNS_16K_AUDIOLDM,
    summary="Inception Score on PANNs Cnn14_16k softmax(logits): mean over 10 splits, shuffle seed 2020",
    lineage=LINEAGE, compute=inception_metric, kind="generated", output="logits", min_items=IS_SPLITS))

register_metric(MetricDef(
    name="kl-panns", preset="audioldm", version=1, direction="lower", protocol=PANNS_16K_AUDIOLDM,
    summary="KL(reference || generated) of PANNs Cnn14_16k softmax outputs, eps 1e-6, mean over id pairs",
    lineage=KL_LINEAGE, compute=paired_kl_metric(softmax, "softmax over the 527 pre-sigmoid logits, float64"),
    kind="paired", output="logits", min_items=1))

register_metric(MetricDef(
    name="kl-panns-sigmoid", preset="audioldm", version=1, direction="lower", protocol=PANNS_16K_AUDIOLDM,
    summary="sums p log(p/q) over 527 sigmoid outputs; not a Bernoulli KL (audioldm_eval's 'KL_Sigmoid')",
    lineage=KL_LINEAGE, compute=paired_kl_metric(
        sigmoid, "sigmoid of each of the 527 logits (independent, unnormalised); sums p log(p/q) over "
                 "them, not a Bernoulli KL"),
    kind="paired", output="logits", min_items=1))
