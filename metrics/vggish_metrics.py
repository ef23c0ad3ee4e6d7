"""FAD with VGGish, in the two presets papers report: how each feeds VGGish, and the metric definitions
(docs/protocols.md#vggish-fad)."""
from __future__ import annotations

from typing import Iterator

import numpy as np

from bench.core.audio import pad_to_min_length, peak, to_mono
from bench.core.resample import SincHannStream, resample
from metrics.backbones import vggish as vf
from metrics.frechet import frechet_metric
from metrics.protocols import EmbeddingProtocol
from metrics.registry import MetricDef, register_metric


def _vggish_audioldm(waveform: np.ndarray, rate: int) -> np.ndarray:
    # audioldm_eval removes the mean at the file's own rate, before resampling.
    x = to_mono(waveform, "first").astype(np.float64)
    x = resample((x - x.mean()).astype(np.float32), rate, vf.SAMPLE_RATE, "sinc-hann")[0].astype(np.float64)
    x = pad_to_min_length(x[None, :], 2 * vf.SAMPLE_RATE)[0]
    return vf.examples(vf.log_mel_spectrogram(x), 96, 96)


def _vggish_audioldm_stream(read, rate: int) -> Iterator[np.ndarray]:
    """_vggish_audioldm on a long clip, block by block: the mean of the first channel (a first pass; summed
    per block, so it can differ from the whole-clip mean in its last bits), then the same resampling and
    examples. Long clips are longer than the 2 s zero-padding, which therefore never applies."""
    total, n = 0.0, 0
    for block in read():
        total += float(block[0].astype(np.float64).sum())
        n += block.shape[1]
    mean = total / n
    resampler, framer = SincHannStream(rate, vf.SAMPLE_RATE), vf.ExampleStream()
    for block in read():
        x = (block[:1].astype(np.float64) - mean).astype(np.float32)
        yield from framer.push(resampler.push(x)[0])
    yield from framer.push(resampler.finish()[0])


VGGISH_AUDIOLDM = EmbeddingProtocol(
    id="vggish@audioldm", version=2, backbone="vggish", sample_rate=16000, resampler="sinc-hann",
    channels="first channel only",
    steps=("first channel", "subtract the mean (at the file's rate)",
           "resample to 16 kHz (windowed sinc, torchaudio's default algorithm)", "zero-pad to at least 2 s", "log-mel 64 bands 125-7500 Hz, 25 ms / 10 ms",
           "non-overlapping 0.96 s examples", "128-d pre-activation embedding, no PCA"),
    prepare=_vggish_audioldm, stream=_vggish_audioldm_stream)

# The google preset reads 16 kHz int16 WAVs written by audiocraft (julius resampling, -1 dBFS peak).
_INT16_SCALE = 32768.0
_PEAK_DBFS = -1.0


def _vggish_google(waveform: np.ndarray, rate: int) -> np.ndarray:
    x = resample(to_mono(waveform, "mean"), rate, vf.SAMPLE_RATE, "julius")[0].astype(np.float64)
    p = peak(x)
    if p > 0:
        x = x * (10 ** (_PEAK_DBFS / 20) / p)
    ints = np.clip(np.round(x * _INT16_SCALE), -_INT16_SCALE, _INT16_SCALE - 1)
    # The reference divides by the largest sample VALUE (not magnitude), floored at 0.1.
    x = ints / max(0.1, float(ints.max()))
    windows = vf.frame(x, vf.SAMPLE_RATE, vf.SAMPLE_RATE // 2)
    if len(windows) == 0:
        return np.zeros((0, 1, vf.EXAMPLE_FRAMES, vf.NUM_BANDS), np.float32)
    return np.concatenate([vf.examples(vf.log_mel_spectrogram(w), 96, 96) for w in windows])


VGGISH_GOOGLE = EmbeddingProtocol(
    id="vggish@google", version=1, backbone="vggish", sample_rate=16000, resampler="julius",
    channels="mean of channels",
    steps=("mono (mean of channels)", "resample to 16 kHz with julius", "peak-normalise to -1 dBFS",
           "quantise to int16 values, read back unscaled", "divide by max(0.1, largest sample value)",
           "1 s windows every 0.5 s, full windows only (clips under 1 s yield nothing)",
           "log-mel 64 bands 125-7500 Hz, 25 ms / 10 ms, one 96-frame example per window",
           "128-d pre-activation embedding, no PCA"),
    prepare=_vggish_google)


register_metric(MetricDef(
    name="fad-vggish", preset="audioldm", version=1, direction="lower", protocol=VGGISH_AUDIOLDM,
    summary="FAD on VGGish, audioldm_eval preprocessing (0.96 s frames, sinc resampling, mean removed)",
    lineage="audioldm_eval's FAD code (the toolkit released with AudioLDM; Tango evaluates with it)",
    compute=frechet_metric,
    family="frechet"))

register_metric(MetricDef(
    name="fad-vggish", preset="google", version=1, direction="lower", protocol=VGGISH_GOOGLE,
    summary="FAD on VGGish, Google's reference (1 s windows every 0.5 s, int16 max-value scaling)",
    lineage="google-research frechet_audio_distance via audiocraft: MusicGen", compute=frechet_metric,
    family="frechet",
    # The preset peak-normalises every clip before quantising, so a gain change must not move it.
    expected_sensitivity=(("gain", "invariant"),)))
