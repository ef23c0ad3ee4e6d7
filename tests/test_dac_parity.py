"""transformers' DacModel (generators/dac_codec.py) against the release architecture (the harness's former
own implementation, tests/dac_release_reference.py) on identical random weights."""
import numpy as np
import pytest
import torch

from generators.dac_codec import TINY_CONFIG, DACCodec, release_to_dac_model
from tests.dac_release_reference import random_release_codec


@pytest.fixture(scope="module")
def pair():
    config = {**TINY_CONFIG, "latent_dim": None}
    reference = random_release_codec(config, seed=5)
    # Snake alphas start at 1 and biases at 0 in both: move them so a swapped name would show
    with torch.no_grad():
        for name, param in reference.named_parameters():
            if name.endswith("alpha") or name.endswith("bias"):
                param.add_(0.1 * torch.randn(param.shape, generator=torch.Generator().manual_seed(len(name))))
    codec = DACCodec(**TINY_CONFIG).eval().requires_grad_(False)
    codec.model.load_state_dict(release_to_dac_model(reference.state_dict(), reference.config), strict=True)
    return reference, codec


def test_every_release_parameter_lands_on_a_dac_model_parameter(pair):
    reference, codec = pair
    converted = release_to_dac_model(reference.state_dict(), reference.config)
    assert set(converted) == set(codec.model.state_dict())
    n_weight_norms = sum(k.endswith("weight_v") for k in reference.state_dict())
    assert len(converted) == len(reference.state_dict()) - n_weight_norms


def test_dac_model_matches_the_release_architecture(pair):
    reference, codec = pair
    audio = 0.3 * torch.randn(2, 1, 4410, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        z_ref, z = reference.encode(audio), codec.encode(audio)
        np.testing.assert_allclose(z.numpy(), z_ref.numpy(), rtol=1e-5, atol=1e-5)
        codes_ref, latents_ref = reference.latent_query(z_ref)
        codes, latents = codec.latent_query(z_ref)
        assert torch.equal(codes, codes_ref)
        np.testing.assert_allclose(codec.embed(latents).numpy(), reference.embed(latents_ref).numpy(), atol=1e-5)
        np.testing.assert_allclose(codec.decode(z_ref).numpy(), reference.decode(z_ref).numpy(), atol=1e-5)
        for n in (1, 9):
            np.testing.assert_allclose(codec.resynthesize(audio, n).numpy(), reference.resynthesize(audio, n).numpy(),
                                       atol=1e-5)
        snapped = codec.snap(latents_ref[0] + 0.01, 0)
        assert torch.equal(snapped, reference.snap(latents_ref[0] + 0.01, 0))
