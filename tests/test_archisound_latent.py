"""ArchiSound's diffusion magnitude autoencoder and the latent text-to-music model (thesis section 5.4): their
shapes, sizes, the decoder's preconditioning, training at tiny size (loss falls; the decoder reconstructs
from its latent, better than from another clip's and than untrained), generation."""
import numpy as np
import pytest
import torch

from bench.benchmarks.dmae_latent_use import clips, denoising_error, reconstruction_error
from bench.core.errors import ConfigError
from bench.core.synthetic import synthetic_dataset
from bench.training.generator import TrainSettings, train_generator
from generators.base import GenerationRequest, GeneratorContext, Prompt, build_generator
from generators.trainable import describe_model, get_trainable, model_for_generator
from tests.generator_helpers import by_key, one_thread  # noqa: F401 (autouse fixture)

QUIET = dict(progress=False, log=lambda *a: None)
# Reconstruction error (bench.benchmarks.dmae_latent_use): mean |log10 mel power| difference between the
# decoded and the original clip, over the built-in set's 8 clips, 10 sampler steps. After 200 steps (batch
# 16, 0.25 s crops, lr 3e-3; the benchmark's default run) the tiny autoencoder measured 1.45 from each clip's
# own latent, 1.75 from another clip's, 2.46 untrained; training seeds 1 and 2 gave 1.59 / 1.76 and
# 1.55 / 1.78. One-step estimate from t = 0.5: 0.023 with the own latent, 0.069 with another's (the clips'
# mean square: 0.059). docs/generators.md, "What the tiny autoencoder learns".
RECONSTRUCTION_BOUND = 1.7


@pytest.fixture(scope="module")
def data():
    return synthetic_dataset(8, 8000, 0.5, seed=1)


@pytest.fixture(scope="module")
def dmae(data, tmp_path_factory):
    out = train_generator("archisound-dmae", data, tmp_path_factory.mktemp("dmae"),
                          TrainSettings(steps=200, every=200, batch_size=16, lr=3e-3),
                          overrides={"duration_s": 0.25}, **QUIET)
    return out


def test_the_autoencoder_compresses_64x_with_a_tanh_latent_at_both_sizes():
    for size, latent_shape in (("tiny", (2, 62)), ("paper", (32, 256))):
        config = get_trainable("archisound-dmae").default_config(size)
        with torch.device("meta"):
            model = get_trainable("archisound-dmae").build(config, 0)
        assert model.compression == 64  # section 5.4.2: "compressed 64x compared to the original waveform"
        n = 2 ** 18 if size == "paper" else 7936
        assert n // model.latent_hop == latent_shape[1]
        assert model.unet.inject_level == len(config["factors"]) - 1  # the deepest level runs at the latent rate
    model = get_trainable("archisound-dmae").build(get_trainable("archisound-dmae").default_config("tiny"), 0)
    latent = model.encode(torch.randn(1, 1, 7936) * 5)
    assert latent.shape == (1, 2, 62) and latent.abs().max() <= 1  # the tanh bottleneck


def test_the_decoder_is_preconditioned_for_the_datas_rms_and_old_configs_build_without_it():
    trainable = get_trainable("archisound-dmae")
    model = trainable.build(trainable.default_config("tiny"), 0)
    # with the network's output at zero, v is the best linear estimate for white data of rms sigma_data:
    # its error is the irreducible part, sigma_data^2 / (alpha^2 sigma_data^2 + sigma^2) per value
    model._network = lambda x, *rest: torch.zeros_like(x)
    g = torch.Generator().manual_seed(0)
    x0, eps = 0.25 * torch.randn(4, 1, 50000, generator=g), torch.randn(4, 1, 50000, generator=g)
    for t in (0.2, 0.5, 0.9):
        alpha, sigma = np.cos(t * np.pi / 2), np.sin(t * np.pi / 2)
        v = model(alpha * x0 + sigma * eps, torch.full((4,), t), latent=None)
        error = float(((v - (alpha * eps - sigma * x0)) ** 2).mean())
        assert abs(error - 0.0625 / (alpha ** 2 * 0.0625 + sigma ** 2)) < 0.01 * error, t
    # a checkpoint from before the three keys: the plain v-objective, the latent only concatenated
    old = {k: v for k, v in trainable.default_config("tiny").items()
           if k not in ("sigma_data", "latent_film", "latent_gain")}
    keys = list(trainable.build(old, 0).state_dict())
    assert not any("cond_film" in k or k.startswith("gain.") for k in keys)
    assert any("cond_film" in k for k in model.state_dict()) and model.gain is not None
    with pytest.raises(ConfigError, match="sigma_data must be > 0"):
        trainable.build({**trainable.default_config("tiny"), "sigma_data": 0.0}, 0)


def test_the_latent_model_is_the_theses_size():
    # section 1: "Long ... (~857M parameters)", within 10%; the text encoder is left out as T5 is
    d = describe_model("archisound-latent", "paper")
    unet = d.modules["unet"]
    assert abs(unet - 857e6) <= 0.10 * 857e6, unet
    assert d.config["duration_s"] * 48000 == 2 ** 21  # section 5.7.1: 2^21-sample crops (~44 s)


def test_the_autoencoder_learns_to_reconstruct_from_its_latent(data, dmae):
    losses = dmae.losses
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:5])
    x0 = clips(data)
    untrained, _, _ = model_for_generator("archisound-dmae", None)
    trained, _, _ = model_for_generator("archisound-dmae", str(dmae.checkpoints[-1]))
    own, swapped = reconstruction_error(trained, x0), reconstruction_error(trained, x0, shift=1)
    assert own < RECONSTRUCTION_BOUND < reconstruction_error(untrained, x0)
    assert own < 0.93 * swapped, (own, swapped)  # the decoded clip follows its latent
    with torch.no_grad():
        latents = trained.encode(x0)
    own_step, swapped_step = denoising_error(trained, x0, latents), denoising_error(trained, x0, latents.roll(-1, 0))
    assert own_step < 0.5 * swapped_step and own_step < 0.5 * float(x0.pow(2).mean()), (own_step, swapped_step)

    gen = build_generator("archisound-dmae", str(dmae.checkpoints[-1]), GeneratorContext(data))
    prompts = tuple(Prompt(c.id, c.caption, i) for i, c in enumerate(data.clips[:2]))
    out = gen.generate(GenerationRequest(prompts, seed=0, duration_s=0.3, sample_rate=8000, steps=3))
    assert [o.waveform.shape for o in out] == [(1, 2400)] * 2
    assert out[0].metadata["compression"] == 64 and out[0].metadata["latent_shape"] == [2, 19]
    assert out[0].metadata["reference_clip_hash"] and not out[0].metadata["untrained"]
    with pytest.raises(ConfigError, match="needs a reference set"):
        build_generator("archisound-dmae", None, GeneratorContext())


def test_the_latent_model_trains_on_the_autoencoders_latents_and_generates(data, dmae, tmp_path):
    ae = str(dmae.checkpoints[-1])
    out = train_generator("archisound-latent", data, tmp_path / "latent", TrainSettings(steps=30, every=30, batch_size=4,
                                                                                      lr=3e-3),
                          overrides={"autoencoder": ae, "duration_s": 0.25}, **QUIET)
    assert np.mean(out.losses[-5:]) < 0.7 * np.mean(out.losses[:5])
    gen = build_generator("archisound-latent", str(out.checkpoints[-1]), GeneratorContext())
    prompts = (Prompt("a", "a steady sine tone", 0), Prompt("b", "white noise bursts", 1))
    request = dict(seed=0, duration_s=0.3, sample_rate=8000, steps=3, samples_per_prompt=2,
                   options={"decoder_steps": 2})
    whole = by_key(gen.generate(GenerationRequest(prompts, **request)))
    single = by_key(gen.generate(GenerationRequest(prompts[1:], **request)))
    np.testing.assert_array_equal(whole[("b", 1)], single[("b", 1)])
    assert whole[("a", 0)].shape == (1, 2400) and not np.array_equal(whole[("a", 0)], whole[("a", 1)])
    meta = gen.generate(GenerationRequest(prompts[:1], seed=0, duration_s=0.3, sample_rate=8000, steps=2))[0].metadata
    assert meta["autoencoder"]["checkpoint"] == ae and len(meta["autoencoder"]["sha256"]) == 64
    assert (meta["decoder_steps"], meta["guidance"]) == (10, 2.0) and not meta["untrained"]

    untrained = build_generator("archisound-latent", None, GeneratorContext())
    sample = untrained.generate(GenerationRequest(prompts[:1], seed=0, duration_s=0.3, sample_rate=16000, steps=2,
                                                  options={"decoder_steps": 2}))[0]
    assert sample.metadata["untrained"] and sample.metadata["autoencoder"]["untrained"]
    assert sample.waveform.shape == (1, 4800) and sample.metadata["resampler"] == "soxr-vhq"
    with pytest.raises(ConfigError, match="decoder_steps must be an integer"):
        untrained.generate(GenerationRequest(prompts[:1], seed=0, duration_s=0.3, sample_rate=8000,
                                             options={"decoder_steps": 0}))
    trainable = get_trainable("archisound-latent")
    with pytest.raises(ConfigError, match="the autoencoder runs at 8000 Hz"):
        trainable.build({**trainable.default_config("tiny"), "autoencoder": ae, "sample_rate": 16000}, 0)
