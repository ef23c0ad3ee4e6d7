"""Diffsound's mel-inception evaluator: frontend parity, architecture parity with torchvision's
Inception3 (Melception), checkpoint loading through the real paths, and the fid-mel / kl-mel kernels."""
import dataclasses
import shutil

import numpy as np
import pytest
import torch

from bench.core import weights
from bench.core.clipsets import load_directory
from bench.core.synthetic import synthetic_dataset
from bench.core.errors import CheckpointError
from metrics.inputs import ScoreOptions, SetEmbeddings
from bench.scoring import score
from metrics.backbones import mel_inception as mi
from metrics.backbones.base import WeightsChoice, load_backbone
from metrics.mel_metrics import MEL_DIFFSOUND, kl_metric
from tests.conftest import write_clips

SR = 16000


# ------------------------------------------------------------------------------------- frontend

def test_filterbank_and_log_mel_match_librosa():
    librosa = pytest.importorskip("librosa")
    fb = librosa.filters.mel(sr=22050, n_fft=1024, n_mels=80, fmin=125, fmax=7600, htk=False, norm="slaney",
                             dtype=np.float64)
    np.testing.assert_allclose(mi.mel_filterbank(), fb, rtol=0, atol=1e-12)
    x = mi.fit_length(0.3 * np.random.default_rng(0).standard_normal(22050 * 3))
    # librosa 0.8 (Diffsound's) centred the STFT with reflect padding; name it explicitly here.
    spec = np.abs(librosa.stft(x, n_fft=1024, hop_length=256, center=True, pad_mode="reflect", window="hann"))
    expected = np.clip((20 * np.log10(np.maximum(1e-5, fb @ spec)) - 20 + 100) / 100, 0, 1)[:, :860]
    got = mi.log_mel(x)
    assert got.shape == (80, 860) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)  # measured 3e-8


def test_protocol_pads_to_ten_seconds_and_resamples_like_librosa_load():
    librosa = pytest.importorskip("librosa")
    wave = np.stack([np.sin(np.arange(SR * 2) * 0.05), np.zeros(SR * 2)]).astype(np.float32) * 0.5
    [example] = MEL_DIFFSOUND.prepare(wave, SR)
    assert example.shape == (80, 860)
    # librosa.load(sr=22050) under librosa < 0.10: mono mean, resampy kaiser_best, length ceil.
    mono = librosa.to_mono(wave)
    y = librosa.resample(mono, orig_sr=SR, target_sr=22050, res_type="kaiser_best")
    np.testing.assert_allclose(example, mi.log_mel(mi.fit_length(y)), rtol=0, atol=1e-6)
    assert example[:, 300:].max() == 0.0  # 2 s of audio, then 8 s of padding at the log floor (0 after clip)
    assert "resampy" in MEL_DIFFSOUND.info()["resampler"]["library"]


# --------------------------------------------------------------------------------- architecture

@pytest.fixture(scope="module")
def melception_state():
    """The published Melception's layout: torchvision Inception3 state (1-channel stem, 309 classes, aux head),
    under 'model' and DataParallel's 'module.' prefix, with seeded weights."""
    model = mi.seeded_init_(mi.empty_model(mi.CONFIGS["full"], 309), torch.Generator().manual_seed(3))
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    state["module.AuxLogits.fc.weight"] = torch.zeros(309, 768)  # training-only head: dropped on load
    return {"model": state}


def _torchvision_melception():
    from bench.core.torch_compat import ensure_torchvision_importable

    ensure_torchvision_importable()
    from torchvision.models.inception import BasicConv2d, Inception3

    with torch.device("meta"):  # weights come from ours: skip torchvision's own init
        net = Inception3(num_classes=309, aux_logits=False, init_weights=False)
        net.Conv2d_1a_3x3 = BasicConv2d(1, 32, kernel_size=3, stride=2)  # as Diffsound's Melception
    net.maxpool1 = torch.nn.Identity()
    net.maxpool2 = torch.nn.Identity()
    return net.to_empty(device="cpu").eval()


def test_full_config_is_melception_key_for_key_and_output_for_output(melception_state):
    ours = mi.load_melception_state(melception_state, "test")
    reference = _torchvision_melception()
    ref_state = reference.state_dict()
    shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert shapes == {k: tuple(v.shape) for k, v in ref_state.items()}
    reference.load_state_dict(ours.state_dict())
    x = torch.randn(1, 80, 100, generator=torch.Generator().manual_seed(0))  # fully convolutional: short input
    with torch.inference_mode():
        feats, logits = ours(x)
        ref_logits = reference(x.unsqueeze(1))
    assert feats.shape == (1, 2048) and logits.shape == (1, 309)
    torch.testing.assert_close(logits, ref_logits, rtol=1e-4, atol=1e-4)


def test_tiny_config_keeps_inception_names_and_is_small():
    model = mi.empty_model(mi.CONFIGS["tiny"], 7)
    names = [n for n, _ in model.named_children()]
    assert names[:5] == ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1"]
    assert {"Mixed_5b", "Mixed_6a", "Mixed_6b", "Mixed_7a", "Mixed_7b", "fc"} <= set(names)
    assert sum(p.numel() for p in model.parameters()) < 200_000 and model.embedding_dim == 256
    assert model.state_dict()["Mixed_5b.branch5x5_1.conv.weight"].shape == (6, 24, 1, 1)  # InceptionV3's 48 / 8


def test_seeded_init_is_deterministic_and_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = mi.seeded_init_(mi.empty_model(mi.CONFIGS["tiny"], 5), torch.Generator().manual_seed(0)).state_dict()
    b = mi.seeded_init_(mi.empty_model(mi.CONFIGS["tiny"], 5), torch.Generator().manual_seed(0)).state_dict()
    c = mi.seeded_init_(mi.empty_model(mi.CONFIGS["tiny"], 5), torch.Generator().manual_seed(1)).state_dict()
    assert torch.equal(torch.random.get_rng_state(), before)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["fc.weight"], c["fc.weight"])


# ----------------------------------------------------------------------------------- checkpoints

CLASSES = ["chirp", "tone", "noise"]


def _trained_file(path, seed=0, card_extra=None):
    """A checkpoint in train-evaluator's format (seeded weights stand in for trained ones)."""
    model = mi.seeded_init_(mi.empty_model(mi.CONFIGS["tiny"], len(CLASSES)), torch.Generator().manual_seed(seed))
    card = {"config": mi.CONFIGS["tiny"].to_dict(), "classes": CLASSES,
            "training": {"data": "test", "fingerprint": "f" * 64, "steps": 0, "seed": seed, "batch_size": 1,
                         "train_accuracy": None, "val_accuracy": None, **(card_extra or {})}}
    torch.save(mi.checkpoint_tensors(model.eval(), np.full(80, 0.1), np.full(80, 0.2), card), path)
    return path


@pytest.fixture(scope="module")
def trained_ckpt(tmp_path_factory):
    return _trained_file(tmp_path_factory.mktemp("mel") / "mel-inception.pt")


@pytest.fixture
def sets(tmp_path):
    ds = synthetic_dataset(n_clips=4, sample_rate=SR, duration_s=1.0, seed=0)
    ref = {c.id: ds.load(c) for c in ds.clips}
    rng = np.random.default_rng(1)
    noise = {i: ((0.2 * rng.standard_normal((1, SR))).astype(np.float32), SR) for i in ref}
    return {"ref": load_directory(write_clips(tmp_path / "ref", ref)),
            "noise": load_directory(write_clips(tmp_path / "noise", noise))}


def _opts(cache_dir, **choice):
    return ScoreOptions(weights=WeightsChoice(cache_root=cache_dir, **choice), cache_root=cache_dir, bootstrap=20,
                        batch_size=4, progress=False)


def test_trained_checkpoint_via_checkpoint_flag_is_trained_not_untrained(sets, cache_dir, trained_ckpt):
    opts = _opts(cache_dir, local_files=(("mel-inception", str(trained_ckpt)),))
    fid, kl = score(["fid-mel@diffsound", "kl-mel@diffsound"], sets["noise"], sets["ref"], opts)
    for r in (fid, kl):
        assert r["key"] == r["metric"] and r["untrained"] is False  # no "[untrained]" anywhere
        assert r["backbone"]["weights"] == "trained" and r["backbone"]["source"] == "local file"
        assert r["backbone"]["sha256"] == weights.sha256_file(trained_ckpt)
        assert r["backbone"]["config"] == "tiny" and r["backbone"]["n_classes"] == 3
        assert r["protocol"]["id"] == "mel-inception@diffsound"
    # Basic bootstrap: reflected around the value, targets the population FID (below the biased value).
    assert fid["value"] > 0 and fid["ci"]["low"] <= fid["ci"]["bias_corrected"] <= fid["ci"]["high"]
    assert np.isfinite(kl["value"]) and len(kl["per_clip"]) == 4
    assert kl["details"]["direction"] == "KL(reference || generated)"
    assert kl["value"] == pytest.approx(np.mean([p["value"] for p in kl["per_clip"]]))


# KL(p || p) with eps added to the generated side is sum_c p_c log(p_c / (p_c + eps)) ~ -n_classes * eps:
# zero up to Diffsound's (and audioldm_eval's) eps, reported as is.
KL_SELF = 1.01 * 1e-6


def test_fid_and_kl_of_a_set_with_itself_are_zero(sets, cache_dir, trained_ckpt):
    opts = _opts(cache_dir, local_files=(("mel-inception", str(trained_ckpt)),))
    fid, kl = score(["fid-mel@diffsound", "kl-mel@diffsound"], sets["ref"], sets["ref"], opts)
    assert fid["value"] == pytest.approx(0.0, abs=1e-6)
    assert kl["value"] == pytest.approx(0.0, abs=len(CLASSES) * KL_SELF)
    assert all(p["value"] == pytest.approx(0.0, abs=len(CLASSES) * KL_SELF) for p in kl["per_clip"])
    assert kl["ci"]["low"] <= kl["value"] <= kl["ci"]["high"]


def test_suite_trained_evaluator_loads_under_untrained_mode(sets, cache_dir, trained_ckpt):
    """The quickstart's case: VGGish untrained, mel-inception trained here; each says what it is."""
    opts = _opts(cache_dir, mode="untrained", trained=(("mel-inception", str(trained_ckpt)),))
    vgg, fid = score(["fad-vggish@audioldm", "fid-mel@diffsound"], sets["noise"], sets["ref"], opts)
    assert vgg["key"] == "fad-vggish@audioldm[untrained]" and vgg["untrained"]
    assert fid["key"] == "fid-mel@diffsound" and fid["backbone"]["weights"] == "trained"
    assert fid["backbone"]["source"] == "suite evaluator (trained here)"


def test_wrong_key_and_corrupt_file_are_named(tmp_path, cache_dir, sets):
    state = torch.load(_trained_file(tmp_path / "good.pt"), weights_only=True)
    state["model.Mixed_5b.branch1x1.conv.weight"] = torch.zeros(3, 3, 1, 1)
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=r"bad.pt.*Mixed_5b\.branch1x1\.conv\.weight.*shape"):
        mi.load_trained(tmp_path / "bad.pt")
    del state["model.Mixed_5b.branch1x1.conv.weight"]
    torch.save(state, tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match=r"missing key 'model.Mixed_5b.branch1x1.conv.weight'"):
        mi.load_trained(tmp_path / "missing.pt")
    (tmp_path / "torn.pt").write_bytes((tmp_path / "good.pt").read_bytes()[:1000])
    opts = _opts(cache_dir, local_files=(("mel-inception", str(tmp_path / "torn.pt")),))
    with pytest.raises(CheckpointError, match=r"torn.pt.*corrupt.*re-fetch"):
        score(["fid-mel@diffsound"], sets["noise"], sets["ref"], opts)


def test_untrained_is_labelled_seeded_and_of_usable_scale():
    choice = WeightsChoice(mode="untrained", seed=4)
    backbone = load_backbone("mel-inception", choice)
    assert backbone.untrained and backbone.provenance["seed"] == 4
    assert backbone.outputs == {"embedding": 2048, "logits": 309}
    assert backbone.card_key["init"] == mi.UNTRAINED_INIT
    x = MEL_DIFFSOUND.prepare(0.3 * np.sin(np.arange(SR, dtype=np.float32) * 0.2)[None], SR)[:, :, :120]
    out = backbone.embed(x)
    # Scale-preserving init: with batch norm at identity, Inception3's std-0.1 init reaches ~1e12.
    assert 1e-3 < np.abs(out["logits"]).max() < 1e3 and np.abs(out["embedding"]).max() < 1e3


def test_published_melception_loads_from_the_cache(tmp_path, cache_dir, melception_state, monkeypatch):
    ckpt, stats = tmp_path / "melception.pt", tmp_path / "stats.txt"
    torch.save(melception_state, ckpt)
    np.savetxt(stats, np.stack([np.linspace(0.2, 0.4, 80), np.full(80, 0.1)], axis=1), fmt="%0.8f")
    choice = WeightsChoice(cache_root=cache_dir)
    with pytest.raises(CheckpointError, match=r"melception-21-05-10T09-28-40.pt.*a3s.fi.*weights"):
        load_backbone("mel-inception", choice)  # offline and not cached: one message with URL and path
    (cache_dir / "weights").mkdir(parents=True)
    for name, src in (("melception", ckpt), ("melception-stats", stats)):
        card = dataclasses.replace(weights.KNOWN_WEIGHTS[name], sha256=weights.sha256_file(src))
        monkeypatch.setitem(weights.KNOWN_WEIGHTS, name, card)
        shutil.copy(src, cache_dir / "weights" / card.filename)
    backbone = load_backbone("mel-inception", WeightsChoice(cache_root=cache_dir, seed=1))
    assert backbone.provenance["weights"] == "pretrained" and backbone.provenance["source"] == "cache"
    assert backbone.provenance["normalisation"]["sha256"] == weights.sha256_file(stats)
    assert backbone.outputs == {"embedding": 2048, "logits": 309}
    out = backbone.embed(np.zeros((1, 80, 100), np.float32))  # any length works (fully convolutional)
    assert out["embedding"].shape == (1, 2048) and np.isfinite(out["logits"]).all()


def test_melception_wrong_shape_is_named(tmp_path, melception_state):
    state = dict(melception_state["model"])
    state["module.fc.weight"] = torch.zeros(527, 2048)
    with pytest.raises(CheckpointError, match=r"key 'fc.weight' has shape \(527, 2048\)"):
        mi.load_melception_state({"model": state}, "melception.pt")


# --------------------------------------------------------------------------------------- kernels

def _emb(ids, logits):
    return SetEmbeddings({"source": "hand"}, list(ids), [None] * len(ids),
                         {"logits": [np.asarray([row], np.float32) for row in logits],
                          "embedding": [np.zeros((1, 2), np.float32) for _ in ids]},
                         [1.0] * len(ids), [False] * len(ids))


def test_kl_known_answer_and_diffsound_parity():
    ref_p = np.array([[0.5, 0.5], [0.8, 0.2]])
    gen_p = np.array([[0.9, 0.1], [0.8, 0.2]])
    ref, gen = _emb(["a", "b"], np.log(ref_p)), _emb(["b", "a"], np.log(gen_p[::-1]))  # paired by id, not order
    result = kl_metric(gen, ref, ScoreOptions(bootstrap=0, progress=False))
    eps = 1e-6
    a = 0.5 * np.log(0.5 / (0.9 + eps)) + 0.5 * np.log(0.5 / (0.1 + eps))
    b = 0.8 * np.log(0.8 / (0.8 + eps)) + 0.2 * np.log(0.2 / (0.2 + eps))
    assert {p["id"]: p["value"] for p in result["per_clip"]} == pytest.approx({"a": a, "b": b}, rel=1e-6)
    assert result["value"] == pytest.approx((a + b) / 2, rel=1e-6)
    # Diffsound's kl.py: kl_div((softmax(fake) + eps).log(), softmax(real), reduction="sum") / n_fakes
    fake, real = torch.tensor(np.log(gen_p)).softmax(1), torch.tensor(np.log(ref_p)).softmax(1)
    theirs = torch.nn.functional.kl_div((fake + eps).log(), real, reduction="sum") / len(fake)
    assert result["value"] == pytest.approx(float(theirs), rel=1e-6)  # our table holds float32 logits


def test_kl_of_identical_tables_is_zero_and_samples_pair_with_their_prompt():
    logits = np.random.default_rng(0).standard_normal((3, 5))
    ref = _emb(["a", "b", "c"], logits)
    same = kl_metric(ref, ref, ScoreOptions(bootstrap=10, progress=False))["value"]
    assert same == pytest.approx(0, abs=5 * KL_SELF) and same < 0  # -n_classes * eps, as the reference computes
    gen = _emb(["a#0", "a#1", "b#0", "b#1", "c#0", "c#1"], np.repeat(logits, 2, axis=0))
    result = kl_metric(gen, ref, ScoreOptions(bootstrap=0, progress=False))
    assert result["value"] == pytest.approx(same) and len(result["per_clip"]) == 6
    assert [p["reference_id"] for p in result["per_clip"]] == ["a", "a", "b", "b", "c", "c"]
