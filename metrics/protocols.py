"""Embedding protocols: exactly how audio is fed to a backbone for one published toolkit.

A protocol turns one clip (float32 [channels, n] at any rate) into the backbone's input examples.
Its id and version are part of every embedding cache key and every result, so two toolkits that feed
the same backbone differently never share numbers.

Duration policy (memory stays bounded whatever the clip length): a protocol with `stream` consumes a
long clip block by block (windowed protocols: the same examples as `prepare` on the whole clip, without
holding it); a protocol without one must see the whole clip (or resamples it whole before cropping), so it
takes clips of at most `max_whole_clip_s` and refuses longer ones with an error naming the clip.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from bench.core.audio import pad_to_min_length, peak, to_mono
from bench.core.resample import SincHannStream, resample, resampler_info
from metrics.backbones import vggish as vf


@dataclass(frozen=True)
class EmbeddingProtocol:
    id: str  # e.g. "vggish@audioldm"
    version: int
    backbone: str
    sample_rate: int
    resampler: str  # a bench.core.resample name, or "none" (no audio: precomputed embeddings)
    channels: str  # channel policy, in words
    steps: tuple[str, ...]  # the preprocessing, in order, in words (recorded in results)
    prepare: Callable[[np.ndarray, int], np.ndarray]  # (waveform, rate) -> backbone inputs [k, ...]
    # (read, rate) -> backbone inputs [k, ...] as they come, where read() yields the clip's float32
    # [channels, n] blocks again on every call: what `prepare` gives on the whole clip (see the module doc).
    stream: Callable[[Callable[[], Iterator[np.ndarray]], int], Iterator[np.ndarray]] | None = None
    max_whole_clip_s: float = 600.0  # the longest clip decoded whole when there is no `stream`

    def info(self) -> dict:
        return {"id": self.id, "version": self.version, "backbone": self.backbone,
                "sample_rate": self.sample_rate,
                "resampler": "none" if self.resampler == "none" else resampler_info(self.resampler),
                "channels": self.channels, "steps": list(self.steps)}


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
