"""diffsound: the mask-and-uniform transition, its posterior, the strided sampler, training, the contract."""
import numpy as np
import pytest
import torch

from bench.core.synthetic import synthetic_dataset
from bench.core.errors import CheckpointError, ConfigError
from generators.base import GenerationRequest, GeneratorContext, Prompt, build_generator
from generators.diffsound_diffusion import MaskUniformSchedule
from generators.trainable import TrainingBatch, get_trainable
from tests.generator_helpers import one_thread  # noqa: F401 (autouse fixture)

PROMPTS = (Prompt("a", "a dog barks", 0), Prompt("b", "rain on a roof", 1), Prompt("c", "a sine tone", 2))


def _request(prompts=PROMPTS, **kw):
    args = dict(prompts=prompts, seed=0, duration_s=0.5, sample_rate=16000)
    return GenerationRequest(**{**args, **kw})


@pytest.mark.parametrize("rate", [0.0, 0.5, 0.9, 1.0])
def test_transition_rows_sum_to_one_and_reach_final_mask_rate(rate):
    s = MaskUniformSchedule(num_tokens=7, timesteps=12, final_mask_rate=rate)
    product = torch.eye(8, dtype=torch.float64)
    for t in range(1, 13):
        q = s.transition(t - 1, t)
        assert (q >= 0).all()
        torch.testing.assert_close(q.sum(1), torch.ones(8, dtype=torch.float64))
        product = product @ q
        torch.testing.assert_close(product, s.cumulative(t))  # one-step matrices compose to eq. 19
    final = s.cumulative(12)
    torch.testing.assert_close(final[:7, 7], torch.full((7,), rate, dtype=torch.float64))  # mask mass
    # bar_alpha_T = 0: the clean token is no likelier than any other at t = T
    torch.testing.assert_close(final[0, 0], final[0, 1])
    assert final[7, 7] == 1.0  # [MASK] is absorbing


def test_posterior_is_bayes_rule_and_strided_posterior_matches_marginal():
    s = MaskUniformSchedule(num_tokens=5, timesteps=6, final_mask_rate=0.9)
    x0 = 2
    for t, u in [(3, 2), (6, 2), (6, 0)]:  # one step, a stride of 4, a jump to x0
        for xt in range(6):
            joint = s.cumulative(u)[x0] * s.transition(u, t)[:, xt]
            if joint.sum() == 0:
                continue
            got = s.posterior(torch.nn.functional.one_hot(torch.tensor([[x0]]), 5).double(), torch.tensor([[xt]]), u, t)
            torch.testing.assert_close(got[0, 0], joint / joint.sum())


def test_q_sample_matches_cumulative_distribution():
    s = MaskUniformSchedule(num_tokens=4, timesteps=10, final_mask_rate=0.9)
    x0 = torch.zeros(1, 40000, dtype=torch.long)
    xt = s.q_sample(x0, torch.tensor([7]), torch.Generator().manual_seed(0))
    freq = torch.bincount(xt[0], minlength=5).double() / xt.numel()
    torch.testing.assert_close(freq, s.cumulative(7)[0], atol=0.01, rtol=0)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A diffsound checkpoint written by the generic trainer (2 steps: enough to test loading)."""
    from bench.training.generator import TrainSettings, train_generator

    out = tmp_path_factory.mktemp("diffsound")  # train_generator runs on 1 thread (its default)
    data = synthetic_dataset(4, 16000, 1.0, seed=0)
    result = train_generator("diffsound", data, out, TrainSettings(steps=2, every=2, batch_size=2), progress=False,
                             log=lambda *a: None)
    return result.checkpoints[-1]


def test_checkpoint_loads_batch_invariant_and_stride_changes_steps(trained):
    gen = build_generator("diffsound", str(trained), GeneratorContext())
    assert not gen.info["untrained"] and gen.version.startswith("step2-")
    whole = {(o.prompt_id, o.sample_index): o for o in gen.generate(_request(samples_per_prompt=2))}
    single = gen.generate(_request(prompts=(PROMPTS[2],), samples_per_prompt=2))
    for o in single:
        np.testing.assert_array_equal(o.waveform, whole[(o.prompt_id, o.sample_index)].waveform)
    full, fast = (gen.generate(_request(prompts=PROMPTS[:1], options={"time_stride": d}))[0] for d in (1, 7))
    assert full.metadata["steps"] == 20 and fast.metadata["steps"] == 3 and fast.metadata["time_stride"] == 7
    assert np.abs(full.waveform - fast.waveform).max() > 0
    by_steps = gen.generate(_request(prompts=PROMPTS[:1], steps=5))[0]
    assert by_steps.metadata["time_stride"] == 4 and by_steps.metadata["steps"] == 5
    meta = full.metadata
    assert meta["vocoder"] == "learned mel vocoder" and meta["checkpoint_sha256"] and meta["untrained"] is False
    assert full.waveform.shape == (1, 8000) and full.waveform.dtype == np.float32


def test_training_lowers_loss():
    trainable = get_trainable("diffsound")
    config = trainable.default_config("tiny")
    model = trainable.build(config, seed=0)
    data = synthetic_dataset(4, 16000, 0.5, seed=0)
    audio = torch.stack([torch.from_numpy(data.load(c)[0]) for c in data.clips])
    batch = TrainingBatch(audio, [c.caption for c in data.clips], [c.id for c in data.clips])
    opt = torch.optim.Adam(model.parameters(), lr=config["lr_schedule"]["warmup_lr"])

    def loss():
        return trainable.training_loss(model, batch, torch.Generator().manual_seed(0))

    first = float(loss().detach())
    for _ in range(12):
        opt.zero_grad()
        loss().backward()
        opt.step()
    assert float(loss().detach()) < 0.8 * first


def test_untrained_griffin_lim_and_bad_input(trained, tmp_path):
    gen = build_generator("diffsound", None, GeneratorContext())
    assert gen.info["untrained"] and "untrained" in gen.version
    out = gen.generate(_request(prompts=PROMPTS[:1], sample_rate=22050, options={"time_stride": 10}))[0]
    assert out.metadata["untrained"] is True and out.metadata["resampler"] == "soxr-vhq"
    with pytest.raises(ConfigError, match="empty text"):
        gen.generate(_request(prompts=(Prompt("x", "", 0),)))
    with pytest.raises(ConfigError, match="time_stride"):
        gen.generate(_request(options={"time_stride": 0}))
    with pytest.raises(ConfigError, match="contradicts"):
        gen.generate(_request(steps=3, options={"time_stride": 2}))
    with pytest.raises(ConfigError, match="no guidance"):
        gen.generate(_request(guidance=3.0))
    with pytest.raises(ConfigError, match="steps"):
        _request(steps=0)
    # Griffin-Lim fallback is labelled as such
    trainable = get_trainable("diffsound")
    gl = trainable.build({**trainable.default_config("tiny"), "vocoder": "griffin-lim"}, 0)
    from generators.diffsound import DiffsoundGenerator

    info = {"untrained": True, "label": "untrained-tiny-seed0", "checkpoint": None, "sha256": None, "step": 0}
    g2 = DiffsoundGenerator(gl.eval(), gl.config, info, GeneratorContext())
    meta = g2.generate(_request(prompts=PROMPTS[:1], options={"time_stride": 10}))[0].metadata
    assert meta["vocoder"].startswith("griffin-lim (phase reconstruction fallback")
    # a checkpoint of another architecture names the mismatching key
    state = torch.load(trained, weights_only=True)
    state["config"] = {**state["config"], "dim": 32}
    bad = tmp_path / "bad.pt"
    torch.save(state, bad)
    with pytest.raises(CheckpointError, match="incompatible checkpoint: key .* shape"):
        build_generator("diffsound", str(bad), GeneratorContext())
    with pytest.raises(CheckpointError, match="trained for generator 'diffsound'"):
        build_generator("srcgaudio", str(trained), GeneratorContext())


# ------------------------------------------------------------------ the paper config and the authors' weights

def test_paper_config_is_the_papers_model_and_the_authors_layout_key_for_key():
    """Section V-B: 22.05 kHz, 80 mels, an 860-frame mel cropped to 848 -> 5 x 53 = 265 tokens, K = 256 codes of
    dim 256, a 19-layer, 16-head, 1024-d transformer, T = 100; every name and shape of the authors' diffusion
    checkpoint (enumerated from their code in tests/diffsound_official_layout.py) is one of ours, on the
    meta device (no memory)."""
    from generators.diffsound import DiffsoundModel, token_grid
    from generators.diffsound_official import SCHEDULE_BUFFERS
    from generators.trainable import describe_model
    from tests.diffsound_official_layout import diffusion_checkpoint_layout, discriminator_layout

    config = get_trainable("diffsound").default_config("paper")
    assert (config["layers"], config["heads"], config["dim"], config["timesteps"]) == (19, 16, 1024, 100)
    assert (config["codebook_size"], config["code_dim"], config["n_mels"], config["hop"]) == (256, 256, 80, 256)
    assert token_grid(config) == (5, 53) and 5 * 53 == 265
    assert config["optimizer"] == {"name": "adamw", "betas": [0.9, 0.94], "weight_decay": 4.5e-2}
    assert config["freeze_text_encoder"]  # "the VQ-VAE and text encoder are fixed when we train the decoder"
    with torch.device("meta"):
        model = DiffsoundModel(config)
    assert model.frames(10 * 22050) == 848  # 10 s: 862 centred frames (the paper's ~860) cropped to 848
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    official = diffusion_checkpoint_layout(config, token_grid(config))
    dropped = {k for k in official if k.endswith(".attn2.mask") or k.split(".")[-1] in SCHEDULE_BUFFERS}
    expected = {k: v for k, v in official.items() if k not in dropped}
    expected.update({f"content_codec.{k}": v for k, v in discriminator_layout(64, 3).items()})
    assert ours == expected
    # bench describe's count: the transformer is 19 blocks of ~20.1M; the whole model the authors' parameters
    described = describe_model("diffsound", "paper")
    net = described.modules["transformer.transformer"]
    assert abs(net - 383.4e6) <= 0.05 * 383.4e6
    n_params = sum(int(np.prod(v)) for k, v in expected.items()
                   if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    assert described.total == n_params


def _official_files(tmp_path, config, seed=0):
    """A diffusion checkpoint and a VQ-VAE checkpoint in the authors' formats, random tensors of their
    names and shapes (what a download of theirs holds), for `config`."""
    from generators.diffsound import token_grid
    from tests.diffsound_official_layout import diffusion_checkpoint_layout, discriminator_layout, vqgan_layout

    g = torch.Generator().manual_seed(seed)

    def tensors(layout):
        return {k: (torch.zeros(v, dtype=torch.long) if k.endswith("num_batches_tracked") else
                    torch.rand(v, generator=g) + 0.5 if k.endswith("running_var") else
                    0.05 * torch.randn(v, generator=g)) for k, v in layout.items()}

    model = tensors(diffusion_checkpoint_layout(config, token_grid(config)))
    ema = {k[len("transformer."):]: v + 0.01 for k, v in model.items() if k.startswith("transformer.")}
    vq = tensors({**vqgan_layout(config), **discriminator_layout(config["disc_channels"], config["disc_layers"]),
                  "loss.perceptual_loss.net.lin0.weight": (1, 4, 1, 1)})
    diffusion_path, vq_path = tmp_path / "diffsound_caps.pth", tmp_path / "last.ckpt"
    torch.save({"model": model, "ema": ema, "last_epoch": 299}, diffusion_path)
    torch.save({"state_dict": vq, "global_step": 1000}, vq_path)
    return diffusion_path, vq_path, model, ema, vq


SMALL_CLIP = {"text_encoder": "clip-text", "text_dim": 32, "text_vocab": 100, "text_max_words": 8,
              "text_layers": 1, "text_heads": 2, "adversarial_weight": 0.8, "vocoder": "griffin-lim"}


def test_the_authors_checkpoints_load_key_for_key_and_generate(tmp_path, monkeypatch):
    from generators.diffsound import DiffsoundGenerator, DiffsoundTrainable
    from generators.diffsound_official import is_official, load_official
    from generators.text_encoders import ClipTextTower

    trainable = DiffsoundTrainable()
    config = {**trainable.default_config("tiny"), **SMALL_CLIP}
    diffusion_path, vq_path, model_state, ema, vq = _official_files(tmp_path, config)
    assert is_official(diffusion_path) and not is_official(vq_path)
    bench_format = tmp_path / "bench.pt"
    torch.save({"format": "bench-generator-checkpoint/1", "model": torch.load(diffusion_path)["model"]}, bench_format)
    assert not is_official(bench_format)
    model = trainable.build({**config, "freeze_text_encoder": True}, seed=0)
    assert not any(p.requires_grad for p in model.transformer.condition_emb.parameters())
    assert all(p.requires_grad for p in model.transformer.transformer.parameters())
    info = load_official(model, diffusion_path, vq_path)
    state = model.state_dict()
    assert info["epoch"] == 299 and info["discriminator"] == "from the VQ-VAE checkpoint"
    assert torch.equal(state["content_codec.encoder.conv_in.weight"], model_state["content_codec.encoder.conv_in.weight"])
    # the transformer takes the EMA weights, as the authors' sampling does
    key = "transformer.blocks.1.attn2.key.weight"
    assert torch.equal(state[f"transformer.{key}"], ema[key])
    assert torch.equal(state["transformer.condition_emb.positional_embedding"],
                       ema["condition_emb.positional_embedding"])
    assert torch.equal(state["content_codec.loss.discriminator.main.2.weight"], vq["loss.discriminator.main.2.weight"])
    # CLIP's tokenizer is not in this offline cache: ids from a fixed table stand in for its BPE
    monkeypatch.setattr(ClipTextTower, "ids", lambda self, caps: torch.tensor(
        [[49406 % 100, *(len(w) for w in c.split())][:8] + [0] * (8 - min(8, 1 + len(c.split()))) for c in caps]))
    gen = DiffsoundGenerator(model.eval(), config, {"untrained": False, "label": "official-test", "checkpoint": None,
                                                    "sha256": info["sha256"], "step": None}, GeneratorContext())
    out = gen.generate(_request(prompts=PROMPTS[:1], steps=2, duration_s=0.5))[0]
    assert out.waveform.shape == (1, 8000) and np.isfinite(out.waveform).all()

    other = tmp_path / "other"
    other.mkdir()
    bad_t = {**config, "timesteps": 10}
    with pytest.raises(CheckpointError, match=r"transformer.log_at has shape \(20,\), expected \(10,\)"):
        load_official(trainable.build(bad_t, 0), diffusion_path)
    wider = {**config, "dim": 32}
    with pytest.raises(CheckpointError, match="incompatible checkpoint: key 'transformer.transformer.content_emb"):
        load_official(trainable.build(wider, 0), diffusion_path)
    no_disc = load_official(trainable.build(config, 0), diffusion_path)
    assert no_disc["discriminator"] == "seeded (no VQ-VAE checkpoint given)"


def test_adversarial_loss_is_an_option_with_its_weight():
    """Eq. 3: with adversarial_weight > 0 the VQ-VAE loss gains the VQ-GAN terms, and the discriminator learns."""
    trainable = get_trainable("diffsound")
    clips = synthetic_dataset(n_clips=2, sample_rate=16000, duration_s=1.0, seed=1)
    audio = torch.stack([torch.from_numpy(clips.load(c)[0]) for c in clips.clips]).float()
    batch = TrainingBatch(audio, ["a", "b"], ["a", "b"])
    losses = {}
    for weight in (0.0, 0.8):
        model = trainable.build({**trainable.default_config("tiny"), "adversarial_weight": weight}, seed=0)
        mel = model.logmel(batch.audio.mean(1))
        losses[weight] = model.content_codec.loss_terms(mel, weight)[0]
        assert hasattr(model.content_codec, "loss") == (weight > 0)
    assert losses[0.8].item() != losses[0.0].item()
    losses[0.8].backward()
    assert model.content_codec.loss.discriminator.main[0].weight.grad.abs().sum() > 0


def test_the_authors_learning_rate_schedule_warms_up_then_halves_on_plateaus():
    from bench.training.lr_schedule import build_lr_schedule

    spec = {"name": "warmup-plateau", "warmup_steps": 4, "warmup_lr": 5e-3, "factor": 0.5, "patience": 2,
            "min_lr": 1e-3, "threshold": 0.1}
    s = build_lr_schedule({"lr_schedule": spec}, 1e-3)
    lrs = []
    for loss in [9, 9, 9, 9, 1.0, 0.95, 0.95, 0.95] + [0.5] * 10:
        lrs.append(s.lr_at(len(lrs)))
        s.observe(loss)
    np.testing.assert_allclose(lrs[:5], [1e-3, 2e-3, 3e-3, 4e-3, 5e-3])  # linear warm-up to warmup_lr
    # after warm-up: 1.0 is the best; 0.95 is not 10% better: the third such step halves the rate
    assert lrs[5:9] == pytest.approx([5e-3, 5e-3, 5e-3, 2.5e-3])
    assert lrs[-1] == pytest.approx(1e-3)  # never below min_lr
    with pytest.raises(ConfigError, match="missing \\['threshold'\\]"):
        build_lr_schedule({"lr_schedule": {k: v for k, v in spec.items() if k != "threshold"}}, 1e-3)


def test_training_with_adamw_and_the_schedule_resumes_bit_identically(tmp_path):
    from bench.training.generator import TrainSettings, train_generator
    from generators.trainable import read_checkpoint

    data = synthetic_dataset(2, 16000, 1.0, seed=0)
    quiet = dict(progress=False, log=lambda *a: None)
    straight = train_generator("diffsound", data, tmp_path / "a", TrainSettings(steps=3, every=3, batch_size=2),
                               **quiet)
    train_generator("diffsound", data, tmp_path / "b", TrainSettings(steps=2, every=2, batch_size=2), **quiet)
    resumed = train_generator("diffsound", data, tmp_path / "b", TrainSettings(steps=3, every=3, batch_size=2),
                              **quiet)
    assert resumed.start_step == 2 and resumed.losses[-1] == straight.losses[-1]
    a, b = read_checkpoint(straight.checkpoints[-1]), read_checkpoint(resumed.checkpoints[-1])
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert a["lr_schedule"] == b["lr_schedule"] and a["lr_schedule"]["lr"] == pytest.approx(2e-4 + 3 * 3.6e-4)
    assert a["training"]["optimizer"]["name"] == "adamw" and a["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.94)
