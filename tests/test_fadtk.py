"""fadtk presets (metrics/fadtk_metrics.py) against fadtk 1.1.0's own loader code on identical inputs and
identical seeded random weights: fadtk's `ModelLoader._get_embedding` methods are called directly with
the model objects they expect (its `load_model` downloads, so the test hands it the model instead).

fadtk's file reading (torchaudio.load / torchaudio.save) needs torchcodec, which cannot load on this
CPU-only torch: the reading test rebuilds those steps from fadtk/fad.py load_audio with torchaudio's
Resample (the same constructor arguments) and soundfile (torchaudio's "soundfile" backend, fadtk's default).
"""
from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf
import torch

from bench.core.errors import CheckpointError
from metrics.backbones import encodec
from metrics.backbones.base import WeightsChoice
from metrics.fadtk_metrics import CLAP_AUDIO, ENCODEC_24K, ENCODEC_48K, fadtk_audio
from metrics.registry import get_metric


@pytest.fixture(scope="module")
def fadtk_loaders():
    from bench.core.torch_compat import ensure_torchaudio_importable, ensure_torchvision_importable

    ensure_torchvision_importable()
    ensure_torchaudio_importable()
    return pytest.importorskip("fadtk.model_loader")


def _quantised(rng, n, channels=1):
    """Audio already at int16 / 32768 values, so fadtk's WAV round trip leaves it as it is."""
    return (np.round(rng.uniform(-0.6, 0.6, (channels, n)) * 32768) / 32768).astype(np.float32)


def test_fadtk_audio_matches_fadtk_load_audio_steps():
    from bench.core.torch_compat import ensure_torchaudio_importable

    ensure_torchaudio_importable()
    import torchaudio

    x = np.random.default_rng(0).uniform(-0.7, 0.7, (2, 4410)).astype(np.float32)
    x[0, :5] = [1.4, -1.3, 0.99999, 1e-6, -1e-6]  # clipping and rounding at the edges of int16
    mono = torch.mean(torch.from_numpy(x), 0).unsqueeze(0)
    resampled = torchaudio.transforms.Resample(44100, 24000, lowpass_filter_width=64, rolloff=0.9475937167399596,
                                               resampling_method="sinc_interp_kaiser",
                                               beta=14.769656459379492)(mono)
    buffer = io.BytesIO()
    sf.write(buffer, resampled.numpy().T, 24000, subtype="PCM_16", format="WAV")  # torchaudio.save, soundfile
    buffer.seek(0)
    expected = sf.read(buffer, dtype="int16")[0] / 32768.0  # ModelLoader.load_wav
    got = fadtk_audio(x, 44100, 24000)
    assert got.shape == expected.shape
    # torchaudio resamples in float32, we in float64: at most one int16 step apart, and rarely
    steps = np.abs(got - expected) * 32768
    assert steps.max() <= 1.0 + 1e-6 and np.mean(steps > 0) < 0.01


@pytest.mark.parametrize("backbone", ["encodec-24khz", "encodec-48khz"])
def test_encodec_matches_fadtk_encodec_emb_model(fadtk_loaders, backbone, tmp_path):
    from encodec.model import EncodecModel

    spec = encodec.SPECS[backbone]
    torch.manual_seed(3)
    if backbone == "encodec-24khz":  # encodec's encodec_model_24khz / _48khz, without the download
        model = EncodecModel._get_model([1.5, 3., 6., 12., 24.], 24000, 1, True, "weight_norm", False, None,
                                        "encodec_24khz")
        fadtk_model = fadtk_loaders.EncodecEmbModel("24k")
    else:
        model = EncodecModel._get_model([3., 6., 12., 24.], 48000, 2, False, "time_group_norm", True, 1.,
                                        "encodec_48khz")
        fadtk_model = fadtk_loaders.EncodecEmbModel("48k")
    for name, p in model.named_parameters():  # non-trivial norms and biases too
        if name.endswith(("bias", "weight_g")) or ".norm." in name:
            p.data.uniform_(-0.5, 1.5)
    checkpoint = tmp_path / spec.filename
    torch.save(model.state_dict(), checkpoint)
    fadtk_model.model, fadtk_model.device = model.eval(), torch.device("cpu")

    x = _quantised(np.random.default_rng(1), int(1.25 * spec.sample_rate))
    wav = torch.from_numpy(x).expand(spec.channels, -1)[None]  # fadtk's load_wav: convert_audio, unsqueeze
    with torch.no_grad():
        expected = fadtk_model._get_embedding(wav).numpy()

    from metrics.backbones.base import load_backbone

    bb = load_backbone(backbone, WeightsChoice(local_files=((backbone, str(checkpoint)),), allow_download=False,
                                               cache_root=tmp_path))
    assert bb.weights_label == "unverified"  # a local file whose sha256 does not start with the published prefix
    protocol = ENCODEC_24K if backbone == "encodec-24khz" else ENCODEC_48K
    examples = protocol.prepare(x, spec.sample_rate)
    got = np.concatenate([bb.embed(np.stack([e]))["embedding"].reshape(-1, 128) for e in examples])
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_encodec_checkpoint_that_does_not_fit_names_the_file(tmp_path):
    spec = encodec.SPECS["encodec-24khz"]
    bad = tmp_path / "bad.th"
    torch.save({"encoder.model.0.conv.conv.bias": torch.zeros(3)}, bad)
    with pytest.raises(CheckpointError, match="bad.th.*does not fit the EnCodec 24 kHz encoder"):
        encodec.load_release(bad, spec)


def test_clap_chunks_match_fadtk_clap_laion_model(fadtk_loaders):
    """fadtk's CLAPLaionModel._get_embedding hands laion_clap 10 s chunks; a stand-in model records them
    (the network itself is laion_clap's, checked against ours in tests/test_clap.py)."""
    seen = []

    class Recorder:
        def get_audio_embedding_from_data(self, x, use_tensor):
            assert use_tensor
            seen.append(x.numpy().copy())
            return torch.zeros(1, 512)

    loader = object.__new__(fadtk_loaders.CLAPLaionModel)  # its __init__ downloads the checkpoint
    loader.sr, loader.model, loader.device = 48000, Recorder(), torch.device("cpu")
    x = _quantised(np.random.default_rng(2), int(12.3 * 48000))
    x[0, :3] = [-32768 / 32768, 32767 / 32768, 0.5]
    loader._get_embedding(x[0].astype(np.float64))  # load_wav gives float64 int16 / 32768
    ours = CLAP_AUDIO.prepare(x, 48000)
    assert ours.shape == (13, 480000) and len(seen) == 13
    np.testing.assert_array_equal(ours, np.concatenate(seen))


def test_fadtk_presets_are_frechet_with_kad_and_inf_variants():
    for name, backbone in [("clap-laion", "clap-630k-audioset"), ("clap-laion-music", "clap-music-audioset"),
                           ("encodec-emb", "encodec-24khz"), ("encodec-emb-48k", "encodec-48khz")]:
        base = get_metric(f"fad-{name}@fadtk")
        assert base.protocol.backbone == backbone and base.family == "frechet" and "fadtk" in base.lineage
        assert get_metric(f"kad-{name}@fadtk").protocol is base.protocol
        assert get_metric(f"fad-inf-{name}@fadtk").protocol is base.protocol


def test_untrained_encodec_frames_flatten_per_clip_in_order():
    from bench.batching import embed_clip
    from metrics.backbones.base import load_backbone

    bb = load_backbone("encodec-48khz", WeightsChoice(mode="untrained"))
    assert bb.weights_label == "untrained"
    x = np.random.default_rng(5).uniform(-0.5, 0.5, (2, 54000)).astype(np.float32)
    examples = ENCODEC_48K.prepare(x, 48000)  # 1 s, then 0.125 s: two shapes, two batches
    out = embed_clip(bb, examples, batch_size=16)["embedding"]
    one_by_one = np.concatenate([bb.embed(np.stack([e]))["embedding"][0] for e in examples])
    assert out.shape == (150 + 19, 128)
    np.testing.assert_allclose(out, one_by_one, rtol=1e-5, atol=1e-6)


# ---- DAC (fadtk's DACModel: audiotools' loudness normalisation, 5 s windows, encoder frames) ----------
def _audiotools_loudness_module():
    """descript-audiotools' loudness.py itself (its package __init__ needs tensorboard & co., not installed)."""
    import importlib.metadata
    import importlib.util

    from bench.core.torch_compat import ensure_torchaudio_importable

    try:
        files = importlib.metadata.files("descript-audiotools") or []
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("descript-audiotools is not installed (pip install descript-audiotools==0.7.2 --no-deps)")
    path = next(f.locate() for f in files if str(f).endswith("core/loudness.py"))
    ensure_torchaudio_importable()
    spec = importlib.util.spec_from_file_location("audiotools_loudness", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("seconds, gain", [(2.0, 0.1), (0.3, 0.5), (1.7, 1e-4), (1.0, 0.0)])
def test_loudness_matches_audiotools_meter(seconds, gain):
    from metrics.loudness import integrated_loudness

    audiotools = _audiotools_loudness_module()
    rate = 44100
    rng = np.random.default_rng(int(seconds * 10))
    x = (gain * rng.standard_normal(int(seconds * rate)) * np.linspace(0.2, 1, int(seconds * rate))).astype(np.float32)
    # LoudnessMixin.loudness: zero-pad clips under 0.5 s, Meter.integrated_loudness, floor at -70
    padded = np.pad(x, (0, max(0, int((0.5 - seconds) * rate))))
    expected = audiotools.Meter(rate).integrated_loudness(torch.from_numpy(padded)[None, :, None])
    expected = max(float(expected), -70.0)
    assert integrated_loudness(x, rate) == pytest.approx(expected, abs=2e-3)


def test_dac_windows_follow_fadtk():
    from metrics.fadtk_metrics import DAC_44K, DAC_HOP, DAC_WINDOW
    from metrics.loudness import integrated_loudness

    x = _quantised(np.random.default_rng(6), int(7.2 * 44100))
    windows = DAC_44K.prepare(x, 44100)
    assert DAC_WINDOW == 220500 and DAC_HOP == 110250
    assert windows.shape == (5, 1, DAC_WINDOW)  # 7.2 s -> 10 s, + 2.5 s each side -> windows at 0..10 s
    assert not windows[0, 0, :DAC_HOP].any() and not windows[-1, 0, -DAC_HOP:].any()
    start = windows[0, 0, DAC_HOP:].astype(np.float64)
    audio = np.concatenate([w[0, DAC_HOP:] for w in windows[:4]])[:len(x[0])]  # second halves, in order
    assert integrated_loudness(audio, 44100) == pytest.approx(-16.0, abs=1e-6)
    np.testing.assert_allclose(windows[1, 0, :DAC_HOP], windows[0, 0, DAC_HOP:])  # 50% overlap
    gain = start[1000] / x[0, 1000]
    np.testing.assert_allclose(start[:len(x[0])], x[0, :DAC_HOP] * gain, rtol=1e-5, atol=1e-7)
    loud = np.full((1, 44100), 0.9, np.float32)  # -16 LUFS would need a gain above 1: the peak is held at 1
    assert np.abs(DAC_44K.prepare(loud, 44100)).max() == pytest.approx(1.0, abs=1e-6)


def test_dac_latents_load_from_a_test_filled_cache_and_match_the_release_encoder(tmp_path):
    from bench.core import weights
    from bench.core.dac_release import DAC_44KHZ, TINY_CONFIG
    from metrics.backbones.base import load_backbone
    from tests.dac_release_reference import random_release_codec, write_release_checkpoint

    source = random_release_codec(TINY_CONFIG, seed=2)  # the release layout, small
    with torch.no_grad():
        for name, param in source.named_parameters():
            if name.endswith(("alpha", "bias")):
                param.add_(0.1 * torch.randn(param.shape, generator=torch.Generator().manual_seed(len(name))))
    write_release_checkpoint(weights.weights_dir(tmp_path) / DAC_44KHZ.filename, source)
    bb = load_backbone("dac-44khz", WeightsChoice(cache_root=tmp_path, allow_download=False))
    assert bb.provenance["source"] == "cache" and bb.weights_label is None and bb.outputs == {"embedding": 32}
    x = np.random.default_rng(8).uniform(-0.3, 0.3, (1, 1, 4410)).astype(np.float32)
    with torch.no_grad():
        expected = source.encoder(torch.from_numpy(x))[0].T.numpy()  # fadtk: model.encoder(audio_data)
    np.testing.assert_allclose(bb.embed(x)["embedding"][0], expected, rtol=1e-4, atol=1e-5)
