"""Integrated loudness (ITU-R BS.1770-4) as descript-audiotools 0.7.2 computes it (audiotools/core/loudness.py,
`Meter.integrated_loudness` and `LoudnessMixin.loudness`), for fadtk's DAC preset, in float64:
- K-weighting: pyloudnorm's two biquads (high shelf, high pass) for the signal's rate, applied in turn;
- 0.4 s blocks every 0.1 s, the last one zero-padded to full length (julius' unfold), not only whole
  blocks as pyloudnorm takes them;
- absolute gate at -70 LUFS, relative gate 10 LU below the mean of the blocks above it;
- clips shorter than 0.5 s are measured zero-padded to 0.5 s; the result is at least -70 (silence: -70).
"""
from __future__ import annotations

import math

import numpy as np

from bench.core.extras import require

BLOCK_S = 0.400
OVERLAP = 0.75
ABSOLUTE_GATE = -70.0
MIN_LOUDNESS = -70.0
MIN_DURATION_S = 0.5


def _k_weighted(x: np.ndarray, rate: int) -> np.ndarray:
    pyloudnorm = require("pyloudnorm", "fadtk", "DAC's loudness normalisation (pyloudnorm's K-weighting filters)")
    from scipy.signal import lfilter

    for stage in pyloudnorm.Meter(rate)._filters.values():  # the coefficients audiotools takes from it
        x = stage.passband_gain * lfilter(stage.b, stage.a, x)
    return x


def integrated_loudness(x: np.ndarray, rate: int) -> float:
    """Loudness in LUFS of a mono signal [n] (audiotools' AudioSignal.loudness())."""
    x = np.asarray(x, np.float64)
    if len(x) / rate < MIN_DURATION_S:
        x = np.pad(x, (0, int((MIN_DURATION_S - len(x) / rate) * rate)))
    y = _k_weighted(x, rate)
    size, step = int(BLOCK_S * rate), int(BLOCK_S * rate * (1 - OVERLAP))
    n_blocks = math.ceil((max(len(y), size) - size) / step) + 1
    y = np.pad(y, (0, (n_blocks - 1) * step + size - len(y)))
    power = np.lib.stride_tricks.sliding_window_view(y ** 2, size)[::step].sum(axis=1) / (BLOCK_S * rate)
    with np.errstate(divide="ignore"):
        level = -0.691 + 10.0 * np.log10(power)
        above = level > ABSOLUTE_GATE
        if not above.any():
            return MIN_LOUDNESS
        relative = -0.691 + 10.0 * np.log10(power[above].mean()) - 10.0
        gated = above & (level > relative)
        if not gated.any():
            return MIN_LOUDNESS
        return max(float(-0.691 + 10.0 * np.log10(power[gated].mean())), MIN_LOUDNESS)
