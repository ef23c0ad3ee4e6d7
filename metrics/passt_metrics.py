"""KL divergence over PaSST's AudioSet classes between paired clips, in the two published presets.

See docs/protocols.md#passt-kl. The presets differ in preprocessing, in how a
long clip is aggregated and in the direction of the KL, so each result names its direction:
- `kl-passt@audiocraft` (audiocraft metrics/kld.py, MusicGen): softmax per 10 s segment, segments
  paired in order, KL(reference || generated) averaged over all segment pairs.
- `kl-passt@stableaudio` (stable-audio-metrics src/passt_kld.py): 10 s windows every 5 s, mean of the
  logits over windows, one softmax per clip, KL(generated || reference) averaged over clips.
"""
from __future__ import annotations

import numpy as np

from bench.core.audio import peak, to_mono
from bench.core.errors import AudioError
from bench.core.resample import resample
from metrics.inputs import pair_by_id
from metrics.backbones import passt
from metrics.bootstrap import mean_interval
from metrics.classwise import kl_per_pair, softmax
from metrics.protocols import EmbeddingProtocol
from metrics.registry import MetricDef, register_metric

EPS = 1e-6  # both toolkits add it to the second argument's probabilities before the log
SEGMENT = passt.MAX_SAMPLES  # 10 s at 32 kHz
MIN_SEGMENT = 4800  # audiocraft keeps segments LONGER than int(0.15 * 32000) samples
HOP = 5 * passt.SAMPLE_RATE  # stable-audio-metrics: 10 s windows, 5 s overlap
PAD_ABOVE = int(0.15 * SEGMENT)  # stable-audio-metrics pads a short window only if longer than 1.5 s
PEAK_DBFS = -1.0
REF_GIVEN_GEN = "KL(reference || generated)"
GEN_GIVEN_REF = "KL(generated || reference)"
_FRONTEND = ("PaSST frontend: pre-emphasis 0.97, power STFT (n_fft 1024, Hann window 800, hop 320, centred, "
             "reflect padding), 128 Kaldi mel bands 0-15000 Hz, log(x + 1e-5), (x + 4.5) / 5",
             "passt_s_swa_p16_128_ap476 in eval mode: 527 AudioSet logits per example")


# ---------------------------------------------------------------- protocols

def _audiocraft_segments(waveform: np.ndarray, rate: int) -> list[np.ndarray]:
    x = to_mono(resample(waveform, rate, passt.SAMPLE_RATE, "julius"), "mean")[0]
    segments = [x[i:i + SEGMENT] for i in range(0, len(x), SEGMENT)]
    return [s for s in segments if len(s) > MIN_SEGMENT]  # each distinct length is fed as it is


PASST_AUDIOCRAFT = EmbeddingProtocol(
    id="passt@audiocraft", version=1, backbone=passt.BACKBONE_ID, sample_rate=passt.SAMPLE_RATE,
    resampler="julius", channels="mean of channels, after resampling each",
    steps=("resample each channel to 32 kHz with julius (audiocraft convert_audio)",
           "mono: mean of the channels",
           "split into consecutive non-overlapping 10 s segments (320000 samples), the last one shorter, "
           "no padding",
           f"drop segments of {MIN_SEGMENT} samples (0.15 s) or fewer; a clip with no segment left yields "
           "nothing and is listed",
           *_FRONTEND,
           "softmax per segment",
           "pair segment j of a generated clip with segment j of its reference clip (audiocraft stacks the "
           "segments of equal-length clips in order); unequal segment counts: the first min(count) pairs, "
           "listed",
           f"{REF_GIVEN_GEN} = sum p_ref (log p_ref - log(p_gen + 1e-6)) per segment pair",
           "mean over all segment pairs (audiocraft's running sum / count: longer clips weigh more)"),
    prepare=_audiocraft_segments)


def _stableaudio_windows(waveform: np.ndarray, rate: int) -> np.ndarray:
    x = resample(to_mono(waveform, "mean"), rate, passt.SAMPLE_RATE, "soxr-hq")[0]
    p = peak(x)
    if p > 0:  # pyloudnorm would divide by zero on silence; a silent clip stays silent (and is flagged)
        x = (x.astype(np.float64) * (10 ** (PEAK_DBFS / 20) / p)).astype(np.float32)
    windows = []
    for start in range(0, max(HOP, len(x) - HOP), HOP):
        w = x[start:start + SEGMENT]
        if PAD_ABOVE < len(w) < SEGMENT:
            w = np.pad(w, (0, SEGMENT - len(w)))
        windows.append(w)
    # Only a whole clip of at most 1.5 s stays unpadded; under MIN_SAMPLES PaSST cannot take it.
    if len(windows[0]) < passt.MIN_SAMPLES:
        return np.zeros((0, SEGMENT), np.float32)
    return np.stack(windows)


PASST_STABLEAUDIO = EmbeddingProtocol(
    id="passt@stableaudio", version=1, backbone=passt.BACKBONE_ID, sample_rate=passt.SAMPLE_RATE,
    resampler="soxr-hq", channels="mean of channels, before resampling (librosa.load mono=True)",
    steps=("mono: mean of the channels",
           "resample to 32 kHz with soxr HQ, length ceil(n * 32000 / rate) (librosa.load defaults)",
           "peak-normalise to -1 dBFS (pyloudnorm.normalize.peak); a silent clip is left as it is",
           "10 s windows (320000 samples) starting at 0, 5 s, 10 s, ... while the start is below "
           "max(5 s, length - 5 s)",
           "a window shorter than 10 s is zero-padded to 10 s if longer than 1.5 s (48000 samples); a whole "
           "clip of at most 1.5 s is fed unpadded, and one under 4801 samples (too short for PaSST; the "
           "reference skips it with an error message) yields nothing and is listed",
           *_FRONTEND,
           "mean of the logits over a clip's windows, then softmax (collect='mean')",
           f"{GEN_GIVEN_REF} = sum p_gen (log p_gen - log(p_ref + 1e-6)) per clip pair (their "
           "F.kl_div((p_ref + 1e-6).log(), p_gen); note the direction, opposite to audiocraft's)",
           "mean over clip pairs"),
    prepare=_stableaudio_windows)


# ---------------------------------------------------------------- metrics

def _scorable_pairs(generated, reference, options):
    """(gen logits, ref logits, ids) per pair with outputs on both sides, the pairing record and the
    pairs left out because a clip yielded no PaSST input."""
    pairs, pairing = pair_by_id(generated, reference, options.pairing)
    gen_out, ref_out = generated.per_clip("logits"), reference.per_clip("logits")
    scorable, unscored = [], []
    for i, j in pairs:
        if len(gen_out[i]) and len(ref_out[j]):
            scorable.append((gen_out[i], ref_out[j], {"id": generated.clip_ids[i],
                                                      "reference_id": reference.clip_ids[j]}))
        else:
            unscored.append({"id": generated.clip_ids[i], "reference_id": reference.clip_ids[j],
                             "generated_inputs": len(gen_out[i]), "reference_inputs": len(ref_out[j])})
    if not scorable:
        raise AudioError(f"no pair of clips can be scored: in every pair a clip yielded no PaSST input "
                         f"(too short; first: {unscored[:5]})")
    return scorable, pairing, {"count": len(unscored), "pairs": unscored[:20],
                               "reason": "a clip of the pair is too short to yield any PaSST input"}


def _weighted_mean_with_ci(sums: np.ndarray, weights: np.ndarray, options) -> tuple[float, dict | None]:
    """sum(sums) / sum(weights) and its bootstrap interval over pairs."""
    value = float(sums.sum() / weights.sum())
    if options.bootstrap <= 0:
        return value, None
    covers = ("the population mean KL per segment pair (clip pairs resampled with their segments)"
              if np.any(weights != 1) else "the population mean KL over clip pairs (pairs resampled)")
    interval = mean_interval(sums / weights, options.bootstrap, options.bootstrap_seed, covers, options.ci_level,
                             weights=weights)
    return value, interval.to_dict()


def kl_audiocraft(generated, reference, options) -> dict:
    scorable, pairing, unscored = _scorable_pairs(generated, reference, options)
    sums, reverse_sums, counts, per_clip, mismatched = [], [], [], [], []
    for gen, ref, ids in scorable:
        k = min(len(gen), len(ref))
        if len(gen) != len(ref):
            mismatched.append({**ids, "generated_segments": len(gen), "reference_segments": len(ref)})
        p_gen, p_ref = softmax(gen[:k]), softmax(ref[:k])
        kl = kl_per_pair(p_ref, p_gen, EPS)
        sums.append(kl.sum())
        reverse_sums.append(kl_per_pair(p_gen, p_ref, EPS).sum())
        counts.append(k)
        per_clip.append({**ids, "value": float(kl.mean()), "segments": k})
    sums, counts = np.array(sums), np.array(counts, np.float64)
    value, ci = _weighted_mean_with_ci(sums, counts, options)
    return {"value": value, "ci": ci, "per_clip": per_clip, "details": {
        "direction": REF_GIVEN_GEN, "eps": EPS, "eps_added_to": "generated probabilities",
        "averaged_over": "segment pairs", "ci_resamples": "clip pairs (with their segments)",
        "segment_pairs": int(counts.sum()), "clip_pairs": len(per_clip),
        "reverse": {"direction": GEN_GIVEN_REF, "value": float(np.sum(reverse_sums) / counts.sum())},
        "segment_count_mismatch": {"count": len(mismatched), "pairs": mismatched[:20]},
        "unscored_pairs": unscored, "pairing": pairing}}


def kl_stableaudio(generated, reference, options) -> dict:
    scorable, pairing, unscored = _scorable_pairs(generated, reference, options)
    p_gen = softmax(np.stack([gen.astype(np.float64).mean(axis=0) for gen, _, _ in scorable]))
    p_ref = softmax(np.stack([ref.astype(np.float64).mean(axis=0) for _, ref, _ in scorable]))
    kl = kl_per_pair(p_gen, p_ref, EPS)
    value, ci = _weighted_mean_with_ci(kl, np.ones_like(kl), options)
    return {"value": value, "ci": ci,
            "per_clip": [{**ids, "value": float(v)} for (_, _, ids), v in zip(scorable, kl)],
            "details": {"direction": GEN_GIVEN_REF, "eps": EPS, "eps_added_to": "reference probabilities",
                        "averaged_over": "clip pairs", "ci_resamples": "clip pairs",
                        "clip_pairs": len(kl),
                        "reverse": {"direction": REF_GIVEN_GEN,
                                    "value": float(kl_per_pair(p_ref, p_gen, EPS).mean())},
                        "unscored_pairs": unscored, "pairing": pairing}}


register_metric(MetricDef(
    name="kl-passt", preset="audiocraft", version=1, direction="lower", protocol=PASST_AUDIOCRAFT,
    summary=f"{REF_GIVEN_GEN} of PaSST AudioSet softmax per 10 s segment, audiocraft (MusicGen)",
    lineage="audiocraft metrics/kld.py PasstKLDivergenceMetric (MusicGen's numbers); AudioLDM 2's paper computes "
            "KL with PaSST 'as AudioGen' but its exact code is not what this preset reproduces",
    compute=kl_audiocraft,
    kind="paired", output="logits", min_items=1))

register_metric(MetricDef(
    name="kl-passt", preset="stableaudio", version=1, direction="lower", protocol=PASST_STABLEAUDIO,
    summary=f"{GEN_GIVEN_REF} of PaSST AudioSet softmax of window-mean logits, stable-audio-metrics",
    lineage="stable-audio-metrics src/passt_kld.py: Stable Audio Open", compute=kl_stableaudio,
    kind="paired", output="logits", min_items=1,
    # Every clip is peak-normalised first, so a gain change must not move it.
    expected_sensitivity=(("gain", "invariant"),)))
