"""ArchiSound generators: the Generator contract (batch invariance, seeds, real steps and guidance), the
upsampler and vocoder on reference audio, checkpoints (train a few steps then sample), bad input."""
import numpy as np
import pytest
import torch

from bench.core.synthetic import synthetic_dataset
from bench.core.errors import CheckpointError, ConfigError
from generators.base import GenerationRequest, GeneratorContext, Prompt, build_generator
from bench.training.generator import TrainSettings, train_generator
from generators.trainable import read_checkpoint, save_checkpoint
from tests.generator_helpers import by_key, one_thread  # noqa: F401 (one_thread: autouse fixture)

PROMPTS = (Prompt("synthetic-0000", "a pure sine tone", 0), Prompt("synthetic-0001", "a noise burst", 1),
           Prompt("synthetic-0002", "", 2))
TINY = {"widths": [8, 16], "factors": [1, 2], "items": [1, 1], "attentions": [0, 1], "cross_attentions": [1, 1],
        "head_features": 8, "transform_width": 8, "emb_dim": 16, "text_dim": 16, "heads": 2, "duration_s": 0.25,
        "patch": 8}


def _request(prompts=PROMPTS, **kw):
    args = dict(prompts=prompts, seed=0, duration_s=0.3, sample_rate=8000, steps=3, samples_per_prompt=2)
    return GenerationRequest(**{**args, **kw})


@pytest.fixture(scope="module")
def reference():
    return synthetic_dataset(n_clips=3, sample_rate=16000, duration_s=0.5, seed=0)


@pytest.fixture(scope="module")
def archisound():
    return build_generator("archisound", None, GeneratorContext())


def test_batch_order_invariance_and_seed_sensitivity(archisound):
    torch.manual_seed(5)  # the global RNG must not matter
    whole = by_key(archisound.generate(_request()))
    torch.manual_seed(6)
    one_by_one = {}
    for p in reversed(PROMPTS):
        one_by_one.update(by_key(archisound.generate(_request(prompts=(p,)))))
    assert whole.keys() == one_by_one.keys()
    for k in whole:
        np.testing.assert_array_equal(whole[k], one_by_one[k])
    other_seed = by_key(archisound.generate(_request(seed=1, prompts=PROMPTS[:1])))
    a = whole[("synthetic-0000", 0)]
    assert a.shape == (1, 2400) and a.dtype == np.float32 and np.all(np.isfinite(a)) and np.abs(a).max() <= 1
    assert not np.array_equal(a, other_seed[("synthetic-0000", 0)])
    assert not np.array_equal(a, whole[("synthetic-0000", 1)])
    assert not np.array_equal(a, whole[("synthetic-0001", 0)])


def test_steps_guidance_and_text_change_the_output(archisound):
    one = PROMPTS[:1]
    base = archisound.generate(_request(prompts=one, samples_per_prompt=1))[0]
    assert base.metadata["steps"] == 3 and base.metadata["guidance"] == 2.0 and base.metadata["untrained"]
    assert "untrained" in archisound.version
    more_steps = archisound.generate(_request(prompts=one, samples_per_prompt=1, steps=5))[0]
    no_guidance = archisound.generate(_request(prompts=one, samples_per_prompt=1, guidance=1.0))[0]
    more_guidance = archisound.generate(_request(prompts=one, samples_per_prompt=1, guidance=4.0))[0]
    other_text = archisound.generate(_request(prompts=(Prompt("x", "a chirp rising", 0),), samples_per_prompt=1))[0]
    for other in (more_steps, no_guidance, more_guidance, other_text):
        assert np.abs(other.waveform - base.waveform).max() > 1e-4
    assert more_steps.metadata["steps"] == 5 and no_guidance.metadata["guidance"] == 1.0


def test_other_rates_are_resampled_and_recorded(archisound):
    out = archisound.generate(_request(prompts=PROMPTS[:1], samples_per_prompt=1, sample_rate=16000))[0]
    assert out.sample_rate == 16000 and out.waveform.shape == (1, 4800)
    assert out.metadata["native_sample_rate"] == 8000 and out.metadata["resampler"] == "soxr-vhq"


def test_bad_input_is_refused(archisound, reference):
    with pytest.raises(ConfigError, match="steps must be > 0"):
        _request(steps=0)
    with pytest.raises(ConfigError, match="empty prompt list"):
        _request(prompts=())
    with pytest.raises(ConfigError, match="duration_s must be > 0"):
        _request(duration_s=-1)
    with pytest.raises(ConfigError, match="exceeds the sampler's maximum 1000"):
        archisound.generate(_request(steps=1001))
    with pytest.raises(ConfigError, match="guidance must be >= 0"):
        archisound.generate(_request(guidance=-1.0))
    with pytest.raises(ConfigError, match="'archisound-upsampler' needs a reference set"):
        build_generator("archisound-upsampler", None, GeneratorContext())
    vocoder = build_generator("archisound-vocoder", None, GeneratorContext(reference))
    with pytest.raises(ConfigError, match="has no guidance scale"):
        vocoder.generate(_request(guidance=2.0))
    with pytest.raises(ConfigError, match="prompt id 'nope' is not in the reference set"):
        vocoder.generate(_request(prompts=(Prompt("nope", "x", 0),)))


@pytest.mark.parametrize("name", ["archisound-upsampler", "archisound-vocoder"])
def test_upsampler_and_vocoder_follow_the_contract(name, reference):
    gen = build_generator(name, None, GeneratorContext(reference))
    assert gen.reads_reference and not gen.uses_guidance
    whole = by_key(gen.generate(_request(prompts=PROMPTS[:2])))
    single = by_key(gen.generate(_request(prompts=PROMPTS[1:2])))
    np.testing.assert_array_equal(whole[("synthetic-0001", 1)], single[("synthetic-0001", 1)])
    assert not np.array_equal(whole[("synthetic-0001", 0)], whole[("synthetic-0001", 1)])
    out = gen.generate(_request(prompts=PROMPTS[:1], samples_per_prompt=1))[0]
    assert out.metadata["reference_clip_hash"] == reference.clip_hash("synthetic-0000")
    # the conditioning is used: another reference clip under the same id changes the output
    other = synthetic_dataset(n_clips=3, sample_rate=16000, duration_s=0.5, seed=9)
    moved = build_generator(name, None, GeneratorContext(other)).generate(_request(prompts=PROMPTS[:1],
                                                                                   samples_per_prompt=1))[0]
    assert np.abs(moved.waveform - out.waveform).max() > 1e-4


def test_train_a_few_steps_then_sample_and_incompatible_checkpoint(tmp_path):
    data = synthetic_dataset(n_clips=4, sample_rate=8000, duration_s=0.5, seed=1)
    ckpt = train_generator("archisound", data, tmp_path / "run", TrainSettings(steps=2, every=2, batch_size=2),
                           overrides=TINY, progress=False, log=lambda *a: None).checkpoints[-1]
    gen = build_generator("archisound", str(ckpt), GeneratorContext())
    out = gen.generate(_request(prompts=PROMPTS[:1], samples_per_prompt=1))[0]
    assert not out.metadata["untrained"] and out.metadata["checkpoint_step"] == 2
    assert gen.version.startswith("1+step2-") and np.all(np.isfinite(out.waveform))
    untrained = build_generator("archisound", None, GeneratorContext()).generate(
        _request(prompts=PROMPTS[:1], samples_per_prompt=1))[0]
    assert untrained.waveform.shape == out.waveform.shape

    state = read_checkpoint(ckpt)
    bad = tmp_path / "bad.pt"
    save_checkpoint(bad, {**state, "config": {**state["config"], "emb_dim": 24}})
    with pytest.raises(CheckpointError, match=r"bad.pt: incompatible checkpoint: key '.*' has shape"):
        build_generator("archisound", str(bad), GeneratorContext())
    with pytest.raises(CheckpointError, match="trained for generator 'archisound', not 'archisound-vocoder'"):
        build_generator("archisound-vocoder", str(ckpt), GeneratorContext(data))


def test_patch_transform_trains_and_samples(tmp_path):
    data = synthetic_dataset(n_clips=2, sample_rate=8000, duration_s=0.5, seed=1)
    ckpt = train_generator("archisound", data, tmp_path, TrainSettings(steps=1, every=1, batch_size=2),
                           overrides={**TINY, "transform": "patch"}, progress=False,
                           log=lambda *a: None).checkpoints[-1]
    gen = build_generator("archisound", str(ckpt), GeneratorContext())
    assert gen.config["transform"] == "patch"
    out = gen.generate(_request(prompts=PROMPTS[:1], samples_per_prompt=1))[0]
    assert out.waveform.shape == (1, 2400) and np.all(np.isfinite(out.waveform))
