"""The Generator contract on the baselines: batch invariance, seeding, refusals, oracle, rates."""
import numpy as np
import pytest

from bench.core.synthetic import synthetic_dataset
from bench.core.errors import ConfigError
from generators.base import GenerationRequest, GeneratorContext, Prompt, build_generator, sample_seed

PROMPTS = tuple(Prompt(f"p{i}", f"prompt {i}", i) for i in range(5))


def _request(prompts=PROMPTS, **kw):
    args = dict(prompts=prompts, seed=0, duration_s=0.5, sample_rate=16000, samples_per_prompt=2)
    return GenerationRequest(**{**args, **kw})


def _by_key(outputs):
    return {(o.prompt_id, o.sample_index): o.waveform for o in outputs}


def test_noise_is_batch_and_order_invariant():
    gen = build_generator("noise", None, GeneratorContext())
    whole = _by_key(gen.generate(_request()))
    one_by_one = {}
    for p in reversed(PROMPTS):
        one_by_one.update(_by_key(gen.generate(_request(prompts=(p,)))))
    assert whole.keys() == one_by_one.keys()
    for k in whole:
        np.testing.assert_array_equal(whole[k], one_by_one[k])


def test_noise_depends_on_seed_prompt_and_sample():
    gen = build_generator("noise", None, GeneratorContext())
    a = _by_key(gen.generate(_request()))
    b = _by_key(gen.generate(_request(seed=1)))
    assert not np.array_equal(a[("p0", 0)], b[("p0", 0)])
    assert not np.array_equal(a[("p0", 0)], a[("p0", 1)])
    assert not np.array_equal(a[("p0", 0)], a[("p1", 0)])
    assert a[("p0", 0)].shape == (1, 8000) and a[("p0", 0)].dtype == np.float32


def test_no_hidden_global_rng():
    import torch
    gen = build_generator("noise", None, GeneratorContext())
    torch.manual_seed(123)
    a = _by_key(gen.generate(_request()))
    torch.manual_seed(999)
    np.random.seed(5)
    b = _by_key(gen.generate(_request()))
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_sample_seed_is_distinct_per_triple():
    seeds = {sample_seed(s, p, k) for s in range(3) for p in range(3) for k in range(3)}
    assert len(seeds) == 27


def test_baselines_refuse_steps_and_guidance():
    gen = build_generator("silence", None, GeneratorContext())
    with pytest.raises(ConfigError, match="no sampling steps"):
        gen.generate(_request(steps=10))
    with pytest.raises(ConfigError, match="no guidance"):
        gen.generate(_request(guidance=3.0))


@pytest.mark.parametrize("kw, match", [
    (dict(prompts=()), "empty prompt list"), (dict(duration_s=0), "duration_s"),
    (dict(duration_s=-1.0), "duration_s"), (dict(steps=0), "steps"), (dict(sample_rate=0), "sample_rate"),
    (dict(samples_per_prompt=0), "samples_per_prompt")])
def test_bad_requests(kw, match):
    with pytest.raises(ConfigError, match=match):
        _request(**kw)


def test_unknown_generator_suggests_closest():
    with pytest.raises(ConfigError, match="did you mean 'noise'"):
        build_generator("noize", None, GeneratorContext())


def test_baselines_take_no_checkpoint():
    with pytest.raises(ConfigError, match="takes no checkpoint"):
        build_generator("noise", "model.pt", GeneratorContext())


def test_reference_oracle_returns_the_clip_and_records_resampling():
    ref = synthetic_dataset(n_clips=3, sample_rate=16000, duration_s=1.0, seed=0)
    gen = build_generator("reference", None, GeneratorContext(ref, "soxr-vhq"))
    prompts = tuple(Prompt(c.id, c.caption, i) for i, c in enumerate(ref.clips))
    same = gen.generate(_request(prompts=prompts, samples_per_prompt=1))
    wave, _ = ref.load(ref.clips[1])
    np.testing.assert_array_equal(same[1].waveform, wave)
    assert same[1].metadata["resampler"] is None
    up = gen.generate(_request(prompts=prompts, samples_per_prompt=1, sample_rate=32000))
    assert up[0].waveform.shape[1] == 32000 and up[0].metadata["resampler"] == "soxr-vhq"
    assert up[0].metadata["native_sample_rate"] == 16000


def test_resampler_none_passes_native_rates_and_refuses_others():
    ref = synthetic_dataset(n_clips=2, sample_rate=16000, duration_s=1.0, seed=0)
    prompts = tuple(Prompt(c.id, c.caption, i) for i, c in enumerate(ref.clips))
    for name in ("reference", "noise"):
        gen = build_generator(name, None, GeneratorContext(ref, "none"))
        native = gen.generate(_request(prompts=prompts, samples_per_prompt=1, sample_rate=16000))
        assert native[0].metadata["resampler"] is None
    gen = build_generator("reference", None, GeneratorContext(ref, "none"))
    with pytest.raises(ConfigError, match="16000 Hz audio .* 32000 Hz .* resampler = 'none' refuses"):
        gen.generate(_request(prompts=prompts, samples_per_prompt=1, sample_rate=32000))


def test_reference_oracle_unknown_prompt_id():
    ref = synthetic_dataset(n_clips=2, sample_rate=16000, duration_s=1.0, seed=0)
    gen = build_generator("reference", None, GeneratorContext(ref))
    with pytest.raises(ConfigError, match="not in the reference set.*nope"):
        gen.generate(_request(prompts=(Prompt("nope", "x", 0),)))
