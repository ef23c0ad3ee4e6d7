"""fad-mert-v1-95m@fadtk: MERT's loading path (trust_remote_code from the Hugging Face cache) against fadtk's own
MERTModel loader on the same test-filled cache.

MERT's hub code (configuration_MERT.py / modeling_MERT.py) cannot be fetched here. The cache holds a stand-in
with the same shape of repository: config.json whose auto_map points at remote-code files, and those files
defining MERTConfig / MERTModel as subclasses of transformers' Hubert classes (MERT-v1-95M's MERTModel
subclasses HubertModel); a tiny config and random weights. So the test checks the loading calls, the layer,
the processor and the reading chain against fadtk's code; not MERT's own module code.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bench.core.errors import CheckpointError
from metrics.backbones import base, mert
from metrics.backbones.base import WeightsChoice, load_backbone
from metrics.fadtk_metrics import MERT_95M

COMMIT = "5e1f0c2b" * 5
REMOTE_CONFIG = '''from transformers import HubertConfig


class MERTConfig(HubertConfig):
    model_type = "mert_model"
'''
REMOTE_MODEL = '''from transformers import HubertModel

from .configuration_MERT import MERTConfig


class MERTModel(HubertModel):
    config_class = MERTConfig
'''


def _write_repo(folder):
    from bench.core.torch_compat import ensure_torchaudio_importable, ensure_torchvision_importable

    ensure_torchvision_importable()
    ensure_torchaudio_importable()
    import transformers as tf

    folder.mkdir(parents=True)
    cfg = tf.HubertConfig(hidden_size=32, num_hidden_layers=12, num_attention_heads=4, intermediate_size=64,
                          conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)
    torch.manual_seed(0)
    tf.HubertModel(cfg).save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    config.update({"model_type": "mert_model", "architectures": ["MERTModel"],
                   "auto_map": {"AutoConfig": "configuration_MERT.MERTConfig", "AutoModel": "modeling_MERT.MERTModel"}})
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "configuration_MERT.py").write_text(REMOTE_CONFIG)
    (folder / "modeling_MERT.py").write_text(REMOTE_MODEL)
    tf.Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=24000, padding_value=0.0, do_normalize=True,
                                return_attention_mask=True).save_pretrained(folder)


@pytest.fixture(scope="module")
def hf_cache(tmp_path_factory):
    import huggingface_hub.constants as hub

    home = tmp_path_factory.mktemp("hf_home")
    root = home / "hub" / f"models--{mert.REPO.replace('/', '--')}"
    _write_repo(root / "snapshots" / COMMIT)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(COMMIT)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HOME", str(home))
        mp.setenv("HF_MODULES_CACHE", str(home / "modules"))
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setattr(hub, "HF_HUB_CACHE", str(home / "hub"))
        yield root / "snapshots" / COMMIT
    for key in [k for k in base._LOADED if k[0] == mert.BACKBONE]:
        del base._LOADED[key]


def test_mert_through_remote_code_matches_fadtk_mert_model(hf_cache, monkeypatch):
    monkeypatch.setattr(mert, "EMBED_DIM", 32)  # the stand-in's width
    bb = load_backbone(mert.BACKBONE, WeightsChoice(allow_download=False))
    prov = bb.provenance
    assert prov["weights"] == "pretrained" and prov["revision"] == COMMIT and prov["layer"] == 12
    assert "modeling_MERT.py" in prov["files_sha256"] and "MERTModel" in prov["runtime"]

    fadtk = pytest.importorskip("fadtk.model_loader")
    loader = fadtk.MERTModel()  # layer 12, m-a-p/MERT-v1-95M
    loader.device = torch.device("cpu")
    loader.load_model()  # AutoConfig / AutoModel / Wav2Vec2FeatureExtractor with trust_remote_code, same cache
    x = (np.round(np.random.default_rng(0).uniform(-0.5, 0.5, (1, 24000)) * 32768) / 32768).astype(np.float32)
    with torch.no_grad():
        expected = loader._get_embedding(x[0].astype(np.float64)).numpy()  # load_wav gives float64
    examples = MERT_95M.prepare(x, 24000)
    got = bb.embed(examples)["embedding"][0]
    assert got.shape == expected.shape == (74, 32)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_missing_repo_says_what_to_download(tmp_path, monkeypatch):
    import huggingface_hub.constants as hub

    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(CheckpointError, match=r"hf download m-a-p/MERT-v1-95M.*trust_remote_code"):
        mert.build(WeightsChoice(allow_download=False))


def test_untrained_stand_in_is_labelled_and_gives_layer_12_frames():
    bb = load_backbone(mert.BACKBONE, WeightsChoice(mode="untrained"))
    assert bb.weights_label == "untrained" and "HubertModel" in bb.provenance["runtime"]
    x = np.random.default_rng(1).uniform(-0.5, 0.5, (2, 16000)).astype(np.float32)  # 16 kHz stereo, 1 s
    examples = MERT_95M.prepare(x, 16000)
    assert examples.shape == (1, 24000)
    assert bb.embed(examples)["embedding"].shape == (1, 74, 768)
    assert MERT_95M.prepare(x[:, :200], 16000).shape[0] == 0  # under 400 samples at 24 kHz: no frame


def test_bench_weights_lists_hub_models_with_their_cache_status(hf_cache, capsys):
    from bench import cli

    assert cli.main(["weights", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    mert_line = next(line for line in lines if line.startswith("mert-v1-95m "))
    assert "cached" in mert_line and "m-a-p/MERT-v1-95M" in mert_line
    aes_line = next(line for line in lines if line.startswith("audiobox-aesthetics "))
    assert "missing" in aes_line and "facebook/audiobox-aesthetics" in aes_line
    assert any(line.startswith("encodec-24khz ") for line in lines)  # the file cards too
