"""Each perturbation's level does what its registration says, deterministically."""
import math

import numpy as np
import pytest

from bench.core.errors import ConfigError
from metrics.perturbations import SetContext, all_perturbations, apply, get_perturbation

RATE = 16000


def _tone(freq, n=RATE, amp=0.5, rate=RATE, phase=0.0):
    return amp * np.sin(2 * np.pi * freq * np.arange(n) / rate + phase)


def _clips():
    """Four clips of different content; clip 1 is stereo."""
    return [np.stack([_tone(220)]).astype(np.float32),
            np.stack([_tone(440, amp=0.3), _tone(660, amp=0.2)]).astype(np.float32),
            np.stack([_tone(880, amp=0.4)]).astype(np.float32),
            np.stack([_tone(1320, amp=0.1) + _tone(150, amp=0.2)]).astype(np.float32)]


def _perturb(name, clips, index, level, seed=0, rate=RATE):
    context = SetContext(name, seed, len(clips), lambda j: (clips[j], rate))
    return apply(get_perturbation(name), clips[index], rate, level, index, context)


def _db(a, b):
    return 10 * math.log10(float(np.sum(np.square(a, dtype=np.float64))) /
                           float(np.sum(np.square(b, dtype=np.float64))))


def _amplitude(y, freq, rate=RATE):
    """Amplitude of a sinusoid at `freq` in the middle half of y (whole periods, away from edges)."""
    mid = y[len(y) // 4: 3 * len(y) // 4].astype(np.float64)
    t = np.arange(len(mid)) / rate
    return 2 / len(mid) * abs(np.sum(mid * np.exp(-2j * np.pi * freq * t)))


def test_every_perturbation_is_identity_at_its_identity_level_and_keeps_shape():
    clips = _clips()
    assert {"noise", "mask", "mix", "silence", "lowpass", "clipping", "time-shift", "gain",
            "resample"} <= set(all_perturbations())
    for name, p in all_perturbations().items():
        assert p.defaults[0] == p.identity
        assert p.order(p.defaults) == p.defaults, f"{name}: defaults must run weakest to strongest"
        for index in (0, 1):
            assert np.array_equal(_perturb(name, clips, index, p.identity), clips[index])
            for level in p.defaults[1:]:
                y = _perturb(name, clips, index, level)
                assert y.shape == clips[index].shape and y.dtype == np.float32 and np.isfinite(y).all()
        assert not np.array_equal(_perturb(name, clips, 3, p.defaults[-1]), clips[3]), name


@pytest.mark.parametrize("snr", [40, 20, 3, 0, -10])
def test_noise_has_the_requested_snr(snr):
    clips = _clips()
    for index in (0, 1):
        y = _perturb("noise", clips, index, snr)
        assert abs(_db(clips[index], y - clips[index]) - snr) < 0.1


def test_noise_draw_is_shared_across_levels_and_silence_stays_silent():
    clips = _clips()
    a = _perturb("noise", clips, 0, 30) - clips[0]
    b = _perturb("noise", clips, 0, 10) - clips[0]
    assert np.corrcoef(a[0], b[0])[0, 1] > 0.9999  # the same draw, only scaled
    silent = [np.zeros((1, 800), np.float32)]
    assert np.array_equal(_perturb("noise", silent, 0, 0), silent[0])


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5, 0.77, 1.0])
def test_mask_zeroes_exactly_the_fraction_in_segments(fraction):
    n = 16037  # not a multiple of the 0.1 s segment
    clips = [np.full((2, n), 0.5, np.float32)]
    y = _perturb("mask", clips, 0, fraction)
    zeroed = (y == 0).all(axis=0)
    assert (y == 0).any(axis=0).sum() == zeroed.sum() == round(fraction * n)  # both channels together
    starts = np.flatnonzero(np.diff(np.concatenate([[0], zeroed.astype(int)])) == 1)
    assert all(s % 1600 == 0 for s in starts)  # runs begin on 0.1 s segment boundaries


def test_mask_is_nested_across_levels():
    clips = [np.full((1, 16000), 0.5, np.float32)]
    low, high = (_perturb("mask", clips, 0, f)[0] == 0 for f in (0.25, 0.5))
    assert low.sum() == 4000 and high.sum() == 8000 and not (low & ~high).any()


@pytest.mark.parametrize("sir", [30, 10, 0])
def test_mix_adds_another_clip_at_the_requested_sir(sir):
    clips = _clips()
    for index in range(4):
        residual = _perturb("mix", clips, index, sir) - clips[index]
        assert abs(_db(clips[index], residual) - sir) < 0.1
        # The residual is a scaled copy of one other clip (mono-mixed and repeated to the clip's channels).
        others = [np.broadcast_to(c.mean(axis=0), residual.shape).ravel() for c in clips]
        corr = [abs(np.corrcoef(residual.ravel(), o)[0, 1]) for o in others]
        j = int(np.argmax(corr))
        assert j != index and corr[j] > 0.9999


def test_mix_interferer_at_another_rate_and_length_is_matched():
    clips = [_tone(300, n=8000)[None].astype(np.float32), _tone(500, n=3000, rate=8000)[None].astype(np.float32)]
    rates = [16000, 8000]
    context = SetContext("mix", 0, 2, lambda j: (clips[j], rates[j]))
    y = apply(get_perturbation("mix"), clips[0], 16000, 6.0, 0, context)
    assert y.shape == clips[0].shape
    assert abs(_db(clips[0], y - clips[0]) - 6.0) < 0.1
    with pytest.raises(ConfigError, match="at least 2 clips"):
        _perturb("mix", clips[:1], 0, 10)


def test_silence_silences_exactly_that_fraction_of_clips_nested():
    clips = [np.full((1, 400), 0.1 * (i + 1), np.float32) for i in range(10)]

    def silenced(level):
        return {i for i in range(10) if not _perturb("silence", clips, i, level).any()}

    three, six = silenced(0.3), silenced(0.6)
    assert len(three) == 3 and len(six) == 6 and three < six and len(silenced(1.0)) == 10


def test_lowpass_keeps_the_passband_and_removes_the_stopband():
    x = (_tone(300) + _tone(4000))[None].astype(np.float32)
    y = _perturb("lowpass", [x], 0, 1000)[0]
    assert abs(20 * math.log10(_amplitude(y, 300) / 0.5)) < 0.1
    assert 20 * math.log10(_amplitude(y, 4000) / 0.5) < -60
    assert np.array_equal(_perturb("lowpass", [x], 0, 8000), x)  # at Nyquist: nothing to remove


@pytest.mark.parametrize("level", [0.5, 0.1])
def test_clipping_limits_the_peak_and_leaves_quiet_samples_alone(level):
    x = _tone(100)[None].astype(np.float32)
    y = _perturb("clipping", [x], 0, level)
    limit = level * np.abs(x).max()
    assert np.abs(y).max() == pytest.approx(limit, rel=1e-6)
    quiet = np.abs(x) <= limit
    assert np.array_equal(y[quiet], x[quiet]) and (np.abs(y[~quiet]) == np.float32(limit)).all()


def test_time_shift_delays_by_whole_samples():
    x = np.random.default_rng(0).uniform(-0.5, 0.5, (2, 4000)).astype(np.float32)
    y = _perturb("time-shift", [x], 0, 12.5)  # 12.5 ms = 200 samples at 16 kHz
    assert not y[:, :200].any() and np.array_equal(y[:, 200:], x[:, :-200])


@pytest.mark.parametrize("db", [-40, -6, 6])
def test_gain_scales_by_the_level_in_db(db):
    x = _clips()[1]
    assert _db(_perturb("gain", [x], 0, db), x) == pytest.approx(db, abs=1e-4)


def test_resample_down_and_up_removes_content_above_the_new_nyquist():
    x = (_tone(500) + _tone(3000))[None].astype(np.float32)
    y = _perturb("resample", [x], 0, 4000)[0]  # Nyquist 2 kHz
    assert y.shape == x[0].shape
    assert abs(20 * math.log10(_amplitude(y, 500) / 0.5)) < 0.1
    assert 20 * math.log10(_amplitude(y, 3000) / 0.5) < -40
    assert np.array_equal(_perturb("resample", [x], 0, 16000), x)
    with pytest.raises(ConfigError, match="whole number"):
        get_perturbation("resample").check_levels([4000.5])


def test_randomness_depends_only_on_seed_clip_and_name():
    clips = _clips()
    first = [_perturb("noise", clips, i, 10, seed=3) for i in range(4)]
    backwards = [_perturb("noise", clips, i, 10, seed=3) for i in reversed(range(4))][::-1]
    assert all(np.array_equal(a, b) for a, b in zip(first, backwards))  # order does not matter
    assert not np.array_equal(first[0], _perturb("noise", clips, 0, 10, seed=4))
    noise0, noise2 = first[0] - clips[0], first[2] - clips[2]
    assert abs(np.corrcoef(noise0[0], noise2[0])[0, 1]) < 0.05  # clips get independent draws
    masks = [_perturb("mask", [np.ones((1, 16000), np.float32)], 0, 0.5, seed=s) for s in (0, 0, 1)]
    assert np.array_equal(masks[0], masks[1]) and not np.array_equal(masks[0], masks[2])


def test_bad_levels_name_the_perturbation_and_range():
    with pytest.raises(ConfigError, match=r"perturbation 'mask': level 1.5 is outside the valid range \[0, 1\]"):
        get_perturbation("mask").check_levels([0.5, 1.5])
    with pytest.raises(ConfigError, match="'mix': level -3.0 is outside"):
        get_perturbation("mix").check_levels([-3.0])
    with pytest.raises(ConfigError, match="not a number"):
        get_perturbation("noise").check_levels(["loud"])
    with pytest.raises(ConfigError, match="repeat"):
        get_perturbation("noise").check_levels([10, 10.0])
    with pytest.raises(ConfigError, match="unknown perturbation 'noize'; did you mean 'noise'"):
        get_perturbation("noize")


def test_levels_are_ordered_by_strength_with_the_identity_first():
    assert get_perturbation("noise").order([0, 20, math.inf, 10]) == (math.inf, 20, 10, 0)
    assert get_perturbation("mask").order([0.5, 0.1]) == (0.0, 0.1, 0.5)
    assert get_perturbation("gain").order([6, -3, -12]) == (0.0, -3, 6, -12)
