"""fd-openl3@stableaudio: parity with stable-audio-metrics' batched extraction (src/openl3_fd.py, written out
here with librosa, pyloudnorm, soxr and torchopenl3's own get_audio_embedding) on identical seeded weights,
the checkpoint loading path through a test-filled weights cache, and bad checkpoints.

openl3 (the TensorFlow original) is not installed: it needs tensorflow. torchopenl3 is its PyTorch port;
torchopenl3's authors checked the port against openl3, not this test.
"""
import dataclasses

import numpy as np
import pytest
import torch

pytest.importorskip("torchopenl3", reason="pip install --no-deps torchopenl3==1.0.1 (see docs/install.md)")

from bench.core import weights  # noqa: E402
from bench.core.errors import CheckpointError  # noqa: E402
from bench.scoring import embed_set, score  # noqa: E402
from metrics import openl3_metrics  # noqa: E402
from metrics.backbones import base, openl3  # noqa: E402
from metrics.backbones.base import WeightsChoice, load_backbone  # noqa: E402
from metrics.inputs import ScoreOptions  # noqa: E402
from tests.test_clap import clip_set  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
SPEC = openl3.SPECS["openl3-mel256-music-512"]


@pytest.fixture(scope="module", autouse=True)
def _free_models():
    yield
    for key in [k for k in base._LOADED if k[0].startswith("openl3-")]:
        del base._LOADED[key]


def _clip(seconds, rate, channels, seed):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    x = [0.4 * np.sin(2 * np.pi * (300 + 200 * c + 50 * seed) * t) + 0.05 * rng.standard_normal(len(t))
         for c in range(channels)]
    return np.stack(x).astype(np.float32)


CLIPS = {"stereo": (_clip(1.2, 44100, 2, 0), 44100),  # 44.1 kHz stereo: no soxr step
         "mono": (_clip(0.7, 16000, 1, 1), 16000),  # mono under 1 s: fake stereo, padded
         "quiet": (0.01 * _clip(1.0, 48000, 2, 2), 48000)}  # soxr 48 -> 44.1 kHz, then peak-normalised


def stable_audio_metrics_embeddings(paths, model):
    """src/openl3_fd.py extract_embeddings(channels=2, samplingrate=44100, hop 0.5), with the model given."""
    import librosa
    import pyloudnorm as pyln
    import soxr
    import torchopenl3

    out = []
    for file in paths:
        audio, sr = librosa.load(file, sr=None, mono=False)
        audio = pyln.normalize.peak(audio.T, -1.0)
        audio = soxr.resample(audio, sr, 44100)
        left, right = (audio, audio) if audio.ndim == 1 else (audio[:, 0], audio[:, 1])
        emb, _ = torchopenl3.get_audio_embedding([left], [44100], model=model, verbose=False, hop_size=0.5,
                                                 batch_size=4, sampler="resampy")
        emb_r, _ = torchopenl3.get_audio_embedding([right], [44100], model=model, verbose=False, hop_size=0.5,
                                                   batch_size=4, sampler="resampy")
        out.append(np.concatenate([emb[0].numpy(), emb_r[0].numpy()], axis=1))
    return out


@pytest.fixture(scope="module")
def parity(tmp_path_factory):
    """The seeded network saved as a torchopenl3 checkpoint in a weights cache, our backbone loaded from it by
    the real resolve -> hash check -> load path, our FD and embeddings, and the reference pipeline's."""
    tmp = tmp_path_factory.mktemp("openl3")
    gen = clip_set(tmp / "gen", CLIPS, {})
    ref = clip_set(tmp / "ref", {f"r{i}": (_clip(1.0, 44100, 2, 10 + i), 44100) for i in range(2)}, {})
    net = openl3.untrained_network(SPEC, seed=3)
    cache = tmp / "cache"
    (cache / "weights").mkdir(parents=True)
    path = cache / "weights" / SPEC.filename
    torch.save(net.state_dict(), path)  # torchopenl3-models: a plain state dict (buffers included)
    digest = weights.sha256_file(path)
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(weights.KNOWN_WEIGHTS, SPEC.backbone,
                   dataclasses.replace(weights.KNOWN_WEIGHTS[SPEC.backbone], sha256=digest))
        choice = WeightsChoice(cache_root=cache)
        backbone = load_backbone(SPEC.backbone, choice)
    options = ScoreOptions(weights=choice, cache_root=cache, batch_size=4, bootstrap=20, progress=False)
    [result] = score(["fd-openl3@stableaudio"], gen, ref, options)
    ours = embed_set(gen, openl3_metrics.OPENL3_MUSIC, backbone, options)
    ref_ours = embed_set(ref, openl3_metrics.OPENL3_MUSIC, backbone, options)
    theirs = stable_audio_metrics_embeddings([tmp / "gen" / f"{i}.wav" for i in CLIPS], net)
    ref_theirs = stable_audio_metrics_embeddings([tmp / "ref" / f"r{i}.wav" for i in range(2)], net)
    return {"result": result, "ours": ours, "theirs": theirs, "ref_ours": ref_ours, "ref_theirs": ref_theirs,
            "digest": digest, "cache": cache}


def test_embeddings_match_stable_audio_metrics_with_torchopenl3(parity):
    for ours, theirs in ((parity["ours"], parity["theirs"]), (parity["ref_ours"], parity["ref_theirs"])):
        for mine, their in zip(ours.per_clip(), theirs):
            assert mine.shape == their.shape and mine.shape[1] == 1024
            np.testing.assert_allclose(mine, their, rtol=0, atol=1e-5 * np.abs(their).max())
    frames = [len(e) for e in parity["ours"].per_clip()]
    assert frames == [3, 2, 2]  # 1 + ceil((0.5 s of centring zeros + duration - 1 s) / 0.5 s)
    mono = parity["ours"].per_clip()[1]
    np.testing.assert_array_equal(mono[:, :512], mono[:, 512:])  # fake stereo: left == right


def test_fd_is_stable_audio_metrics_fd_and_names_its_provenance(parity):
    from scipy import linalg

    result = parity["result"]
    gen, ref = np.concatenate(parity["theirs"]).astype(np.float64), np.concatenate(parity["ref_theirs"])
    s1, s2 = np.cov(gen, rowvar=False), np.cov(ref.astype(np.float64), rowvar=False)
    fd = ((gen.mean(0) - ref.mean(0)) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(
        linalg.sqrtm(s1 @ s2).real)
    assert result["value"] == pytest.approx(fd, rel=2e-2, abs=1e-3)
    assert result["key"] == "fd-openl3@stableaudio" and not result["untrained"]
    assert result["backbone"]["sha256"] == parity["digest"] and result["backbone"]["source"] == "cache"
    assert result["backbone"]["architecture"]["content_type"] == "music"
    assert result["protocol"]["id"] == "openl3-mel256-music-512@stableaudio"
    assert [c["id"] for c in result["per_clip"]] == list(CLIPS) and result["ci"] is not None


def test_untrained_is_labelled_and_seeded():
    a = openl3.untrained_network(SPEC, seed=0).state_dict()
    b = openl3.untrained_network(SPEC, seed=0).state_dict()
    c = openl3.untrained_network(SPEC, seed=1).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a if k.endswith("weight"))
    backbone = load_backbone(SPEC.backbone, WeightsChoice(mode="untrained", seed=0))
    assert backbone.untrained and backbone.weights_label == "untrained"
    assert backbone.outputs == {"embedding": 1024}


def test_checkpoint_that_does_not_fit_names_the_key(tmp_path):
    state = openl3.untrained_network(SPEC, seed=0).state_dict()
    state["conv2d_1.weight"] = state["conv2d_1.weight"][:, :, :2]
    torch.save(state, tmp_path / "bad.pth.tar")
    with pytest.raises(CheckpointError, match="conv2d_1.weight"):
        openl3.pretrained_network(SPEC, tmp_path / "bad.pth.tar")
    (tmp_path / "junk.pth.tar").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pth.tar"):
        openl3.pretrained_network(SPEC, tmp_path / "junk.pth.tar")


def test_env_preset_uses_the_env_checkpoint():
    from metrics.registry import get_metric

    metric = get_metric("fd-openl3-env@stableaudio")
    assert metric.protocol.backbone == "openl3-mel256-env-512"
    assert weights.KNOWN_WEIGHTS["openl3-mel256-env-512"].filename == "torchopenl3_mel256_env_512.pth.tar"
    assert "AudioCaps" in metric.lineage and "stable-audio-metrics" in metric.lineage
