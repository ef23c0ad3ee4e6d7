"""FD on OpenL3 as stable-audio-metrics computes it (src/openl3_fd.py; docs/protocols.md#openl3-fd): Stable
Audio Open's FD_openl3.

stable-audio-metrics' batched extraction (`extract_embeddings`, what its examples run) reads each file with
its channels (librosa.load(sr=None, mono=False)), peak-normalises it to -1 dBFS (pyloudnorm, over all
channels), resamples it with soxr to the evaluation rate (44.1 kHz in every example and in the reference
statistics it ships), and embeds the left and right channel separately with OpenL3 (mel256, 512-d, hop
0.5 s), concatenating them per frame into 1024-d; a mono file is copied to both sides. openl3 itself
resamples each channel to 48 kHz (resampy kaiser_best), prepends half a frame of zeros (center=True) and
zero-pads the end to whole hops. The FD is over all frames of all clips.
"""
from __future__ import annotations

import numpy as np

from bench.core.audio import peak
from bench.core.resample import resample
from metrics.backbones import openl3
from metrics.frechet import frechet_metric
from metrics.protocols import EmbeddingProtocol
from metrics.registry import MetricDef, register_metric

EVAL_RATE = 44100  # samplingrate=44100 in every example and in load/openl3_fd/*__44100__*.npz
HOP_S = 0.5  # openl3_hop_size
HOP = int(HOP_S * openl3.SAMPLE_RATE)
PEAK_DBFS = -1.0


def stereo_frames(waveform: np.ndarray, rate: int) -> np.ndarray:
    """[k, 2, 48000] stereo frame pairs of one clip, as stable-audio-metrics + openl3 frame it."""
    x = waveform[:2] if waveform.shape[0] >= 2 else np.concatenate([waveform, waveform])  # mono: fake stereo
    p = peak(x)
    if p > 0:  # pyloudnorm would divide by zero on silence; a silent clip stays silent (and is flagged)
        x = (x * np.float32(10 ** (PEAK_DBFS / 20) / p)).astype(np.float32)
    if rate != EVAL_RATE:  # soxr.resample(audio, sr, 44100): HQ, its own rounded length
        x = resample(x, rate, EVAL_RATE, "soxr-hq")[:, :int(x.shape[1] * EVAL_RATE / rate + 0.5)]
    # openl3 resamples in float64 (torchopenl3 too): OpenL3's dB spectrogram of band-limited audio is sensitive
    # to float32 rounding in the empty high bands.
    n = x.shape[1] * openl3.SAMPLE_RATE // EVAL_RATE  # resampy's floor length
    x = resample(x.astype(np.float64), EVAL_RATE, openl3.SAMPLE_RATE, "resampy-kaiser-best", np.float64)[:, :n]
    x = np.pad(x, [(0, 0), (openl3.FRAME // 2, 0)])  # center=True: half a frame of zeros in front
    if x.shape[1] < openl3.FRAME:
        x = np.pad(x, [(0, 0), (0, openl3.FRAME - x.shape[1])])
    else:
        x = np.pad(x, [(0, 0), (0, -(-(x.shape[1] - openl3.FRAME) // HOP) * HOP - (x.shape[1] - openl3.FRAME))])
    count = 1 + (x.shape[1] - openl3.FRAME) // HOP
    starts = np.arange(count) * HOP
    return np.ascontiguousarray(np.stack([x[:, s:s + openl3.FRAME] for s in starts]), dtype=np.float32)


def _protocol(content_type: str) -> EmbeddingProtocol:
    spec = openl3.SPECS[f"openl3-mel256-{content_type}-512"]
    return EmbeddingProtocol(
        id=f"{spec.backbone}@stableaudio", version=1, backbone=spec.backbone, sample_rate=openl3.SAMPLE_RATE,
        resampler="soxr-hq", channels="stereo: left and right embedded separately (first two channels; mono "
                                      "copied to both)",
        steps=("channels as read (librosa.load(sr=None, mono=False)): the first two; a mono clip is copied to "
               "left and right (stable-audio-metrics' 'fake stereo')",
               "peak-normalise to -1 dBFS over all channels (pyloudnorm.normalize.peak); a silent clip is left "
               "as it is (the reference would turn it into NaN)",
               f"resample each channel to {EVAL_RATE} Hz with soxr HQ (soxr.resample, its rounded length): the "
               "evaluation bandwidth",
               "openl3: resample each channel to 48 kHz with resampy kaiser_best (length floor(n * 48000 / "
               f"{EVAL_RATE}))",
               "center: prepend 24000 zeros; zero-pad the end to a whole number of hops (at least 1 s)",
               f"1 s frames (48000 samples) every {HOP_S:g} s ({HOP} samples); each frame pair [left, right] "
               "is one input",
               f"OpenL3 {openl3.INPUT_REPR}, content type '{content_type}', 512-d per channel (torchopenl3's "
               "PytorchOpenl3: kapre-style DFT n_dft 2048 hop 242, 256 HTK mel bands, dB re each frame's max, "
               "floor -80 dB)",
               "embedding per frame: [left 512, right 512] concatenated = 1024-d",
               "FD over all frames of all clips"),
        prepare=stereo_frames)


OPENL3_MUSIC = _protocol("music")
OPENL3_ENV = _protocol("env")
LINEAGE = "stable-audio-metrics src/openl3_fd.py (channels=2, samplingrate=44100, hop 0.5, batched): Stable Audio Open"

register_metric(MetricDef(
    name="fd-openl3", preset="stableaudio", version=1, direction="lower", protocol=OPENL3_MUSIC,
    summary="FD on stereo OpenL3 (mel256, music, 512-d per channel) frames every 0.5 s, stable-audio-metrics",
    lineage=f"{LINEAGE} (content_type='music': its MusicCaps and Song Describer evaluations)",
    compute=frechet_metric, family="frechet",
    # Every clip is peak-normalised first, so a gain change must not move it.
    expected_sensitivity=(("gain", "invariant"),)))

register_metric(MetricDef(
    name="fd-openl3-env", preset="stableaudio", version=1, direction="lower", protocol=OPENL3_ENV,
    summary="FD on stereo OpenL3 (mel256, env, 512-d per channel) frames every 0.5 s, stable-audio-metrics",
    lineage=f"{LINEAGE} (content_type='env': its AudioCaps evaluation)",
    compute=frechet_metric, family="frechet", expected_sensitivity=(("gain", "invariant"),)))
