"""VGGish frontend and network: numerics, checkpoint layout/validation, determinism."""

import math

import numpy as np
import pytest
import torch

from bench.core.errors import CheckpointError
from metrics.backbones import vggish as fe
from metrics.backbones.vggish import EXPECTED_SHAPES, build_vggish, embed, load_state_dict_file

# torchvggish's vggish-10086976.pth, written out by hand.
TORCHVGGISH_SHAPES = {
    "features.0.weight": (64, 1, 3, 3), "features.0.bias": (64,),
    "features.3.weight": (128, 64, 3, 3), "features.3.bias": (128,),
    "features.6.weight": (256, 128, 3, 3), "features.6.bias": (256,),
    "features.8.weight": (256, 256, 3, 3), "features.8.bias": (256,),
    "features.11.weight": (512, 256, 3, 3), "features.11.bias": (512,),
    "features.13.weight": (512, 512, 3, 3), "features.13.bias": (512,),
    "embeddings.0.weight": (4096, 12288), "embeddings.0.bias": (4096,),
    "embeddings.2.weight": (4096, 4096), "embeddings.2.bias": (4096,),
    "embeddings.4.weight": (128, 4096), "embeddings.4.bias": (128,),
}


def _mel_to_hz(mel):
    return 700.0 * (math.exp(mel / 1127.0) - 1.0)


def _band_edges_hz():
    lo, hi = 1127.0 * math.log(1 + 125.0 / 700), 1127.0 * math.log(1 + 7500.0 / 700)
    step = (hi - lo) / 65
    return [_mel_to_hz(lo + step * j) for j in range(66)]


# ---------------------------------------------------------------- frontend

def test_frame_hand_made():
    got = fe.frame(np.arange(10), 4, 3)
    assert np.array_equal(got, [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]])
    with pytest.raises(ValueError):
        got[0, 0] = 1  # overlapping view must be read-only
    two_d = np.arange(14).reshape(7, 2)
    got = fe.frame(two_d, 3, 2)
    assert got.shape == (3, 3, 2)
    assert np.array_equal(got[1], [[4, 5], [6, 7], [8, 9]])
    assert np.array_equal(got[2], two_d[4:7])


def test_short_inputs_give_nothing():
    assert fe.frame(np.arange(3.0), 4, 1).shape == (0, 4)
    assert fe.frame(np.zeros((5, 64)), 96, 96).shape == (0, 96, 64)
    log_mel = fe.log_mel_spectrogram(np.zeros(399))
    assert log_mel.shape == (0, 64)
    assert fe.examples(log_mel).shape == (0, 1, 96, 64)
    assert fe.examples(np.zeros((95, 64))).shape == (0, 1, 96, 64)


def test_examples_layout():
    log_mel = np.arange(200 * 64, dtype=np.float64).reshape(200, 64)
    ex = fe.examples(log_mel)
    assert ex.dtype == np.float32 and ex.shape == (2, 1, 96, 64)
    assert np.array_equal(ex[1, 0], log_mel[96:192].astype(np.float32))
    ex[0, 0, 0, 0] = -1  # a real copy, not a view of the input
    assert log_mel[0, 0] == 0


def test_periodic_hann():
    assert np.allclose(fe.periodic_hann(4), [0.0, 0.5, 1.0, 0.5])


def test_stft_matches_direct_dft():
    rng = np.random.default_rng(0)
    signal = rng.standard_normal(1000)
    mag = fe.stft_magnitude(signal, fft_length=512, hop_length=160, window_length=400)
    assert mag.shape == (1 + (1000 - 400) // 160, 257)
    # Frame 2 by a plain DFT sum over the 400 windowed samples (the zero padding adds nothing).
    n = np.arange(400)
    window = np.array([0.5 - 0.5 * math.cos(2 * math.pi * i / 400) for i in n])
    chunk = signal[320:720] * window
    k = np.arange(257)[:, None]
    direct = np.abs((chunk * np.exp(-2j * np.pi * k * n / 512)).sum(axis=1))
    assert np.allclose(mag[2], direct, rtol=1e-10, atol=1e-10)


def test_mel_matrix_against_loop():
    weights = fe.mel_matrix()
    assert weights.shape == (257, 64)
    assert weights.dtype == np.float64
    assert np.all(weights[0] == 0)
    assert weights.min() >= 0.0 and weights.max() <= 1.0
    edges = _band_edges_hz()
    expected = np.zeros((257, 64))
    for b in range(1, 257):
        mel = 1127.0 * math.log(1 + (b * 8000.0 / 256) / 700)
        for i in range(64):
            lo, mid, hi = (1127.0 * math.log(1 + e / 700) for e in edges[i:i + 3])
            if lo < mel <= mid:
                expected[b, i] = (mel - lo) / (mid - lo)
            elif mid < mel < hi:
                expected[b, i] = (hi - mel) / (hi - mid)
    assert np.allclose(weights, expected, rtol=0, atol=1e-12)
    bin_hz = np.linspace(0, 8000, 257)
    for i in range(64):
        column = weights[:, i]
        peak = int(np.argmax(column))
        assert column[peak] > 0
        assert edges[i] < bin_hz[peak] < edges[i + 2]
        # one peak: non-decreasing up to it, non-increasing after it
        assert np.all(np.diff(column[:peak + 1]) >= 0) and np.all(np.diff(column[peak:]) <= 0)


def test_mel_matrix_validates_edges():
    for kwargs in ({"lower_hz": -1.0}, {"lower_hz": 500.0, "upper_hz": 500.0}, {"upper_hz": 8001.0}):
        with pytest.raises(ValueError):
            fe.mel_matrix(**kwargs)


def test_log_mel_of_sine_peaks_in_its_band():
    n = 16000
    sine = np.sin(2 * np.pi * 1000.0 * np.arange(n) / 16000)
    log_mel = fe.log_mel_spectrogram(sine)
    assert log_mel.shape == (1 + (n - 400) // 160, 64)
    assert log_mel.dtype == np.float64
    centres = np.array(_band_edges_hz()[1:-1])
    band = int(np.argmin(np.abs(centres - 1000.0)))
    assert np.all(np.argmax(log_mel, axis=1) == band)
    assert fe.examples(log_mel).shape == (1, 1, 96, 64)


# ---------------------------------------------------------------- network

@pytest.fixture(scope="module")
def model():
    return build_vggish(seed=3)


@pytest.fixture(scope="module")
def batch():
    return torch.randn(5, 1, 96, 64, generator=torch.Generator().manual_seed(0)) * 3.0


def test_state_dict_matches_torchvggish(model):
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == TORCHVGGISH_SHAPES
    assert EXPECTED_SHAPES == TORCHVGGISH_SHAPES


def test_forward_shape_and_pre_activation(model, batch):
    out = embed(model, batch)
    assert out.shape == (5, 128) and out.dtype == np.float32
    assert (out < 0).any()  # no final ReLU
    assert embed(model, np.zeros((0, 1, 96, 64), np.float32)).shape == (0, 128)


def test_forward_flattens_channels_last(model, batch):
    with torch.inference_mode():
        feats = model.features(batch)
        assert feats.shape == (5, 512, 6, 4)
        expected = model.embeddings(feats.permute(0, 2, 3, 1).reshape(5, -1))
        assert torch.allclose(model(batch), expected)


def test_embed_batch_size_invariant(model, batch):
    one = embed(model, batch.numpy(), batch_size=1)
    many = embed(model, batch, batch_size=64)
    # Different batch sizes may pick different float32 kernels: compare relative to the output scale.
    scale = float(np.abs(many).max())
    np.testing.assert_allclose(one, many, rtol=1e-5, atol=1e-5 * scale)


def test_embed_rejects_bad_shape(model):
    with pytest.raises(ValueError):
        embed(model, np.zeros((2, 96, 64), np.float32))


def test_seeded_build_is_deterministic(model):
    rng_before = torch.get_rng_state()
    again = build_vggish(seed=3)
    other = build_vggish(seed=4)
    assert torch.equal(torch.get_rng_state(), rng_before)
    ref = model.state_dict()
    assert all(torch.equal(ref[k], v) for k, v in again.state_dict().items())
    assert not torch.equal(ref["features.0.weight"], other.state_dict()["features.0.weight"])
    assert not torch.equal(ref["embeddings.4.bias"], other.state_dict()["embeddings.4.bias"])
    assert not again.training


def test_build_needs_exactly_one_source(model):
    with pytest.raises(ValueError):
        build_vggish()
    with pytest.raises(ValueError):
        build_vggish(state_dict=model.state_dict(), seed=1)


def test_checkpoint_round_trip(model, batch, tmp_path):
    path = tmp_path / "vggish.pth"
    torch.save(model.state_dict(), path)
    loaded = build_vggish(state_dict=load_state_dict_file(path))
    assert np.array_equal(embed(loaded, batch), embed(model, batch))


def _fake_state_dict():
    # Stride-0 tensors: right shapes, one stored element each, so the files stay tiny.
    return {k: torch.zeros(()).expand(shape) for k, shape in TORCHVGGISH_SHAPES.items()}


def _save(tmp_path, state_dict):
    path = tmp_path / "ckpt.pth"
    torch.save(state_dict, path)
    return path


def test_fake_checkpoint_is_accepted(tmp_path):
    loaded = load_state_dict_file(_save(tmp_path, _fake_state_dict()))
    assert {k: tuple(v.shape) for k, v in loaded.items()} == TORCHVGGISH_SHAPES


def test_wrong_shape_names_key(tmp_path):
    sd = _fake_state_dict()
    sd["features.6.weight"] = torch.zeros(256, 128, 5, 5)
    path = _save(tmp_path, sd)
    with pytest.raises(CheckpointError, match=r"features\.6\.weight.*\(256, 128, 5, 5\).*\(256, 128, 3, 3\)") as e:
        load_state_dict_file(path)
    assert str(path) in str(e.value)


def test_missing_key_named_first_in_sorted_order(tmp_path):
    sd = _fake_state_dict()
    del sd["features.8.bias"]
    sd["features.3.bias"] = torch.zeros(7)  # wrong shape; sorts before features.8.bias
    with pytest.raises(CheckpointError, match=r"'features\.3\.bias'"):
        load_state_dict_file(_save(tmp_path, sd))
    sd["features.3.bias"] = torch.zeros(128)
    with pytest.raises(CheckpointError, match=r"missing key 'features\.8\.bias'"):
        load_state_dict_file(_save(tmp_path, sd))


def test_unexpected_and_prefixed_keys(tmp_path):
    sd = _fake_state_dict()
    sd["pproc.pca_means"] = torch.zeros(128)
    with pytest.raises(CheckpointError, match=r"unexpected key 'pproc\.pca_means'"):
        load_state_dict_file(_save(tmp_path, sd))
    prefixed = {"module." + k: v for k, v in _fake_state_dict().items()}
    with pytest.raises(CheckpointError, match=r"missing key 'embeddings\.0\.bias'.*prefixed with 'module\.'"):
        load_state_dict_file(_save(tmp_path, prefixed))


def test_not_a_dict_of_tensors(tmp_path):
    with pytest.raises(CheckpointError, match="dict of tensors"):
        load_state_dict_file(_save(tmp_path, [torch.zeros(1)]))
    with pytest.raises(CheckpointError, match="dict of tensors"):
        load_state_dict_file(_save(tmp_path, {"features.0.weight": 1.0}))


def test_garbage_and_missing_files(tmp_path):
    path = tmp_path / "garbage.pth"
    path.write_bytes(b"\x00not a checkpoint\xff" * 10)
    with pytest.raises(CheckpointError, match="re-fetch") as e:
        load_state_dict_file(path)
    assert str(path) in str(e.value)
    with pytest.raises(CheckpointError, match="re-fetch"):
        load_state_dict_file(tmp_path / "absent.pth")


def test_build_validates_in_memory_state_dict():
    sd = _fake_state_dict()
    sd["embeddings.4.bias"] = torch.zeros(64)
    with pytest.raises(CheckpointError, match=r"embeddings\.4\.bias"):
        build_vggish(state_dict=sd)
