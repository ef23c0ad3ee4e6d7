"""Log-mel frontend of VGGish, matching AudioSet's ``mel_features`` / ``vggish_input`` numerics.

Everything is float64 until the final examples, which are float32 like the network input.
"""

import numpy as np

SAMPLE_RATE = 16000
NUM_BANDS = 64
EXAMPLE_FRAMES = 96

_WINDOW_SECONDS = 0.025
_HOP_SECONDS = 0.010
_LOWER_HZ = 125.0
_UPPER_HZ = 7500.0
_LOG_OFFSET = 0.01  # keeps log() finite on silence


def frame(data: np.ndarray, window_length: int, hop_length: int) -> np.ndarray:
    """Full frames along axis 0: shape ``(num_frames, window_length, *data.shape[1:])``.

    Returns a read-only strided view (frames overlap in memory, so writing would corrupt neighbours).
    """
    if window_length < 1 or hop_length < 1:
        raise ValueError(f"window_length and hop_length must be >= 1, got {window_length}, {hop_length}")
    data = np.asarray(data)
    num_frames = max(0, 1 + (data.shape[0] - window_length) // hop_length)
    shape = (num_frames, window_length) + data.shape[1:]
    strides = (data.strides[0] * hop_length,) + data.strides
    return np.lib.stride_tricks.as_strided(data, shape=shape, strides=strides, writeable=False)


def periodic_hann(n: int) -> np.ndarray:
    """Periodic Hann window (the DFT-even variant TF uses, unlike ``np.hanning``)."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi / n * np.arange(n))


def stft_magnitude(signal: np.ndarray, fft_length: int, hop_length: int, window_length: int) -> np.ndarray:
    """Magnitude STFT, ``[frames, fft_length // 2 + 1]``; no padding, so only full windows count."""
    frames = frame(np.asarray(signal, dtype=np.float64), window_length, hop_length)
    windowed = frames * periodic_hann(window_length)
    return np.abs(np.fft.rfft(windowed, int(fft_length)))


def hertz_to_mel(frequencies_hz):
    """HTK-style mel scale: ``1127 * ln(1 + f / 700)``."""
    return 1127.0 * np.log(1.0 + np.asarray(frequencies_hz, dtype=np.float64) / 700.0)


def mel_matrix(num_mel_bins: int = NUM_BANDS, num_spectrogram_bins: int = 257,
               sample_rate: float = SAMPLE_RATE, lower_hz: float = _LOWER_HZ,
               upper_hz: float = _UPPER_HZ) -> np.ndarray:
    """``[num_spectrogram_bins, num_mel_bins]`` triangular weights, interpolated in mel space."""
    nyquist = sample_rate / 2.0
    if lower_hz < 0.0:
        raise ValueError(f"lower_hz must be >= 0, got {lower_hz}")
    if lower_hz >= upper_hz:
        raise ValueError(f"lower_hz ({lower_hz}) must be below upper_hz ({upper_hz})")
    if upper_hz > nyquist:
        raise ValueError(f"upper_hz ({upper_hz}) must not exceed the Nyquist frequency ({nyquist})")
    bins_mel = hertz_to_mel(np.linspace(0.0, nyquist, num_spectrogram_bins))[:, None]
    edges = np.linspace(hertz_to_mel(lower_hz), hertz_to_mel(upper_hz), num_mel_bins + 2)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins_mel - lower) / (center - lower)
    falling = (upper - bins_mel) / (upper - center)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    # The reference zeroes the DC bin whatever lower_hz is.
    weights[0, :] = 0.0
    return weights


def log_mel_spectrogram(samples_16k: np.ndarray) -> np.ndarray:
    """``[frames, 64]`` log-mel of a 16 kHz mono waveform (25 ms window, 10 ms hop)."""
    samples = np.asarray(samples_16k, dtype=np.float64)
    if samples.ndim != 1:
        raise ValueError(f"expected a 1-D waveform, got shape {samples.shape}")
    window = int(round(SAMPLE_RATE * _WINDOW_SECONDS))
    hop = int(round(SAMPLE_RATE * _HOP_SECONDS))
    fft_length = 2 ** int(np.ceil(np.log2(window)))
    spectrogram = stft_magnitude(samples, fft_length, hop, window)
    mel = spectrogram @ mel_matrix(NUM_BANDS, spectrogram.shape[1], SAMPLE_RATE)
    return np.log(mel + _LOG_OFFSET)


def examples(log_mel: np.ndarray, window_frames: int = EXAMPLE_FRAMES,
             hop_frames: int = EXAMPLE_FRAMES) -> np.ndarray:
    """Float32 network input ``[k, 1, window_frames, bands]`` cut from ``[frames, bands]`` (k may be 0)."""
    log_mel = np.asarray(log_mel, dtype=np.float64)
    if log_mel.ndim != 2:
        raise ValueError(f"expected a [frames, bands] log-mel, got shape {log_mel.shape}")
    return frame(log_mel, window_frames, hop_frames)[:, None].astype(np.float32)
