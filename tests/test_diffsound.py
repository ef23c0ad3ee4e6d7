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
    opt = torch.optim.Adam(model.parameters(), lr=config["lr"])

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
