import numpy as np
import pytest
import soundfile as sf

from bench.core.audio import (SILENCE_PEAK, check_waveform, is_silent, pad_to_min_length, peak,
                         read_audio, to_mono, write_audio)
from bench.core.errors import AudioError


def _noise(channels=2, frames=1000, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (channels, frames)).astype(np.float32)


def test_float_wav_round_trip_is_bit_exact(tmp_path):
    wave = _noise()
    wave[0, 0] = 1e-30  # a denormal-ish value and values beyond 16-bit precision must survive
    path = tmp_path / "deep" / "dir" / "x.wav"
    write_audio(path, wave, 22050)
    back, rate = read_audio(path)
    assert rate == 22050 and back.dtype == np.float32 and back.shape == (2, 1000)
    assert np.array_equal(back.view(np.uint32), wave.view(np.uint32))
    assert sf.info(str(path)).subtype == "FLOAT"
    assert [p.name for p in path.parent.iterdir()] == ["x.wav"]  # no temp file left behind


def test_read_mono_is_2d(tmp_path):
    sf.write(str(tmp_path / "m.flac"), np.zeros(100, np.float32) + 0.25, 16000)
    wave, rate = read_audio(tmp_path / "m.flac")
    assert wave.shape == (1, 100) and rate == 16000 and wave.dtype == np.float32


def test_write_replaces_existing_file_atomically(tmp_path):
    path = tmp_path / "x.wav"
    write_audio(path, _noise(seed=1), 8000)
    write_audio(path, _noise(channels=1, seed=2), 8000)
    assert np.array_equal(read_audio(path)[0], _noise(channels=1, seed=2))


def test_write_rejects_bad_input_and_leaves_nothing(tmp_path):
    path = tmp_path / "x.wav"
    bad = _noise()
    bad[1, 5] = np.nan
    with pytest.raises(AudioError, match="x.wav"):
        write_audio(path, bad, 16000)
    with pytest.raises(AudioError, match="sample rate"):
        write_audio(path, _noise(), 0)
    with pytest.raises(AudioError, match=r"\.wav extension"):
        write_audio(tmp_path / "x.flac", _noise(), 16000)
    assert list(tmp_path.iterdir()) == []


def test_read_missing_file(tmp_path):
    with pytest.raises(AudioError, match=r"nope\.wav.*not found"):
        read_audio(tmp_path / "nope.wav")


def test_read_corrupt_file(tmp_path):
    path = tmp_path / "corrupt.wav"
    path.write_bytes(b"RIFF\x00\x00garbage that is not audio" * 3)
    with pytest.raises(AudioError, match=r"corrupt\.wav.*cannot decode"):
        read_audio(path)


def test_read_empty_file(tmp_path):
    path = tmp_path / "empty.wav"
    sf.write(str(path), np.zeros((0, 1), np.float32), 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"empty\.wav.*empty"):
        read_audio(path)


def test_read_nan_samples_reports_count_and_first_frame(tmp_path):
    path = tmp_path / "nan.wav"
    data = np.zeros((50, 2), np.float32)
    data[7, 1] = np.nan
    data[9, 0] = np.inf
    data[9, 1] = np.nan
    sf.write(str(path), data, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"nan\.wav: 3 non-finite samples.*frame 7"):
        read_audio(path)


@pytest.mark.parametrize("bad, fragment", [
    (np.zeros(10, np.float32), "2-D"),
    (np.zeros((1, 10), np.int16), "float"),
    (np.zeros((1, 0), np.float32), "empty"),
    (np.array([[0.0, np.inf]], np.float32), r"1 non-finite samples.*first at frame 1"),
    ([[0.0]], "numpy array"),
])
def test_check_waveform(bad, fragment):
    with pytest.raises(AudioError, match=r"generator out"):
        check_waveform(bad, "generator out")
    with pytest.raises(AudioError, match=fragment):
        check_waveform(bad, "generator out")


def test_check_waveform_accepts_valid():
    check_waveform(_noise(), "ok")


def test_peak_and_silence():
    wave = np.zeros((2, 100), np.float32)
    assert peak(wave) == 0.0 and is_silent(wave)
    wave[1, 50] = -0.5
    assert peak(wave) == 0.5 and not is_silent(wave)
    assert is_silent(wave * (SILENCE_PEAK / 0.5) * 0.9)
    assert not is_silent(wave * (SILENCE_PEAK / 0.5) * 1.1)


def test_to_mono_policies():
    wave = np.stack([np.full(4, 1.0), np.full(4, 0.0), np.full(4, -0.4)]).astype(np.float32)
    mean = to_mono(wave, "mean")
    assert mean.shape == (1, 4) and mean.dtype == np.float32
    np.testing.assert_allclose(mean, 0.2, rtol=1e-6)
    first = to_mono(wave, "first")
    assert first.shape == (1, 4) and np.array_equal(first[0], wave[0])
    first[0, 0] = 9  # a copy, not a view into the caller's array
    assert wave[0, 0] == 1.0
    with pytest.raises(ValueError, match="mean, first"):
        to_mono(wave, "left")


def test_pad_to_min_length():
    wave = _noise(frames=10)
    padded = pad_to_min_length(wave, 15)
    assert padded.shape == (2, 15) and np.array_equal(padded[:, :10], wave) and not padded[:, 10:].any()
    assert pad_to_min_length(wave, 5) is wave
