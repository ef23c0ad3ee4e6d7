"""FD, KL and IS on PANNs and PaSST as av-benchmark computes them (MMAudio's tables; docs/protocols.md#av-benchmark).

av-benchmark (hkchengrex/av-benchmark) starts from audioldm_eval's code but feeds the models differently:
av_bench/data/audio_dataset.py AudioDataset averages the channels (audioldm_eval keeps the first one),
subtracts the mean, resamples with torchaudio's Resample, and keeps the first `audio_length` seconds (8 s,
MMAudio's clip length and extract()'s default) without padding; av_bench/extract.py then zero-pads (or cuts)
the 32 kHz audio to exactly 10 s for PaSST. Its KL (av_bench/metrics/kl.py) takes log_softmax of both sides,
with no eps. The backbones are this project's PANNs Cnn14_16k and PaSST (the same checkpoints av-benchmark loads).
"""
from __future__ import annotations

import numpy as np

from bench.core.audio import to_mono
from bench.core.resample import resample
from metrics.backbones import panns, passt
from metrics.bootstrap import mean_interval
from metrics.classwise import log_softmax
from metrics.frechet import frechet_metric
from metrics.inputs import pair_by_id
from metrics.paired_kl import one_row_per_clip
from metrics.panns_metrics import IS_SPLITS, inception_metric
from metrics.protocols import EmbeddingProtocol
from metrics.registry import MetricDef, register_metric

AUDIO_LENGTH_S = 8.0  # --audio_length: MMAudio generates and evaluates 8 s clips (extract()'s default)
PANNS_SPEC = panns.SPECS["panns-cnn14-16k"]  # ExtractionModels: Cnn14 at 16 kHz, window 512, hop 160, fmax 8000
LINEAGE = ("av-benchmark (hkchengrex/av-benchmark, MMAudio's evaluation code): av_bench/extract.py, "
           "av_bench/evaluate.py")
KL_DIRECTION = "KL(reference || generated)"
_COMMON = ("mono: mean of the channels (av_bench AudioDataset.read_from_file)",
           "subtract the clip's mean, at the file's rate",
           "resample (windowed sinc, torchaudio's Resample default algorithm)",
           f"keep the first {AUDIO_LENGTH_S:g} s (--audio_length; shorter clips are not padded)")


def _mono_centred(waveform: np.ndarray, rate: int, target_rate: int) -> np.ndarray:
    x = to_mono(waveform, "mean").astype(np.float64)
    x = (x - x.mean()).astype(np.float32)
    x = resample(x, rate, target_rate, "sinc-hann")[0]
    return x[:int(target_rate * AUDIO_LENGTH_S)]


def _panns_input(waveform: np.ndarray, rate: int) -> np.ndarray:
    x = _mono_centred(waveform, rate, PANNS_SPEC.sample_rate)
    if len(x) < PANNS_SPEC.min_samples:  # Cnn14 cannot pool fewer frames: no embedding (listed per clip)
        return np.zeros((0, len(x)), np.float32)
    return np.ascontiguousarray(x[None], dtype=np.float32)


def _passt_input(waveform: np.ndarray, rate: int) -> np.ndarray:
    x = _mono_centred(waveform, rate, passt.SAMPLE_RATE)[:passt.MAX_SAMPLES]
    return np.pad(x, (0, passt.MAX_SAMPLES - len(x)))[None].astype(np.float32)


PANNS_AVBENCH = EmbeddingProtocol(
    id="panns-cnn14-16k@avbench", version=1, backbone=PANNS_SPEC.backbone, sample_rate=PANNS_SPEC.sample_rate,
    resampler="sinc-hann", channels="mean of channels",
    steps=(*_COMMON[:2], _COMMON[2].replace("resample", "resample to 16 kHz"), _COMMON[3],
           f"clips under {PANNS_SPEC.min_samples} samples ({PANNS_SPEC.min_samples / 16000:.2f} s) yield no "
           "embedding (Cnn14 cannot pool them; av-benchmark would fail) and are listed",
           "the whole (cut) clip is one input, batch of one clip",
           "Cnn14_16k: log-mel Hann 512, hop 160, 64 mels 50-8000 Hz (from the checkpoint)",
           "'2048' = ReLU(fc1(max + mean over time)); 'logits' = fc_audioset of it (pre-sigmoid)"),
    prepare=_panns_input)

PASST_AVBENCH = EmbeddingProtocol(
    id="passt@avbench", version=1, backbone=passt.BACKBONE_ID, sample_rate=passt.SAMPLE_RATE,
    resampler="sinc-hann", channels="mean of channels",
    steps=(*_COMMON[:2], _COMMON[2].replace("resample", "resample to 32 kHz"), _COMMON[3],
           "zero-pad at the end (or cut) to exactly 10 s = 320000 samples (av_bench/extract.py)",
           "one input per clip: hear21passt get_basic_model(mode='all'), passt_s_swa_p16_128_ap476 in eval mode",
           "PaSST frontend: pre-emphasis 0.97, power STFT (n_fft 1024, Hann 800, hop 320), 128 Kaldi mel bands "
           "0-15000 Hz, log(x + 1e-5), (x + 4.5) / 5",
           "outputs: 527 logits (the first 527 of mode='all') and the 768-d embedding (the rest: mean of the "
           "class and distillation tokens, before the head)"),
    prepare=_passt_input)


def kl_avbench(generated, reference, options) -> dict:
    """sum_c p_ref (log p_ref - log p_gen) from log_softmax of both sides (no eps), mean over id pairs:
    F.kl_div(log_softmax(gen), log_softmax(ref), log_target=True, reduction='sum') / N."""
    pairs, pairing = pair_by_id(generated, reference, options.pairing)
    gen_index, ref_index = (np.array(side) for side in zip(*pairs))
    log_gen = log_softmax(one_row_per_clip(generated, "logits")[gen_index])
    log_ref = log_softmax(one_row_per_clip(reference, "logits")[ref_index])
    per_pair = (np.exp(log_ref) * (log_ref - log_gen)).sum(axis=1)
    result = {"value": float(per_pair.mean()), "ci": None,
              "details": {"direction": KL_DIRECTION, "eps": None,
                          "probabilities": "log_softmax of both sides' logits, float64 (no eps)",
                          "reduction": "sum over classes and pairs, divided by the number of pairs",
                          "pairing": pairing},
              "per_clip": [{"id": generated.clip_ids[i], "reference_id": reference.clip_ids[j], "value": float(v)}
                           for i, j, v in zip(gen_index, ref_index, per_pair)]}
    if options.bootstrap > 0:
        result["ci"] = mean_interval(per_pair, options.bootstrap, options.bootstrap_seed,
                                     "the population mean over id pairs of the per-pair KL (pairs resampled)",
                                     options.ci_level).to_dict()
    return result


_NAMES = {"panns": ("PANNs Cnn14_16k", PANNS_AVBENCH, "FD-PANN / KL-PANNS-softmax / ISC-PANNS"),
          "passt": ("PaSST", PASST_AVBENCH, "FD-PASST / KL-PASST-softmax / ISC-PASST")}

for _model, (_title, _protocol, _keys) in _NAMES.items():
    _lineage = f"{LINEAGE} ({_keys})"
    _dim = "2048-d '2048'" if _model == "panns" else "768-d"
    register_metric(MetricDef(
        name=f"fd-{_model}", preset="avbench", version=1, direction="lower", protocol=_protocol,
        summary=f"FD on {_title} {_dim} clip embeddings, av-benchmark input (mono mean, first 8 s)",
        lineage=_lineage, compute=frechet_metric, family="frechet"))
    register_metric(MetricDef(
        name=f"kl-{_model}", preset="avbench", version=1, direction="lower", protocol=_protocol,
        summary=f"{KL_DIRECTION} of {_title} softmax outputs (log_softmax both sides, no eps), mean over id pairs",
        lineage=_lineage, compute=kl_avbench, kind="paired", output="logits", min_items=1))
    register_metric(MetricDef(
        name=f"is-{_model}", preset="avbench", version=1, direction="higher", protocol=_protocol,
        summary=f"Inception Score on {_title} softmax(logits): mean over 10 splits, shuffle seed 2020",
        lineage=_lineage, compute=inception_metric, kind="generated", output="logits",
        min_items=IS_SPLITS))
