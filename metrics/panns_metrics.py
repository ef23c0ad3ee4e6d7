"""FD, IS and KL on PANNs Cnn14 as audioldm_eval computes them (PROTOCOLS.md, "FD and IS with PANNs"
and "KL divergence over AudioSet classes"): AudioLDM, AudioLDM 2, Tango report these.

audioldm_eval's WaveDataset reads each file, keeps its first channel, subtracts its mean, resamples it
with torchaudio's default sinc to the evaluation rate, and zero-pads it to at least 32000 samples; the
whole clip then goes through Cnn14 in one forward (batch 1), giving one 2048-d embedding and one set of
527 logits per clip.
"""
from __future__ import annotations

import functools

import numpy as np

from bench.audio import pad_to_min_length, to_mono
from bench.errors import BenchError
from bench.resample import resample
from bench.scoring import pair_by_id
from metrics.bootstrap import bootstrap_interval
from metrics.classwise import inception_score, kl_per_pair, sigmoid, softmax
from metrics.fad import frechet_metric
from metrics.protocols import EmbeddingProtocol
from metrics.registry import MetricDef, register_metric

# audioldm_eval's pad_short_audio(min_samples=32000) counts samples, not seconds: 2 s at 16 kHz, 1 s at 32 kHz.
MIN_SAMPLES = 32000
IS_SPLITS = 10
IS_SHUFFLE_SEED = 2020
KL_EPS = 1e-6
LINEAGE = "audioldm_eval: AudioLDM, AudioLDM 2, Tango"


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


def _one_row_per_clip(emb, output: str) -> np.ndarray:
    rows = emb.per_clip(output)
    bad = [cid for cid, r in zip(emb.clip_ids, rows) if len(r) != 1]
    if bad:
        raise BenchError(f"{emb.set_info.get('source')}: expected one {output} vector per clip, clip "
                         f"{bad[0]!r} has {len(rows[emb.clip_ids.index(bad[0])])}")
    return np.concatenate(rows).astype(np.float64)


def inception_metric(generated, reference, options) -> dict:
    """Mean IS over 10 splits after a fixed shuffle (seed 2020); the std over splits is in details."""
    logits = _one_row_per_clip(generated, "logits")
    mean, std = inception_score(logits, IS_SPLITS, IS_SHUFFLE_SEED)
    result = {"value": mean, "ci": None,
              "details": {"std_over_splits": std, "splits": IS_SPLITS, "shuffle_seed": IS_SHUFFLE_SEED,
                          "probabilities": "softmax over the 527 pre-sigmoid logits, float64",
                          "ci_note": "the CI resamples clips; std_over_splits is what audioldm_eval reports"}}
    if options.bootstrap > 0:
        result["ci"] = bootstrap_interval(
            lambda counts: inception_score(np.repeat(logits, counts[0], axis=0), IS_SPLITS, IS_SHUFFLE_SEED)[0],
            [len(logits)], options.bootstrap, options.bootstrap_seed, options.ci_level, estimate=mean,
            floor=1.0).to_dict()
    return result


def _kl_metric(probabilities, description: str):
    def compute(generated, reference, options) -> dict:
        """Mean over pairs (same id) of KL(reference || generated) = sum_c r_c log(r_c / (g_c + eps))."""
        pairs, pairing = pair_by_id(generated, reference, options.pairing)
        gen_index, ref_index = (np.array(side) for side in zip(*pairs))
        gen = probabilities(_one_row_per_clip(generated, "logits")[gen_index])
        ref = probabilities(_one_row_per_clip(reference, "logits")[ref_index])
        per_pair = kl_per_pair(ref, gen, eps=KL_EPS)
        value = float(per_pair.mean())
        result = {"value": value, "ci": None,
                  "details": {"direction": "KL(reference || generated)", "eps": KL_EPS,
                              "eps_added_to": "generated probabilities", "probabilities": description,
                              "reduction": "sum over classes, mean over pairs", "pairing": pairing,
                              "sign": "can be slightly negative for near-identical pairs, since eps is added "
                                      "to the generated side only (the sigmoid variant can be negative "
                                      "outright: it is not a divergence)"},
                  "per_clip": [{"id": generated.clip_ids[i], "reference_id": reference.clip_ids[j],
                                "value": float(v)} for i, j, v in zip(gen_index, ref_index, per_pair)]}
        if options.bootstrap > 0:
            result["ci"] = bootstrap_interval(
                lambda counts: float(counts[0] @ per_pair / counts[0].sum()), [len(per_pair)],
                options.bootstrap, options.bootstrap_seed, options.ci_level, estimate=value).to_dict()
        return result

    return compute


register_metric(MetricDef(
    name="fd-panns", preset="audioldm", version=1, direction="lower", protocol=PANNS_16K_AUDIOLDM,
    summary="FD on PANNs Cnn14_16k 2048-d clip embeddings, audioldm_eval preprocessing (16 kHz, whole clip)",
    lineage=LINEAGE, compute=frechet_metric, family="frechet"))

register_metric(MetricDef(
    name="fd-panns32k", preset="audioldm", version=1, direction="lower", protocol=PANNS_32K_AUDIOLDM,
    summary="FD on PANNs Cnn14 (32 kHz, fmax 14000, not frechet-audio-distance's 16000) 2048-d clip embeddings",
    lineage="audioldm_eval at 32 kHz", compute=frechet_metric, family="frechet"))

register_metric(MetricDef(
    name="is-panns", preset="audioldm", version=1, direction="higher", protocol=PANNS_16K_AUDIOLDM,
    summary="Inception Score on PANNs Cnn14_16k softmax(logits): mean over 10 splits, shuffle seed 2020",
    lineage=LINEAGE, compute=inception_metric, kind="generated", output="logits", min_items=IS_SPLITS))

register_metric(MetricDef(
    name="kl-panns", preset="audioldm", version=1, direction="lower", protocol=PANNS_16K_AUDIOLDM,
    summary="KL(reference || generated) of PANNs Cnn14_16k softmax outputs, eps 1e-6, mean over id pairs",
    lineage=LINEAGE, compute=_kl_metric(softmax, "softmax over the 527 pre-sigmoid logits, float64"),
    kind="paired", output="logits", min_items=1))

register_metric(MetricDef(
    name="kl-panns-sigmoid", preset="audioldm", version=1, direction="lower", protocol=PANNS_16K_AUDIOLDM,
    summary="sums p log(p/q) over 527 sigmoid outputs; not a Bernoulli KL (audioldm_eval's 'KL_Sigmoid')",
    lineage=LINEAGE, compute=_kl_metric(
        sigmoid, "sigmoid of each of the 527 logits (independent, unnormalised); sums p log(p/q) over "
                 "them, not a Bernoulli KL"),
    kind="paired", output="logits", min_items=1))
