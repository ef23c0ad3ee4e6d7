"""CLAP score in the four presets papers report (docs/protocols.md#clap-score).

The score is the mean, over (audio, prompt) pairs, of the cosine similarity between the CLAP audio
embedding of a generated clip and the CLAP text embedding of its prompt: no x100, no clipping at 0.
Each preset is one toolkit's exact preprocessing with its checkpoint; every clip yields exactly one
audio example. Where a toolkit draws at random (LAION's crop offsets, AudioLDM 2's swap of 10% of the
embeddings for the empty text's) we do something fixed instead, and the protocol's steps say so.
"""
from __future__ import annotations

import numpy as np

from bench.core.audio import to_mono
from bench.core.errors import AudioError
from bench.core.resample import resample
from metrics.backbones import clap
from metrics.bootstrap import mean_interval
from metrics.protocols import EmbeddingProtocol
from metrics.registry import MetricDef, register_metric

COSINE_EPS = 1e-8  # torch.nn.functional.cosine_similarity(eps=1e-8), as audiocraft and stable-audio-metrics
_PEAK_DBFS = -1.0

_CROP = ("clips longer than 10 s: the middle 10 s (LAION crops at a random offset; ours is fixed)",
         "clips shorter than 10 s: repeated a whole number of times, then zero-padded to 10 s (LAION repeatpad)")
_LOGMEL = ("log-mel inside the model, with the checkpoint's own constants: reflect-padded STFT 1024 / hop 480 "
           "(periodic Hann), power, 64 Slaney mel bands 50-14000 Hz, 10*log10(max(., 1e-10))")


def _text_steps(max_length: int) -> tuple[str, ...]:
    return (f"text: roberta-base tokenizer, padded and truncated to {max_length} tokens; RoBERTa pooler output, "
            f"2-layer ReLU projection to 512-d, L2-normalised",
            f"score: cosine(audio, text) per pair (eps {COSINE_EPS:g}), mean over pairs; no x100, no clipping at 0")


def int16_round_trip(x: np.ndarray) -> np.ndarray:
    """LAION's quantisation: clip to [-1, 1], x * 32767 truncated to int16, divided by 32767."""
    q = (np.clip(x.astype(np.float32), -1.0, 1.0) * np.float32(32767.0)).astype(np.int16)
    return (q / 32767.0).astype(np.float32)


def _general(waveform: np.ndarray, rate: int) -> np.ndarray:
    x = resample(to_mono(waveform, "mean"), rate, clap.SAMPLE_RATE, "soxr-hq")[0]
    return clap.fit_to_clip(int16_round_trip(x))[None]


def _audiocraft(waveform: np.ndarray, rate: int) -> np.ndarray:
    x = to_mono(resample(waveform, rate, clap.SAMPLE_RATE, "julius"), "mean")[0]
    return clap.fit_to_clip(x)[None]


def _stableaudio(waveform: np.ndarray, rate: int) -> np.ndarray:
    x = resample(to_mono(waveform, "mean"), rate, clap.SAMPLE_RATE, "soxr-hq")[0]
    peak = float(np.max(np.abs(x)))
    if peak > 0:  # pyloudnorm's peak normalisation; a silent clip (peak 0) would become NaN: left as is
        x = x * np.float32(10 ** (_PEAK_DBFS / 20) / peak)
    return clap.fusion_example(int16_round_trip(x))


def _audioldm2(waveform: np.ndarray, rate: int) -> np.ndarray:
    x = resample(to_mono(waveform, "first"), rate, clap.SAMPLE_RATE, "sinc-hann")[0][:clap.CLIP_SAMPLES]
    if len(x) < clap.MIN_SAMPLES:  # the reflect-padded STFT cannot run: no embedding (reported by the metric)
        return np.zeros((0, len(x)), np.float32)
    return x[None].astype(np.float32)


CLAP_GENERAL = EmbeddingProtocol(
    id="clap@general", version=1, backbone="clap-630k-audioset", sample_rate=clap.SAMPLE_RATE,
    resampler="soxr-hq", channels="mean of channels",
    steps=("mono (mean of channels), then resample to 48 kHz with soxr HQ (librosa.load(sr=48000), as "
           "laion_clap's get_audio_embedding_from_filelist)",
           "int16 round trip: clip to [-1, 1], truncate x * 32767 to int16, divide by 32767",
           *_CROP, _LOGMEL,
           "HTSAT-tiny, no fusion (630k-audioset-best.pt), 512-d projection, L2-normalised",
           *_text_steps(77)),
    prepare=_general)

CLAP_SRCGAUDIO = EmbeddingProtocol(
    id="clap@srcgaudio", version=1, backbone="clap-630k", sample_rate=clap.SAMPLE_RATE,
    resampler="soxr-hq", channels="mean of channels",
    steps=("SRC-gAudio's paper names only the checkpoint (footnote 3: 630k-best from LAION-AI/CLAP); the audio "
           "goes through LAION-CLAP's own inference, as clap@general:",
           *CLAP_GENERAL.steps[:-3],
           "HTSAT-tiny, no fusion (630k-best.pt: LAION-630k without AudioSet), 512-d projection, L2-normalised",
           *_text_steps(77)),
    prepare=_general)

CLAP_AUDIOCRAFT = EmbeddingProtocol(
    id="clap@audiocraft", version=1, backbone="clap-music-audioset", sample_rate=clap.SAMPLE_RATE,
    resampler="julius", channels="mean of channels, after resampling",
    steps=("resample to 48 kHz with julius, then mono (mean of channels): audiocraft's convert_audio",
           "no int16 quantisation and no normalisation (audiocraft passes tensors, use_tensor=True)",
           *_CROP, _LOGMEL,
           "HTSAT-base, no fusion (music_audioset_epoch_15_esc_90.14.pt), 512-d projection, L2-normalised",
           *_text_steps(77)),
    prepare=_audiocraft)

CLAP_STABLEAUDIO = EmbeddingProtocol(
    id="clap@stableaudio", version=1, backbone="clap-630k-audioset-fusion", sample_rate=clap.SAMPLE_RATE,
    resampler="soxr-hq", channels="mean of channels",
    steps=("mono (mean of channels), then resample to 48 kHz with soxr HQ (librosa.load(sr=48000, mono=True))",
           "peak-normalise to -1 dBFS (pyloudnorm.normalize.peak); silent clips (peak 0) are left as they are "
           "(the reference would turn them into NaN)",
           "int16 round trip: clip to [-1, 1], truncate x * 32767 to int16, divide by 32767",
           "clips up to 10 s: repeated a whole number of times and zero-padded to 10 s; log-mel (below) used "
           "for all four fusion channels, longer=False",
           "clips over 10 s: log-mel of the whole clip, shrunk to 1001 frames (antialiased bilinear: "
           "torchvision's Resize default since 0.17) plus three 1001-frame chunks starting in the middle of each third of the "
           "possible starts (LAION draws each start at random; ours are fixed), longer=True",
           "log-mel of LAION's data pipeline (torchaudio MelSpectrogram): centred reflect-padded STFT 1024 / hop "
           "480 (periodic Hann), power, 64 HTK-scale mel bands 50-14000 Hz without filter norm, "
           "10*log10(max(., 1e-10))",
           "HTSAT-tiny with attentional feature fusion (630k-audioset-fusion-best.pt), 512-d projection, "
           "L2-normalised",
           *_text_steps(77)),
    prepare=_stableaudio)

CLAP_AUDIOLDM2 = EmbeddingProtocol(
    id="clap@audioldm2", version=1, backbone="clap-music-speech-audioset-t512", sample_rate=clap.SAMPLE_RATE,
    resampler="sinc-hann", channels="first channel only",
    steps=("first channel (AudioLDM 2 generates mono audio)",
           "resample to 48 kHz (windowed sinc, torchaudio.functional.resample's default algorithm)",
           "no int16 quantisation, no normalisation",
           "keep the first 10 s; shorter clips are not padded: their log-mel is stretched to 1024 frames by the "
           "model's bicubic interpolation (clips under 513 samples at 48 kHz yield no embedding)",
           _LOGMEL,
           "HTSAT-base, no fusion (music_speech_audioset_epoch_15_esc_89.98.pt), 512-d projection, L2-normalised",
           *_text_steps(512),
           "AudioLDM 2 also replaces each embedding by the empty text's with probability 0.1 (unconditional_prob, "
           "torch.rand); not reproduced: it would make the score a random variable"),
    prepare=_audioldm2)


def clap_score(generated, reference, options) -> dict:
    """Mean cosine similarity of each clip's audio embedding with its caption's, bootstrap CI over clips."""
    audio = generated.per_clip("embedding")
    missing = [cid for cid, e in zip(generated.clip_ids, audio) if len(e) != 1]
    if missing:
        raise AudioError(f"{generated.set_info.get('source')}: {len(missing)} clip(s) gave no audio embedding "
                         f"(first: {missing[0]!r}); they are too short for the protocol (at least "
                         f"{clap.MIN_SAMPLES} samples at 48 kHz): drop them or pad them")
    a = np.concatenate(audio).astype(np.float64)
    t = np.asarray(generated.text, np.float64)
    cosine = (a * t).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(t, axis=1), COSINE_EPS)
    value = float(cosine.mean())
    n = len(cosine)
    result = {"value": value, "ci": None,
              "details": {"pairs": n, "std": float(cosine.std(ddof=1)) if n > 1 else 0.0,
                          "min": float(cosine.min()), "max": float(cosine.max())},
              "per_clip": [{"id": cid, "value": float(c)} for cid, c in zip(generated.clip_ids, cosine)]}
    if options.bootstrap > 0:
        result["ci"] = mean_interval(cosine, options.bootstrap, options.bootstrap_seed,
                                     "the expected cosine similarity of a generated clip with its prompt (population "
                                     "mean over clips; clips resampled)", options.ci_level).to_dict()
    return result


def _register(protocol: EmbeddingProtocol, summary: str, lineage: str, **kw) -> None:
    register_metric(MetricDef(
        name="clap", preset=protocol.id.split("@")[1], version=1, direction="higher", protocol=protocol,
        summary=summary, lineage=lineage, compute=clap_score, kind="text-audio", min_items=1, precision=4, **kw))


_register(CLAP_GENERAL, "CLAP score, LAION-CLAP's own inference (630k-audioset-best, int16 round trip, soxr)",
          "laion_clap CLAP_Module.get_audio_embedding_from_filelist (general audio)")
_register(CLAP_SRCGAUDIO, "CLAP score with 630k-best.pt (SRC-gAudio's footnote 3), LAION-CLAP's own inference",
          "SRC-gAudio (sampling-rate-controlled text-to-audio) paper, footnote 3: the LAION 630k-best checkpoint")
_register(CLAP_AUDIOCRAFT, "CLAP score as audiocraft (music_audioset checkpoint, julius, no quantisation)",
          "audiocraft CLAPTextConsistencyMetric (MusicGen's CLAP scores)")
_register(CLAP_STABLEAUDIO, "CLAP score as stable-audio-metrics (630k fusion checkpoint, -1 dBFS peak, int16)",
          "stable-audio-metrics clap_score: Stable Audio Open",
          # Every clip is peak-normalised first, so a gain change must not move it.
          expected_sensitivity=(("gain", "invariant"),))
_register(CLAP_AUDIOLDM2, "CLAP score as AudioLDM 2 (music_speech checkpoint, first 10 s unpadded, 512 tokens)",
          "AudioLDM 2's code: CLAPAudioEmbeddingClassifierFreev2.cos_similarity, without its random empty-text swap")
