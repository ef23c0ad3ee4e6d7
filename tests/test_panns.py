"""PANNs Cnn14 backbones and fd/is/kl-panns: parity with frechet-audio-distance's own Cnn14, the real
checkpoint loading path, audioldm_eval's preprocessing, and bad input.

Parity: the test builds the reference package's model with seeded random weights, saves it the way
the Zenodo files are saved ({"iteration", "model", "sampler" with numpy arrays}) where our loader looks
for the checkpoint, and compares our pipeline with the reference forward run clip by clip (batch 1,
as audioldm_eval does) on audioldm_eval's preprocessing written out here in torch.
"""
import dataclasses
import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from bench.core import weights
from bench.cli import main
from bench.core.clipsets import ClipRef, ClipSet
from bench.core.synthetic import synthetic_dataset
from bench.core.errors import AudioError, BenchError, CheckpointError
from bench.core.resample import resample
from metrics.inputs import ScoreOptions
from bench.batching import embed_clip
from metrics.backbones.blocked_linear import block_linear_rows
from bench.scoring import embed_set, score
from metrics.backbones import base, panns
from metrics.backbones.base import WeightsChoice, load_backbone
from metrics.panns_metrics import PANNS_16K_AUDIOLDM, PANNS_32K_AUDIOLDM
from tests.conftest import write_clips
from tests.test_classwise import audioldm_isc, audioldm_kl

SPEC16, SPEC32 = panns.SPECS["panns-cnn14-16k"], panns.SPECS["panns-cnn14-32k"]
METRICS = ["fd-panns@audioldm", "is-panns@audioldm", "kl-panns@audioldm", "kl-panns-sigmoid@audioldm"]


@pytest.fixture(scope="module", autouse=True)
def _free_models():
    yield  # the 80M-parameter models this module loads are not needed by later modules
    for key in [k for k in base._LOADED if k[0].startswith("panns-")]:
        del base._LOADED[key]


@pytest.fixture(scope="module")
def reference_pann():
    """frechet_audio_distance/models/pann.py, loaded here by itself (not through metrics.backbones.panns)."""
    models = Path(importlib.util.find_spec("frechet_audio_distance").submodule_search_locations[0]) / "models"
    spec = importlib.util.spec_from_file_location("_test_reference_fad_models", models / "__init__.py",
                                                  submodule_search_locations=[str(models)])
    package = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = package
    spec.loader.exec_module(package)
    module = importlib.import_module(f"{spec.name}.pann")
    yield module
    for name in [m for m in sys.modules if m.startswith(spec.name)]:
        del sys.modules[name]


def audioldm_input(wave: np.ndarray) -> torch.Tensor:
    """audioldm_eval's WaveDataset for a clip already at the model's rate: first channel, mean removed,
    zero-padded to 32000 samples."""
    audio = torch.from_numpy(wave[0:1].copy())
    audio = audio - audio.mean()
    return torch.nn.functional.pad(audio, (0, max(0, 32000 - audio.shape[-1])))


def assert_close_to_scale(ours, reference, tolerance):
    """Equal up to `tolerance` times the largest magnitude: batch shapes move float32 results by ~1e-6."""
    assert np.abs(ours - reference).max() <= tolerance * np.abs(reference).max()


def reference_forward(model, wave) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(embedding, pre-sigmoid logits, clipwise_output) of the reference model for one clip, batch 1."""
    captured = {}
    hook = model.fc_audioset.register_forward_hook(lambda module, inputs, output: captured.update(logits=output))
    with torch.no_grad():
        out = model(audioldm_input(wave))
    hook.remove()
    return out["embedding"][0].numpy(), captured["logits"][0].numpy(), out["clipwise_output"][0].numpy()


def randomize_(model, seed: int, calibration: list[np.ndarray]) -> None:
    """Seeded random weights at trained-like scales, so the outputs spread across clips and IS and KL
    are far from their trivial values: He-normal layers, batch norms with random statistics (bn0 at
    log-mel decibel scale), fc_audioset centred on the calibration clips' mean embedding."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * math.sqrt(2.0 / m.weight[0].numel()))
                if m.bias is not None:
                    m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
            elif isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(1 + 0.2 * torch.randn(n, generator=g))
                m.bias.copy_(0.1 * torch.randn(n, generator=g))
                scale = 20.0 if name == "bn0" else 1.0
                m.running_mean.copy_((-50.0 if name == "bn0" else 0.0) + 0.1 * scale * torch.randn(n, generator=g))
                m.running_var.copy_(scale ** 2 * (1 + torch.rand(n, generator=g)))
        model.eval()
        embeddings = torch.stack([torch.from_numpy(reference_forward(model, w)[0]) for w in calibration])
        weight = 200 * torch.randn(model.fc_audioset.weight.shape, generator=g) * math.sqrt(2.0 / 2048)
        model.fc_audioset.weight.copy_(weight)
        model.fc_audioset.bias.copy_(-weight @ embeddings.mean(dim=0))


def save_like_zenodo(model, path: Path) -> Path:
    # The released files also pickle the training sampler's state, with numpy arrays in it.
    torch.save({"iteration": 1000000, "model": model.state_dict(),
                "sampler": {"indexes": np.arange(8), "pointer": 3, "weights": np.ones(4)}}, path)
    return path


def memory_set(name: str, clips: dict) -> ClipSet:
    refs = [ClipRef(cid, origin=f"{name}/{cid}") for cid in clips]
    return ClipSet(name, "synthetic", f"test:{name}", refs, lambda clip: clips[clip.id])


def clips_of(dataset: ClipSet) -> dict:
    return {c.id: dataset.load(c) for c in dataset.clips}


@pytest.fixture(scope="module")
def sets():
    """10 reference clips and 2 generated samples per reference id ("id#0", "id#1"): 20 generated clips,
    two per IS split (with one per split IS is 1 whatever the model)."""
    ref = clips_of(synthetic_dataset(n_clips=10, sample_rate=16000, duration_s=0.4, seed=0))
    rng = np.random.default_rng(0)
    tone = np.sin(np.linspace(0, 2000, 41000))
    ref["synthetic-0000"] = (np.stack([0.5 * tone + 0.2, rng.standard_normal(41000)]).astype(np.float32), 16000)
    ref["synthetic-0001"] = (ref["synthetic-0001"][0] + np.float32(0.3), 16000)  # a DC offset to remove
    gen = {}
    for k, seed in enumerate((1, 2)):
        for cid, clip in clips_of(synthetic_dataset(n_clips=10, sample_rate=16000, duration_s=0.4, seed=seed)).items():
            gen[f"{cid}#{k}"] = clip
    return gen, ref


@pytest.fixture(scope="module")
def parity16(reference_pann, sets, tmp_path_factory):
    """The reference Cnn14_16k with random weights, its checkpoint in a weights cache, our backbone
    loaded from that cache by the real resolve -> hash check -> load path, and both sides' outputs."""
    gen, ref = sets
    with torch.random.fork_rng(devices=[]):
        model = reference_pann.Cnn14_16k(sample_rate=16000, window_size=512, hop_size=160, mel_bins=64,
                                         fmin=50, fmax=8000, classes_num=527)
    randomize_(model, 0, [w for w, _ in list(ref.values())[:4]])
    cache = tmp_path_factory.mktemp("panns-cache")
    path = save_like_zenodo(model, cache / "made.pth")
    digest = weights.sha256_file(path)
    (cache / "weights").mkdir()
    shutil.copy(path, cache / "weights" / SPEC16.filename)
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(weights.KNOWN_WEIGHTS, SPEC16.backbone,
                   dataclasses.replace(weights.KNOWN_WEIGHTS[SPEC16.backbone], sha256=digest))
        choice = WeightsChoice(cache_root=cache)
        backbone = load_backbone(SPEC16.backbone, choice)  # resolved, hash-checked and loaded here, once
    # Ours: the metrics as a user gets them, then each clip's outputs (now from the set cache).
    options = ScoreOptions(weights=choice, cache_root=cache, batch_size=2, bootstrap=0, progress=False)
    gen_set, ref_set = memory_set("gen", gen), memory_set("ref", ref)
    results = {r["metric"]: r for r in score(METRICS, gen_set, ref_set, options)}
    ours = {role: embed_set(clip_set, PANNS_16K_AUDIOLDM, backbone, options)
            for role, clip_set in (("gen", gen_set), ("ref", ref_set))}
    theirs = {role: [reference_forward(model, wave) for wave, _ in clips.values()]
              for role, clips in (("gen", gen), ("ref", ref))}
    return {"model": model, "cache": cache, "digest": digest, "results": results, "ours": ours, "theirs": theirs}


def test_outputs_match_the_reference_forward(parity16):
    for role in ("gen", "ref"):
        ours = parity16["ours"][role]
        for i, (embedding, logits, clipwise) in enumerate(parity16["theirs"][role]):
            assert ours.per_clip("embedding")[i].shape == (1, 2048)  # one input per clip
            assert_close_to_scale(ours.per_clip("embedding")[i][0], embedding, 1e-5)
            assert_close_to_scale(ours.per_clip("logits")[i][0], logits, 1e-4)
            # Our logits are the values the reference forward applies its sigmoid to.
            np.testing.assert_allclose(torch.sigmoid(torch.from_numpy(ours.per_clip("logits")[i][0])).numpy(),
                                       clipwise, atol=1e-3)
    assert np.abs(np.concatenate(parity16["ours"]["gen"].per_clip("logits"))).max() > 5  # not near-zeros


def test_metric_values_match_the_published_protocol(parity16, sets):
    gen, ref = sets
    results = parity16["results"]
    gen_emb, ref_emb = (np.stack([o[0] for o in parity16["theirs"][r]]).astype(np.float64) for r in ("gen", "ref"))
    gen_logits, ref_logits = (np.stack([o[1] for o in parity16["theirs"][r]]) for r in ("gen", "ref"))

    # FD of the two Gaussian fits; tr sqrt(S1 S2) is the nuclear norm of A B^T for S1 = A^T A, S2 = B^T B.
    a = (gen_emb - gen_emb.mean(0)) / math.sqrt(len(gen_emb) - 1)
    b = (ref_emb - ref_emb.mean(0)) / math.sqrt(len(ref_emb) - 1)
    fd = (np.sum((gen_emb.mean(0) - ref_emb.mean(0)) ** 2) + np.sum(a * a) + np.sum(b * b)
          - 2 * np.linalg.svd(a @ b.T, compute_uv=False).sum())
    assert results["fd-panns@audioldm"]["value"] == pytest.approx(fd, rel=1e-4)
    is_mean, is_std = audioldm_isc(gen_logits)
    assert results["is-panns@audioldm"]["value"] == pytest.approx(is_mean, rel=1e-5) and is_mean > 1.2
    assert results["is-panns@audioldm"]["details"]["std_over_splits"] == pytest.approx(is_std, rel=1e-3)
    # Each generated sample "id#k" against its reference "id".
    paired_ref = ref_logits[[list(ref).index(g.split("#")[0]) for g in gen]]
    kl = audioldm_kl(gen_logits, paired_ref)
    assert results["kl-panns@audioldm"]["value"] == pytest.approx(kl, rel=1e-4) and kl > 0.1
    assert results["kl-panns-sigmoid@audioldm"]["value"] == pytest.approx(
        audioldm_kl(gen_logits, paired_ref, "sigmoid"), rel=1e-4)

    fd_result = results["fd-panns@audioldm"]
    assert fd_result["key"] == "fd-panns@audioldm" and not fd_result["untrained"]
    assert fd_result["backbone"]["sha256"] == parity16["digest"] and fd_result["backbone"]["source"] == "cache"
    assert fd_result["backbone"]["file"] == "Cnn14_16k_mAP=0.438.pth"
    assert "frechet_audio_distance 0.3.4 models/pann.py:Cnn14_16k" in fd_result["backbone"]["architecture"]["code"]
    assert fd_result["protocol"]["id"] == "panns-cnn14-16k@audioldm"
    assert results["is-panns@audioldm"]["reference"] is None  # reference-free


def test_32k_backbone_matches_reference_cnn14_with_fmax_14000(reference_pann, tmp_path):
    import librosa

    waves = [clip for clip, _ in clips_of(synthetic_dataset(n_clips=3, sample_rate=32000, duration_s=0.7,
                                                           seed=2)).values()]
    with torch.random.fork_rng(devices=[]):
        model = reference_pann.Cnn14(sample_rate=32000, window_size=1024, hop_size=320, mel_bins=64,
                                     fmin=50, fmax=14000, classes_num=527)
    randomize_(model, 1, waves)
    path = save_like_zenodo(model, tmp_path / "cnn14-32k.pth")
    choice = WeightsChoice(local_files=((SPEC32.backbone, str(path)),), cache_root=tmp_path)
    backbone = load_backbone(SPEC32.backbone, choice)
    for i, wave in enumerate(waves):
        ours = embed_clip(backbone, PANNS_32K_AUDIOLDM.prepare(wave, 32000), batch_size=2)  # 0.7 s clips: audioldm_eval pads to 32000 samples, here 1 s
        embedding, logits, _ = reference_forward(model, wave)
        assert_close_to_scale(ours["embedding"][0], embedding, 1e-5)
        assert_close_to_scale(ours["logits"][0], logits, 1e-4)
    # Untrained weights get the filterbank of the spec: fmax 14000, which differs from 16000.
    own = panns.build_cnn14(SPEC32, seed=0).logmel_extractor.melW.detach().numpy()
    mel = {f: librosa.filters.mel(sr=32000, n_fft=1024, n_mels=64, fmin=50, fmax=f).T for f in (14000, 16000)}
    np.testing.assert_allclose(own, mel[14000], rtol=1e-5, atol=1e-8)
    assert np.abs(mel[14000] - mel[16000]).max() > 1e-3


@pytest.fixture(scope="module")
def untrained16():
    return load_backbone(SPEC16.backbone, WeightsChoice(mode="untrained", seed=0))


def test_untrained_weights_depend_on_the_seed_only(untrained16):
    x = (0.1 * np.random.default_rng(1).standard_normal((1, 32000))).astype(np.float32)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    again = panns.build_cnn14(SPEC16, seed=0)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is neither used nor moved
    block_linear_rows(again)  # as the backbone runs it (bench.batching)
    np.testing.assert_array_equal(panns.embed(again, SPEC16, x)["logits"], untrained16.embed(x)["logits"])
    assert untrained16.provenance["weights"] == "untrained" and untrained16.provenance["init"] == panns.UNTRAINED_INIT
    small = [nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Linear(4, 3)) for _ in range(3)]
    for module, seed in zip(small, (0, 0, 1)):
        panns._seeded_init_(module, seed)
    assert torch.equal(small[0][0].weight, small[1][0].weight) and torch.equal(small[0][2].weight, small[1][2].weight)
    assert not torch.equal(small[0][0].weight, small[2][0].weight)


def test_audioldm_preprocessing_steps():
    rng = np.random.default_rng(2)
    x = np.stack([0.3 + 0.1 * rng.standard_normal(22050), rng.standard_normal(22050)]).astype(np.float32)
    prepared = PANNS_16K_AUDIOLDM.prepare(x, 22050)
    first = x[:1] - x[:1].mean(dtype=np.float64)  # first channel, mean removed BEFORE resampling
    expected = np.pad(resample(first.astype(np.float32), 22050, 16000, "sinc-hann"), [(0, 0), (0, 16000)])
    assert prepared.shape == (1, 32000) and prepared.dtype == np.float32  # one whole-clip input, 2 s
    np.testing.assert_allclose(prepared, expected, rtol=0, atol=1e-7)
    # Removing the mean after resampling instead would leave the resampler's edge ramps of the offset.
    after = resample(x[:1], 22050, 16000, "sinc-hann")
    assert np.abs(prepared[0, :16000] - (after - after.mean())[0]).max() > 1e-3
    long = PANNS_16K_AUDIOLDM.prepare(np.ones((1, 16000 * 10), np.float32) * 0.1, 16000)
    assert long.shape == (1, 160000)  # never cropped
    assert PANNS_32K_AUDIOLDM.prepare(x, 22050).shape == (1, 32000)  # 32000 samples = 1 s at 32 kHz
    assert "zero-pad at the end to at least 32000 samples (2 s)" in PANNS_16K_AUDIOLDM.steps
    assert any("fmax 14000" in s and "16000" in s for s in PANNS_32K_AUDIOLDM.steps)


def test_scoring_untrained_with_mixed_input(untrained16, tmp_path, cache_dir):
    rng = np.random.default_rng(3)
    ref = clips_of(synthetic_dataset(n_clips=5, sample_rate=16000, duration_s=0.5, seed=0))
    gen = {cid: ((0.1 * rng.standard_normal((2, 11025))).astype(np.float32), 22050) for cid in ref}  # stereo
    gen["synthetic-0000"] = (np.zeros((1, 24000), np.float32), 48000)  # silence, scored and flagged
    gen["synthetic-0001"] = (np.full((1, 100), 0.2, np.float32), 16000)  # 6 ms: padded to 2 s
    gen_set = load_directory_of(tmp_path / "gen", gen)
    kl_ids = ["kl-panns@audioldm", "kl-panns-sigmoid@audioldm"]
    options = ScoreOptions(weights=WeightsChoice(mode="untrained", seed=0, cache_root=cache_dir),
                           cache_root=cache_dir, batch_size=5, bootstrap=0, progress=False)
    results = score(kl_ids, gen_set, memory_set("ref", ref), options)
    assert [r["key"] for r in results] == [f"{m}[untrained]" for m in kl_ids]
    for r in results:
        assert np.isfinite(r["value"]) and len(r["per_clip"]) == 5
        assert r["backbone"]["backbone"] == "panns-cnn14-16k" and r["backbone"]["seed"] == 0
        assert r["protocol"]["resampler"]["name"] == "sinc-hann" and r["protocol"]["steps"][0] == "first channel only"
    assert results[0]["generated"]["silent_clips"] == {"count": 1, "ids": ["synthetic-0000"]}
    assert results[0]["generated"]["n_embeddings"] == 5
    assert results[0]["generated"]["clips_without_embeddings"]["count"] == 0
    # With a bootstrap (the outputs now come from the cache): CIs around the same values.
    with_ci = score(kl_ids, gen_set, memory_set("ref", ref), dataclasses.replace(options, bootstrap=5))
    for r, plain in zip(with_ci, results):
        assert r["value"] == plain["value"] and r["ci"]["n_resamples"] == 5


def load_directory_of(directory, clips):
    from bench.core.clipsets import load_directory

    return load_directory(write_clips(directory, clips))


def test_is_is_reference_free_and_needs_ten_clips(untrained16, cache_dir):
    options = ScoreOptions(weights=WeightsChoice(mode="untrained", seed=0, cache_root=cache_dir),
                           cache_root=cache_dir, batch_size=5, bootstrap=0, progress=False)
    three = memory_set("three", clips_of(synthetic_dataset(n_clips=3, sample_rate=16000, duration_s=0.3, seed=4)))
    with pytest.raises(AudioError, match=r"produced 3 output\(s\) from 3 clip\(s\); is-panns@audioldm needs at least 10"):
        score(["is-panns@audioldm"], three, None, options)
    with pytest.raises(BenchError, match="kl-panns@audioldm compare against a reference set"):
        score(["kl-panns@audioldm"], three, None, options)


def test_input_shorter_than_cnn14_minimum_is_a_clear_error(untrained16):
    x = np.zeros((1, SPEC16.min_samples), np.float32)
    assert untrained16.embed(x)["embedding"].shape == (1, 2048)  # silence still gives finite outputs
    assert np.all(np.isfinite(untrained16.embed(x)["logits"]))
    with pytest.raises(AudioError, match=r"4959 samples are shorter than the 4960 \(0.31 s at 16000 Hz\)"):
        untrained16.embed(x[:, :-1])


def test_nan_audio_names_the_file(tmp_path, cache_dir):
    import soundfile as sf

    directory = tmp_path / "bad"
    directory.mkdir()
    sf.write(directory / "broken.wav", np.full(16000, np.nan, np.float32), 16000, subtype="FLOAT")
    options = ScoreOptions(weights=WeightsChoice(mode="untrained", seed=0, cache_root=cache_dir),
                           cache_root=cache_dir, bootstrap=0, progress=False)
    from bench.core.clipsets import load_directory

    with pytest.raises(AudioError, match="broken.wav.*non-finite"):
        score(["fd-panns@audioldm"], load_directory(directory), load_directory(directory), options)


def test_checkpoint_that_does_not_fit_names_the_first_key(parity16, sets, tmp_path):
    state = dict(parity16["model"].state_dict())
    state["conv_block3.conv1.weight"] = torch.zeros(256, 64, 3, 3)  # first wrong in the model's order
    state["fc1.weight"] = torch.zeros(10, 10)
    bad = tmp_path / "bad.pth"
    torch.save({"model": state}, bad)
    gen, ref = sets
    choice = WeightsChoice(local_files=((SPEC16.backbone, str(bad)),), cache_root=tmp_path)
    with pytest.raises(CheckpointError, match=r"bad.pth: does not fit Cnn14_16k.*key 'conv_block3.conv1.weight' "
                                              r"has shape \(256, 64, 3, 3\), expected \(256, 128, 3, 3\)"):
        score(["fd-panns@audioldm"], memory_set("gen", gen), memory_set("ref", ref),
              ScoreOptions(weights=choice, cache_root=tmp_path, bootstrap=0, progress=False))
    model, good = parity16["model"], parity16["model"].state_dict()
    missing = {k: v for k, v in good.items() if k != "bn0.running_var"}
    with pytest.raises(CheckpointError, match="x.pth: does not fit .*missing key 'bn0.running_var'"):
        panns.check_state_dict(missing, model, SPEC16, "x.pth")
    with pytest.raises(CheckpointError, match="unexpected key 'module.extra'"):
        panns.check_state_dict({**good, "module.extra": torch.zeros(1)}, model, SPEC16, "x.pth")
    torch.save(good, tmp_path / "bare.pth")  # weights at the top level, not under "model"
    with pytest.raises(CheckpointError, match=r"bare.pth: a PANNs checkpoint is a dict with the weights under "
                                              r"'model'.*save them as \{'model': state_dict\}"):
        panns.load_checkpoint(tmp_path / "bare.pth", SPEC16)


class Thing:
    """An arbitrary pickled object: tensors-only loading must refuse it."""


def test_corrupt_or_unsafe_checkpoint_is_refused(parity16, tmp_path):
    source = parity16["cache"] / "made.pth"
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(source.read_bytes()[:100_000])
    with pytest.raises(CheckpointError, match=r"cannot read PANNs checkpoint .*truncated.pth .*corrupt.*"
                                              r"bench weights fetch panns-cnn14-16k"):
        panns.load_checkpoint(truncated, SPEC16)
    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="garbage.pth .*corrupt"):
        panns.load_checkpoint(tmp_path / "garbage.pth", SPEC16)
    torch.save({"model": {}, "extra": np.array([object()], dtype=object)}, tmp_path / "objects.pth")
    with pytest.raises(CheckpointError, match="objects.pth: .*tensors-only loading refuses"):
        panns.load_checkpoint(tmp_path / "objects.pth", SPEC16)
    torch.save({"model": {}, "extra": Thing()}, tmp_path / "class.pth")
    with pytest.raises(CheckpointError, match="class.pth: it pickles .*Thing"):
        panns.load_checkpoint(tmp_path / "class.pth", SPEC16)


def test_missing_checkpoint_offline_names_the_file_and_url(tmp_path, sets):
    gen, ref = sets
    options = ScoreOptions(weights=WeightsChoice(cache_root=tmp_path), cache_root=tmp_path, bootstrap=0,
                           progress=False)
    with pytest.raises(CheckpointError, match=r"Cnn14_mAP=0.431.pth .*https://zenodo.org/record/3987831/files/"
                                              r"Cnn14_mAP%3D0.431.pth.*weights"):
        score(["fd-panns32k@audioldm"], memory_set("gen", gen), memory_set("ref", ref), options)
    card = weights.get_card("panns-cnn14-16k")
    assert card.filename == "Cnn14_16k_mAP=0.438.pth" and "3987831" in card.url and card.backbone == "panns-cnn14-16k"


def test_cli_scores_is_without_a_reference(untrained16, tmp_path, cache_dir, capsys):
    gen = write_clips(tmp_path / "gen", clips_of(synthetic_dataset(n_clips=10, sample_rate=16000,
                                                                   duration_s=0.3, seed=5)))
    out = tmp_path / "is.json"
    assert main(["score", "--metric", "is-panns@audioldm", "--generated", str(gen), "--weights", "untrained",
                 "--bootstrap", "0", "--batch-size", "5", "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "is-panns@audioldm[untrained]:" in text and "10 generated clips;" in text
    record = json.loads(out.read_text())
    assert record["reference"]["kind"] == "none" and record["reference"]["n_clips"] == 0  # no reference set
    assert record["metrics"][0]["reference"] is None and record["metrics"][0]["details"]["shuffle_seed"] == 2020
    assert main(["score", "--metric", "kl-panns@audioldm", "--generated", str(gen), "--weights", "untrained",
                 "--quiet"]) == 2
    assert "give --reference" in capsys.readouterr().err
    assert main(["score", "--metric", "kl-panns@audioldm", "--generated", str(gen), "--reference", str(gen),
                 "--weights", "untrained", "--pairing", "audioldm-99", "--bootstrap", "0", "--batch-size", "5",
                 "--out", str(tmp_path / "kl.json"), "--quiet"]) == 0
    kl = json.loads((tmp_path / "kl.json").read_text())["metrics"][0]
    assert kl["details"]["pairing"]["policy"] == "audioldm-99" and kl["value"] == pytest.approx(-527e-6, rel=0.05)


def test_onednn_keeps_64_primitives_unless_the_environment_says_otherwise():
    """Clips of distinct lengths each compile new oneDNN primitives; with oneDNN's default of 1024 kept, the
    process grew by ~17 MiB per length (bench.benchmarks.distinct_lengths_memory)."""
    code = "import metrics.backbones.base, os; print(os.environ['ONEDNN_PRIMITIVE_CACHE_CAPACITY'])"
    for given, expected in ((None, "64"), ("5", "5")):
        env = {k: v for k, v in os.environ.items() if k != "ONEDNN_PRIMITIVE_CACHE_CAPACITY"}
        if given is not None:
            env["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] = given
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
        assert done.stdout.strip() == expected, done.stderr[-2000:]
