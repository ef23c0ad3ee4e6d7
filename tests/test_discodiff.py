"""DiscoDiff generators on the tiny untrained codec: the contract, the latent algebra, training, bad input."""
import numpy as np
import pytest
import torch

from bench.core.synthetic import synthetic_dataset
from bench.core.errors import CheckpointError, ConfigError
from generators.base import GenerationRequest, GeneratorContext, Prompt, build_generator
from generators.dac_codec import TINY_CONFIG, random_codec
from generators.discodiff import DiscoDiffTrainable
from generators.trainable import TrainingBatch, read_checkpoint, save_checkpoint
from bench.training.generator import TrainSettings, train_generator
from tests.generator_helpers import by_key, one_thread  # noqa: F401 (one_thread: autouse fixture)

PROMPTS = (Prompt("synthetic-0000", "a pure sine tone", 0), Prompt("synthetic-0001", "a noise burst", 1))
DUR = 0.1  # 4410 samples, 69 latent frames of the tiny codec (hop 64)
SMALLER = {"width": 16, "depth": 2, "emb_dim": 16, "text_dim": 16}  # denoisers smaller than "tiny", for speed


def _request(prompts=PROMPTS, **kw):
    base = dict(seed=0, duration_s=DUR, sample_rate=44100, steps=2, guidance=2.0, samples_per_prompt=2)
    return GenerationRequest(prompts, **{**base, **kw})


@pytest.fixture(scope="module")
def reference():
    return synthetic_dataset(n_clips=3, sample_rate=16000, duration_s=0.25, seed=0)


@pytest.fixture(scope="module")
def discodiff():
    return build_generator("discodiff", None, GeneratorContext())


def test_batch_invariance_and_seed_sensitivity(discodiff):
    whole = by_key(discodiff.generate(_request()))
    single = by_key(discodiff.generate(_request(prompts=PROMPTS[1:], samples_per_prompt=2)))
    np.testing.assert_array_equal(whole[("synthetic-0001", 1)], single[("synthetic-0001", 1)])
    np.testing.assert_array_equal(whole[("synthetic-0001", 0)], single[("synthetic-0001", 0)])
    a = whole[("synthetic-0000", 0)]
    assert a.shape == (1, int(DUR * 44100)) and np.all(np.isfinite(a))
    assert not np.array_equal(a, whole[("synthetic-0000", 1)])
    one = dict(prompts=PROMPTS[:1], samples_per_prompt=1)
    assert not np.array_equal(a, discodiff.generate(_request(seed=1, **one))[0].waveform)
    out = discodiff.generate(_request(**one))[0]
    np.testing.assert_array_equal(out.waveform, a)
    assert out.metadata["untrained"] and "untrained" in discodiff.version
    assert (out.metadata["steps"], out.metadata["guidance"]) == (2, 2.0)
    assert out.metadata["sampler"] == "ddpm" and out.metadata["classifier_free_guidance"]
    assert not out.metadata["sampler_is_paper"]


def test_default_sampler_is_the_papers_ancestral_ddpm_without_guidance(discodiff):
    """Appendix A: ancestral DDPM over T steps, no guidance; DDIM and guidance are labelled options."""
    one = dict(prompts=PROMPTS[:1], samples_per_prompt=1)
    default = discodiff.generate(_request(guidance=None, **one))[0]
    meta = default.metadata
    assert (meta["sampler"], meta["guidance"], meta["sampler_is_paper"]) == ("ddpm", 1.0, True)
    assert not meta["classifier_free_guidance"]
    ddpm_again = discodiff.generate(_request(guidance=None, options={"sampler": "ddpm"}, **one))[0]
    np.testing.assert_array_equal(ddpm_again.waveform, default.waveform)
    ddim = discodiff.generate(_request(guidance=None, options={"sampler": "ddim"}, **one))[0]
    assert ddim.metadata["sampler"] == "ddim" and not ddim.metadata["sampler_is_paper"]
    assert not np.array_equal(ddim.waveform, default.waveform)  # DDPM adds fresh noise at every step
    np.testing.assert_array_equal(
        discodiff.generate(_request(guidance=None, options={"sampler": "ddim"}, **one))[0].waveform, ddim.waveform)
    with pytest.raises(ConfigError, match="option sampler must be one of"):
        discodiff.generate(_request(options={"sampler": "euler"}, **one))


def test_ddpm_posterior_step_reaches_x0_and_matches_ddim_without_noise():
    """The ancestral step's mean at s = 0 is x0_hat; with the noise removed, DDPM and DDIM share the endpoint
    of a one-step chain, and a two-step chain differs only by the fresh noise of the middle step."""
    from generators.discodiff import v_sample

    class Constant(torch.nn.Module):
        def forward(self, x, t, text, cond=None):
            return torch.full_like(x, 0.5)

    noise = torch.randn(1, 2, 5, generator=torch.Generator().manual_seed(0))
    text = null = torch.zeros(1, 4)
    one_ddpm = v_sample(Constant(), noise, 1, 1.0, text, null, sampler="ddpm", rng=torch.Generator().manual_seed(1))
    one_ddim = v_sample(Constant(), noise, 1, 1.0, text, null, sampler="ddim")
    torch.testing.assert_close(one_ddpm, one_ddim)  # t = 1 -> 0: x0_hat = -v (alpha = 0, sigma = 1)
    torch.testing.assert_close(one_ddim, torch.full_like(noise, -0.5))
    a = v_sample(Constant(), noise, 2, 1.0, text, null, sampler="ddpm", rng=torch.Generator().manual_seed(1))
    b = v_sample(Constant(), noise, 2, 1.0, text, null, sampler="ddpm", rng=torch.Generator().manual_seed(2))
    assert not torch.equal(a, b)  # the middle step draws noise


def test_steps_guidance_and_rate(discodiff):
    one = dict(prompts=PROMPTS[:1], samples_per_prompt=1)
    base = discodiff.generate(_request(**one))[0].waveform
    assert not np.array_equal(base, discodiff.generate(_request(steps=3, **one))[0].waveform)
    assert not np.array_equal(base, discodiff.generate(_request(guidance=1.0, **one))[0].waveform)
    out = discodiff.generate(_request(sample_rate=16000, **one))[0]
    assert out.waveform.shape == (1, int(DUR * 16000))
    assert out.metadata["native_sample_rate"] == 44100 and out.metadata["resampler"] == "soxr-vhq"


def test_snapping_and_latent_query_use_exact_codebook_entries():
    codec = random_codec(TINY_CONFIG, seed=3)
    book = codec.codebook(2)
    entries = book[torch.tensor([5, 0, 63, 5])].T[None]  # [1, d, 4]
    nudged = entries + 1e-3 * torch.randn(entries.shape, generator=torch.Generator().manual_seed(0))
    assert torch.equal(codec.snap(nudged, 2), entries)
    assert not torch.equal(codec.snap(nudged, 1), entries)  # another codebook, other entries
    with torch.no_grad():
        codes, latents = codec.latent_query(codec.encode(torch.randn(1, 1, 640) * 0.1))
        for i, x in enumerate(latents):
            assert torch.equal(x, codec.codebook(i)[codes[0, i]].T[None])
            assert torch.equal(codec.snap(x, i), x)
        manual = sum(codec.model.quantizer.quantizers[i].out_proj(x) for i, x in enumerate(latents))
        torch.testing.assert_close(codec.embed(latents), manual)
    with pytest.raises(ConfigError, match="n_codebooks must be between 1 and 9"):
        codec.latent_query(torch.zeros(1, codec.config["latent_dim"], 4), 10)


def test_secondary_only_uses_the_reference_primary_latent(reference):
    with pytest.raises(ConfigError, match="'discodiff-secondary-only' needs reference audio"):
        build_generator("discodiff-secondary-only", None, GeneratorContext())
    gen = build_generator("discodiff-secondary-only", None, GeneratorContext(reference))
    out = by_key(gen.generate(_request()))
    assert not np.array_equal(out[("synthetic-0000", 0)], out[("synthetic-0001", 0)])
    other = synthetic_dataset(n_clips=3, sample_rate=16000, duration_s=0.25, seed=9)
    moved = build_generator("discodiff-secondary-only", None, GeneratorContext(other)).generate(
        _request(prompts=PROMPTS[:1], samples_per_prompt=1))[0]
    assert not np.array_equal(moved.waveform, out[("synthetic-0000", 0)])
    with pytest.raises(ConfigError, match="not in the reference set.*nope"):
        gen.generate(_request(prompts=(Prompt("nope", "x", 0),)))


def test_bad_input_is_refused(discodiff):
    with pytest.raises(ConfigError, match="steps must be > 0"):
        _request(steps=0)
    with pytest.raises(ConfigError, match="duration_s must be > 0"):
        _request(duration_s=0)
    with pytest.raises(ConfigError, match="empty prompt list"):
        _request(prompts=())
    with pytest.raises(ConfigError, match="steps must be <= 1000"):
        discodiff.generate(_request(steps=5000))
    with pytest.raises(ConfigError, match="guidance must be"):
        discodiff.generate(_request(guidance=float("nan")))
    with pytest.raises(ConfigError, match=r"unknown options \['n_codebooks'\]; known: \['sampler'\]"):
        discodiff.generate(_request(options={"n_codebooks": 3}))
    with pytest.raises(ConfigError, match="unknown size"):
        DiscoDiffTrainable().default_config("huge")


def test_training_lowers_the_loss_then_checkpoints_load(tmp_path):
    trainable = DiscoDiffTrainable()
    config = {**trainable.default_config("tiny"), **SMALLER}
    model = trainable.build(config, seed=0)
    clips = synthetic_dataset(n_clips=2, sample_rate=44100, duration_s=0.1, seed=1)
    audio = torch.stack([torch.from_numpy(clips.load(c)[0]) for c in clips.clips]).float()
    batch = TrainingBatch(audio, ["a pure sine tone", "a noise burst"], ["a", "b"])

    def loss():
        return trainable.training_loss(model, batch, torch.Generator().manual_seed(0))

    opt = torch.optim.Adam(model.parameters(), lr=config["lr"])
    before = loss().item()
    for _ in range(10):
        opt.zero_grad()
        loss().backward()
        opt.step()
    assert loss().item() < 0.8 * before
    assert all(not p.requires_grad for p in model.codec.parameters())
    assert not any(k.startswith("codec") or k.startswith("_codec") for k in model.state_dict())

    data = synthetic_dataset(n_clips=2, sample_rate=16000, duration_s=0.25, seed=1)
    ckpt = train_generator("discodiff", data, tmp_path / "run", TrainSettings(steps=1, every=1, batch_size=2),
                           overrides=SMALLER, progress=False, log=lambda *a: None).checkpoints[-1]
    gen = build_generator("discodiff", str(ckpt), GeneratorContext())
    out = gen.generate(_request(prompts=PROMPTS[:1], samples_per_prompt=1))[0]
    assert not out.metadata["untrained"] and out.metadata["checkpoint_step"] == 1
    assert np.all(np.isfinite(out.waveform))
    state = read_checkpoint(ckpt)
    bad = tmp_path / "bad.pt"
    save_checkpoint(bad, {**state, "config": {**state["config"], "width": 24}})
    with pytest.raises(CheckpointError, match=r"bad.pt: incompatible checkpoint: key '.*' has shape"):
        build_generator("discodiff-secondary-only", str(bad), GeneratorContext(data))


def test_the_record_says_which_sampler_ran(tmp_path):
    """generate_cell's summary (the RunRecord's `generation`) lists the samplers the samples' metadata name."""
    from bench.runner import build_prompts, generate_cell
    from bench.suite import load_suite

    path = tmp_path / "disco.toml"
    path.write_text('name = "disco"\nmetrics = ["fad-vggish@audioldm"]\n'
                    '[reference]\nbuiltin = "synthetic"\nn_clips = 1\nduration_s = 0.25\n'
                    f'[generation]\nduration_s = {DUR}\nsample_rates = [44100]\nsteps = [2]\n'
                    '[[generators]]\nname = "discodiff"\nlabel = "ddpm"\n'
                    '[[generators]]\nname = "discodiff"\nlabel = "ddim"\noptions = { sampler = "ddim" }\n')
    suite = load_suite(path)
    reference = synthetic_dataset(n_clips=1, sample_rate=16000, duration_s=0.25, seed=0)
    prompts = build_prompts(suite, reference)
    for cell in suite.cells:
        _, gen = generate_cell(cell, prompts, reference, tmp_path / "cache", tmp_path / cell.label, False)
        assert gen["summary"]["samplers"] == [{"sampler": cell.label, "steps": 2, "guidance": 1.0}]
