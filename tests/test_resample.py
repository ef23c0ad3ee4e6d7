import math

import numpy as np
import pytest

from bench.core.errors import BenchError, ConfigError
from bench.core.resample import RESAMPLERS, resample, resampler_info

try:
    # As the "torchaudio" resampler does: on CPU-only torch, torchaudio imports without its extension.
    from bench.core.torch_compat import ensure_torchaudio_importable

    ensure_torchaudio_importable()
    import torchaudio.functional  # noqa: F401
    HAVE_TORCHAUDIO = True
except Exception:  # the workaround failed too
    HAVE_TORCHAUDIO = False

AVAILABLE = [m for m in RESAMPLERS if m != "torchaudio" or HAVE_TORCHAUDIO]
# Max abs error against the analytic sine (amplitude 0.5, 440 Hz, 1 s), 0.1 s from either edge.
# Measured: soxr-vhq 3e-8, julius 1.2e-5, sinc-hann 3.2e-4 (its short 6-zero window ripples), soxr-hq 4.8e-7.
TOLERANCE = {"soxr-vhq": 1e-6, "julius": 1e-4, "sinc-hann": 1e-3, "torchaudio": 1e-3, "soxr-hq": 2e-6,
             "resampy-kaiser-best": 5e-5,  # measured 1.8e-5 (44.1 -> 16 kHz)
             "sinc-kaiser-best": 1e-5}


def _sine(rate, seconds=1.0, freq=440.0, amp=0.5):
    t = np.arange(int(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize("method", AVAILABLE)
@pytest.mark.parametrize("orig, new", [(44100, 16000), (16000, 48000), (48000, 44100)])
def test_band_limited_sine_matches_analytic_resampling(method, orig, new):
    out = resample(_sine(orig)[None], orig, new, method)
    assert out.dtype == np.float32 and out.ndim == 2 and out.shape[0] == 1
    assert abs(out.shape[1] - new) <= 1
    expected = _sine(new, seconds=out.shape[1] / new).astype(np.float64)
    margin = new // 10
    err = np.abs(out[0, margin:-margin] - expected[margin:-margin]).max()
    assert err < TOLERANCE[method], f"{method} {orig}->{new}: max error {err:.2e}"


@pytest.mark.parametrize("orig, new, n", [(44100, 16000, 1001), (16000, 48000, 777), (48000, 44100, 999),
                                          (22050, 32000, 1003)])
def test_sinc_hann_output_length_is_ceil(orig, new, n):
    x = np.random.default_rng(0).standard_normal((2, n)).astype(np.float32)
    assert resample(x, orig, new, "sinc-hann").shape == (2, math.ceil(n * new / orig))


def _direct_sinc_hann(x, orig_sr, new_sr, lpw=6, rolloff=0.99):
    """Output sample m (output time m/new, reduced units) = sum over input samples s near it of
    x[s] * sinc(pi t) * hann(t) * base/orig, t = (s/orig - m/new) * base clamped to [-lpw, lpw]."""
    g = math.gcd(orig_sr, new_sr)
    orig, new = orig_sr // g, new_sr // g
    base = min(orig, new) * rolloff
    width = math.ceil(lpw * orig / base)
    n = len(x)
    out = []
    for m in range(-(-n * new // orig)):
        frame, phase = divmod(m, new)
        acc = 0.0
        for k in range(-width, width + orig):
            s = frame * orig + k
            if not 0 <= s < n:
                continue
            t = min(max((k / orig - phase / new) * base, -lpw), lpw)
            sinc = 1.0 if t == 0 else math.sin(math.pi * t) / (math.pi * t)
            acc += float(x[s]) * sinc * math.cos(t * math.pi / lpw / 2) ** 2 * base / orig
        out.append(acc)
    return np.array(out)


@pytest.mark.parametrize("orig, new, n", [(3, 2, 40), (2, 3, 40), (6, 4, 25), (5, 7, 30), (44100, 16000, 500),
                                          (16000, 48000, 60), (16000, 22050, 50)])
def test_sinc_hann_equals_direct_evaluation(orig, new, n):
    x = np.random.default_rng(orig + new).uniform(-1, 1, (2, n)).astype(np.float32)
    got = resample(x, orig, new, "sinc-hann")
    for ch in range(2):
        np.testing.assert_allclose(got[ch], _direct_sinc_hann(x[ch], orig, new), rtol=0, atol=1e-6)


@pytest.mark.parametrize("method", AVAILABLE)
def test_channels_are_resampled_independently(method):
    x = np.random.default_rng(1).uniform(-0.5, 0.5, (2, 2205)).astype(np.float32)
    both = resample(x, 22050, 16000, method)
    for ch in range(2):
        np.testing.assert_allclose(both[ch], resample(x[ch:ch + 1], 22050, 16000, method)[0], atol=1e-6)


@pytest.mark.parametrize("method", RESAMPLERS)
def test_identity_at_equal_rates(method):
    x = np.random.default_rng(2).standard_normal((1, 100)).astype(np.float32)
    assert resample(x, 16000, 16000, method) is x


def test_unknown_method_lists_names():
    x = np.zeros((1, 10), np.float32)
    for call in (lambda: resample(x, 16000, 8000, "sinc"), lambda: resampler_info("sinc")):
        with pytest.raises(ConfigError) as info:
            call()
        assert "'sinc'" in str(info.value)
        assert all(name in str(info.value) for name in RESAMPLERS)


def test_bad_rates_and_input():
    x = np.zeros((1, 10), np.float32)
    with pytest.raises(ConfigError, match="orig_sr"):
        resample(x, 0, 16000, "sinc-hann")
    with pytest.raises(ConfigError, match="target_sr"):
        resample(x, 16000, 16000.0, "sinc-hann")
    with pytest.raises(BenchError, match="2-D"):
        resample(np.zeros(10, np.float32), 16000, 8000, "sinc-hann")


def test_huge_polyphase_ratio_is_refused_with_advice():
    with pytest.raises(ConfigError, match="soxr-vhq"):
        resample(np.zeros((1, 10), np.float32), 44101, 48000, "sinc-hann")


@pytest.mark.skipif(HAVE_TORCHAUDIO, reason="torchaudio loads here")
def test_torchaudio_unavailable_points_to_sinc_hann():
    with pytest.raises(BenchError, match="sinc-hann"):
        resample(np.zeros((1, 100), np.float32), 16000, 8000, "torchaudio")


@pytest.mark.skipif(not HAVE_TORCHAUDIO, reason="torchaudio cannot load on this machine")
def test_sinc_hann_matches_torchaudio():
    x = np.random.default_rng(3).uniform(-1, 1, (2, 4410)).astype(np.float32)
    np.testing.assert_allclose(resample(x, 44100, 16000, "sinc-hann"),
                               resample(x, 44100, 16000, "torchaudio"), atol=2e-4)


@pytest.mark.skipif(not HAVE_TORCHAUDIO, reason="torchaudio cannot load on this machine")
@pytest.mark.parametrize("orig, new", [(44100, 24000), (16000, 48000), (32000, 44100)])
def test_sinc_kaiser_best_matches_torchaudio_kaiser_best(orig, new):
    # fadtk's resampler (fadtk/fad.py load_audio): torchaudio.transforms.Resample with these settings
    import torch
    import torchaudio.transforms

    x = np.random.default_rng(4).uniform(-1, 1, (1, 3 * orig // 10)).astype(np.float32)
    reference = torchaudio.transforms.Resample(orig, new, lowpass_filter_width=64, rolloff=0.9475937167399596,
                                               resampling_method="sinc_interp_kaiser", beta=14.769656459379492)
    with torch.no_grad():
        expected = reference(torch.from_numpy(x)).numpy()
    # torchaudio runs in float32 (measured up to 2.4e-5 off our float64)
    np.testing.assert_allclose(resample(x, orig, new, "sinc-kaiser-best"), expected, atol=5e-5)


@pytest.mark.parametrize("method", RESAMPLERS)
def test_resampler_info(method):
    info = resampler_info(method)
    assert set(info) == {"name", "library", "library_version", "params"}
    assert info["name"] == method and isinstance(info["params"], dict)
    if method != "torchaudio":
        assert info["library_version"]


def test_float64_output_keeps_resampys_float64_result():
    import resampy

    x = np.random.default_rng(0).standard_normal((2, 4410))
    out = resample(x, 44100, 48000, "resampy-kaiser-best", np.float64)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out[:, :4800], resampy.resample(x, 44100, 48000, filter="kaiser_best", axis=-1))
    assert resample(x.astype(np.float32), 44100, 48000, "resampy-kaiser-best").dtype == np.float32
    with pytest.raises(ValueError, match="float64"):
        resample(x, 44100, 48000, "julius", np.float64)
