"""The shared text-encoder registry (generators.text_encoders) used by every trainable generator."""
import pytest
import torch

from bench.core.errors import ConfigError
from generators.text_encoders import EMPTY, PAD, build_text_encoder, mean_pool

CONFIG = {"text_encoder": "hashed-words", "text_dim": 16, "text_vocab": 64, "text_max_words": 5}


def test_hashed_words_ids_are_stable_padded_and_the_empty_caption_is_one_token():
    enc = build_text_encoder(CONFIG)
    ids = enc.ids(["A Dog barks!", "a dog", "", "one two three four five six"])
    assert ids.shape == (4, 5)
    assert torch.equal(ids[0, :2], ids[1, :2]) and ids[0, 2] >= 2 and ids[1, 2] == PAD  # case/punctuation-free
    assert ids[2].tolist() == [EMPTY] + [PAD] * 4
    assert (ids[3] >= 2).all()  # cut at text_max_words
    assert torch.equal(build_text_encoder(CONFIG).ids(["a dog barks"]), ids[:1])  # sha256: same in any process
    tokens, pad = enc(["a dog barks", ""])
    assert tokens.shape == (2, 5, 16) and pad.tolist()[1] == [False, True, True, True, True]


def test_mean_pool_ignores_padding():
    tokens = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    pad = torch.tensor([[False, False, True]])
    assert mean_pool(tokens, pad).tolist() == [[2.0, 3.0]]


def test_unknown_or_missing_encoder_is_a_clear_error():
    with pytest.raises(ConfigError, match="unknown text encoder 'hashed-bag'; did you mean 'hashed-words'"):
        build_text_encoder({**CONFIG, "text_encoder": "hashed-bag"})
    with pytest.raises(ConfigError, match=r"lacks \['text_dim'\]"):
        build_text_encoder({"text_encoder": "hashed-words"})
    with pytest.raises(ConfigError, match="text_vocab must be >= 3"):
        build_text_encoder({**CONFIG, "text_vocab": 2})
