"""Captioners: the Whisper captioner through its real loading path (test-filled HF cache under the real repo id),
and the small captioner trained here (loss falls, reuse, scoring through `score`)."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from bench.core.errors import BenchError, CheckpointError, ConfigError
from metrics.backbones import base
from metrics.backbones.base import WeightsChoice, load_backbone
from tests.caption_helpers import shared_captioner, tiny_set, train_tiny_captioner

REPO = "MU-NLPC/whisper-small-audio-captioning"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _write_tiny_whisper(snapshot):
    """A 2-layer random Whisper with a byte-level tokenizer (+ Whisper's special tokens), saved like the hub repo."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    from metrics.backbones.captioner_whisper import _transformers

    tf = _transformers()
    import torch

    work = snapshot.parent.parent / "tok-src"
    work.mkdir(parents=True)
    vocab = {c: i for i, c in enumerate(bytes_to_unicode().values())}
    vocab["<|endoftext|>"] = len(vocab)
    (work / "vocab.json").write_text(json.dumps(vocab))
    (work / "merges.txt").write_text("#version: 0.2\n")
    tok = tf.WhisperTokenizer(str(work / "vocab.json"), str(work / "merges.txt"), unk_token="<|endoftext|>",
                              bos_token="<|endoftext|>", eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    tok.add_special_tokens({"additional_special_tokens": ["<|startoftranscript|>", "<|en|>", "<|transcribe|>",
                                                          "<|notimestamps|>"]})
    cfg = tf.WhisperConfig(vocab_size=len(tok), d_model=16, encoder_layers=1, decoder_layers=1,
                           encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                           decoder_ffn_dim=32, num_mel_bins=80, max_source_positions=1500, max_target_positions=128,
                           decoder_start_token_id=tok.convert_tokens_to_ids("<|startoftranscript|>"),
                           eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    tf.WhisperForConditionalGeneration(cfg).save_pretrained(snapshot)
    tok.save_pretrained(snapshot)


@pytest.fixture(scope="module")
def hf_cache(tmp_path_factory):
    import huggingface_hub.constants as hub

    home = tmp_path_factory.mktemp("hf_home")
    repo = home / "hub" / ("models--" + REPO.replace("/", "--"))
    _write_tiny_whisper(repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HOME", str(home))
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setattr(hub, "HF_HUB_CACHE", str(home / "hub"))
        yield repo / "snapshots" / COMMIT
    for key in [k for k in base._LOADED if k[0].startswith("whisper-captioner")]:
        del base._LOADED[key]


def test_whisper_captioner_loads_real_repo_id_from_hf_cache(hf_cache):
    from metrics.backbones import captioner_whisper as cw
    from metrics.caption_metrics import PROTOCOLS

    backbone = load_backbone("whisper-captioner-small", WeightsChoice(allow_download=False))
    prov = backbone.provenance
    assert prov["name"] == REPO and prov["revision"] == COMMIT and prov["file"] == "model.safetensors"
    assert prov["sha256"] == hashlib.sha256((hf_cache / "model.safetensors").read_bytes()).hexdigest()
    assert prov["decoding"]["num_beams"] == 4 and prov["decoding"]["max_length"] == 100
    assert prov["decoding"]["style"] == "audiocaps > caption: "
    # Whisper's task tokens, then the style prefix, as WhisperForAudioCaptioning.generate builds them.
    assert prov["prompt_token_ids"][:4] == [257, 258, 259, 260] and len(prov["prompt_token_ids"]) == 4 + 21

    # Generation through the same build path, with shorter decoding settings to keep the test fast.
    spec = cw.WhisperCaptionerSpec("whisper-captioner-small", REPO, cw.Decoding(num_beams=2, max_length=40))
    short = cw.build(spec, WeightsChoice(allow_download=False))
    assert short.provenance["decoding"]["mode"] == "beam search (2 beams)"
    clips = tiny_set()
    protocol = PROTOCOLS["whisper-small"]
    inputs = [protocol.prepare(*clips.load(c)) for c in clips.clips[:2]]
    assert inputs[0].shape == (1, 80, 3000) and inputs[0].dtype == np.float32
    batch = short.embed(np.concatenate(inputs))["tokens"]
    alone = short.embed(inputs[1])["tokens"]
    assert batch.shape == (2, 128) and np.array_equal(batch[1], alone[0])  # batching does not change a caption
    lengths = (batch >= 0).sum(1)
    assert (lengths <= 40 - 25).all() and (lengths > 0).any()
    texts = short.decode(batch)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts) and any(texts)


def test_whisper_captioner_missing_from_cache_says_how_to_fetch(hf_cache, monkeypatch, tmp_path):
    import huggingface_hub.constants as hub

    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(CheckpointError, match=r"(?s)MU-NLPC/whisper-tiny-audio-captioning.*hf download"):
        load_backbone("whisper-captioner-tiny", WeightsChoice(allow_download=False))


def test_captioners_have_no_untrained_mode():
    with pytest.raises(ConfigError, match="no untrained mode"):
        load_backbone("whisper-captioner-tiny", WeightsChoice(mode="untrained"))
    with pytest.raises(ConfigError, match="train-evaluator --task captioning"):
        load_backbone("small-captioner", WeightsChoice())


@pytest.fixture(scope="module")
def trained():
    return shared_captioner()


def test_training_lowers_loss_and_is_reused(trained):
    out, result = trained
    losses = result.losses
    assert len(losses) == 40 and np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])
    card = json.loads((out / "small-captioner.json").read_text())
    assert card["training"]["steps"] == 40 and card["training"]["vocab_size"] > 10
    again = train_tiny_captioner(out)
    assert again.reused and again.checkpoint == result.checkpoint


def test_trained_captioner_scores_through_score(trained, tmp_path):
    from metrics.inputs import ScoreOptions
    from bench.scoring import score

    out, result = trained
    options = ScoreOptions(weights=WeightsChoice(local_files=(("small-captioner", str(result.checkpoint)),),
                                                 cache_root=tmp_path, allow_download=False),
                           cache_root=tmp_path, bootstrap=20, progress=False, batch_size=4)
    clips = tiny_set()
    [cider] = score(["caption-cider-d@trained"], clips, None, options)
    assert cider["key"] == "caption-cider-d@trained" and cider["backbone"]["weights"] == "trained"
    per = [r["value"] for r in cider["per_clip"]]
    assert len(per) == 8 and cider["value"] == pytest.approx(np.mean(per)) and cider["ci"]["low"] <= cider["value"]
    assert all(isinstance(r["caption"], str) for r in cider["per_clip"])
    assert cider["details"]["references"]["per_clip"] == 1.0
    with pytest.raises(BenchError, match="SPIDEr is unavailable.*stanford-corenlp-3.6.0-models.jar"):
        score(["caption-spider@trained"], clips, None, options)
