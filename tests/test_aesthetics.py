"""aesthetics-*@audiobox: the audiobox-aesthetics package's model loaded through its own from_pretrained from a
test-filled Hugging Face cache (a tiny WavLM config, random weights, saved under the real repo id), and
our windows + weighting against the package's own `AesPredictor.forward` on the same cached model."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from bench.core.errors import CheckpointError
from metrics.backbones import base
from metrics.backbones.base import WeightsChoice, load_backbone
from metrics.inputs import ScoreOptions, SetEmbeddings
from metrics.registry import get_metric

aes = pytest.importorskip("audiobox_aesthetics.model.aes")
from audiobox_aesthetics.model.wavlm import WavLMConfig  # noqa: E402

from tests.pipeline_helpers import save_in_hf_cache  # noqa: E402

REPO = "facebook/audiobox-aesthetics"
COMMIT = "a1b2c3d4" * 5
TRANSFORM = {"CE": {"mean": 5.1, "std": 1.3}, "CU": {"mean": 6.2, "std": 1.1}, "PC": {"mean": 3.9, "std": 1.7},
             "PQ": {"mean": 7.0, "std": 0.9}}


def _tiny_wavlm() -> WavLMConfig:
    """DEFAULT_AUDIO_CFG's layout (conv strides: 320 samples per frame) at a few thousand parameters."""
    return WavLMConfig({
        "extractor_mode": "default", "encoder_layers": 2, "encoder_embed_dim": 32, "encoder_ffn_embed_dim": 64,
        "encoder_attention_heads": 4, "activation_fn": "gelu", "dropout": 0.1, "attention_dropout": 0.1,
        "activation_dropout": 0.0, "encoder_layerdrop": 0.05, "dropout_input": 0.1, "dropout_features": 0.1,
        "layer_norm_first": False, "conv_feature_layers": "[(16,10,5)] + [(16,3,2)] * 4 + [(16,2,2)] * 2",
        "conv_bias": False, "feature_grad_mult": 0.1, "mask_length": 10, "mask_prob": 0.8,
        "mask_selection": "static", "mask_other": 0.0, "no_mask_overlap": False, "mask_min_space": 1,
        "mask_channel_length": 10, "mask_channel_prob": 0.0, "mask_channel_selection": "static",
        "mask_channel_other": 0.0, "no_mask_channel_overlap": False, "mask_channel_min_space": 1,
        "conv_pos": 16, "conv_pos_groups": 4, "relative_position_embedding": True, "num_buckets": 32,
        "max_distance": 64, "gru_rel_pos": True, "normalize": False})


@pytest.fixture(scope="module")
def hf_cache(tmp_path_factory):
    import huggingface_hub.constants as hub

    home = tmp_path_factory.mktemp("hf_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(aes, "DEFAULT_AUDIO_CFG", _tiny_wavlm())
        torch.manual_seed(0)
        model = aes.AesMultiOutput(nth_layer=3, target_transform=TRANSFORM)
        with torch.no_grad():
            for weights in model.layer_weights.values():  # a non-uniform mix of the layers
                weights.copy_(torch.randn(3))
        save_in_hf_cache(home, REPO, model.save_pretrained, COMMIT)
        mp.setenv("HF_HOME", str(home))
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setattr(hub, "HF_HUB_CACHE", str(home / "hub"))
        yield home / "hub" / f"models--{REPO.replace('/', '--')}" / "snapshots" / COMMIT
    for key in [k for k in base._LOADED if k[0] == "audiobox-aesthetics"]:
        del base._LOADED[key]


def _clip_scores(backbone, protocol, wave, rate):
    out = backbone.embed(protocol.prepare(wave, rate))
    w = out["weight"][:, 0].astype(np.float64)
    return (out["scores"].astype(np.float64) * w[:, None]).sum(0) / w.sum()


def test_cached_model_loads_and_matches_aes_predictor(hf_cache):
    from bench.core.torch_compat import ensure_torchaudio_importable

    ensure_torchaudio_importable()  # infer.py imports torchaudio
    from audiobox_aesthetics.infer import AesPredictor

    bb = load_backbone("audiobox-aesthetics", WeightsChoice(allow_download=False))
    prov = bb.provenance
    assert prov["weights"] == "pretrained" and prov["revision"] == COMMIT and prov["name"] == REPO
    assert prov["sha256"] == hashlib.sha256((hf_cache / "model.safetensors").read_bytes()).hexdigest()
    assert prov["target_transform"] == TRANSFORM

    rng = np.random.default_rng(1)
    clips = [rng.uniform(-0.5, 0.5, (2, int(12.5 * 16000))).astype(np.float32),  # two windows, the second 25%
             rng.uniform(-0.3, 0.3, (1, 4 * 16000)).astype(np.float32)]
    predictor = AesPredictor(checkpoint_pth=None)  # the package's from_pretrained on the same cache
    expected = predictor.forward([{"path": torch.from_numpy(c).mean(0, keepdim=True), "sample_rate": 16000}
                                  for c in clips])
    protocol = get_metric("aesthetics-ce@audiobox").protocol
    for clip, row in zip(clips, expected):
        got = _clip_scores(bb, protocol, clip, 16000)
        np.testing.assert_allclose(got, [row[a] for a in ("CE", "CU", "PC", "PQ")], rtol=1e-4, atol=1e-4)


def test_missing_cache_says_what_to_download(tmp_path, monkeypatch):
    import huggingface_hub.constants as hub

    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "hub"))
    from metrics.backbones import audiobox

    with pytest.raises(CheckpointError, match="hf download facebook/audiobox-aesthetics"):
        audiobox.build(WeightsChoice(allow_download=False))


def test_four_columns_weighted_per_clip_with_intervals():
    scores = [np.array([[6.0, 5.0, 3.0, 7.0], [2.0, 1.0, 1.0, 3.0]], np.float32),
              np.array([[4.0, 4.0, 4.0, 4.0]], np.float32), np.zeros((0, 4), np.float32)]
    weights = [np.array([[1.0], [0.25]], np.float32), np.array([[0.5]], np.float32), np.zeros((0, 1), np.float32)]
    ids = ["a", "b", "empty"]
    emb = SetEmbeddings({"source": "test"}, ids, [None] * 3, {"scores": scores, "weight": weights},
                        [12.5, 5.0, 0.0], [False] * 3)
    options = ScoreOptions(bootstrap=50)
    results = {axis: get_metric(f"aesthetics-{axis}@audiobox").compute(emb, None, options)
               for axis in ("ce", "cu", "pc", "pq")}
    ce = results["ce"]
    assert ce["per_clip"] == [{"id": "a", "value": pytest.approx((6 + 0.25 * 2) / 1.25)},
                              {"id": "b", "value": pytest.approx(4.0)}]
    assert ce["value"] == pytest.approx(((6 + 0.5) / 1.25 + 4) / 2)
    assert ce["details"]["clips_without_audio"]["ids"] == ["empty"]
    assert all(r["ci"]["low"] <= r["value"] <= r["ci"]["high"] for r in results.values())
    assert results["pq"]["value"] == pytest.approx(((7 + 0.75) / 1.25 + 4) / 2)
    assert get_metric("aesthetics-pc@audiobox").kind == "generated"
