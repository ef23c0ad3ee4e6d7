"""`diffusers` and `musicgen`: tiny pipelines saved under real repo ids in a test-filled HF cache."""
import json

import numpy as np
import pytest

from bench.core.errors import CheckpointError
from generators.base import GenerationRequest, GeneratorContext, Prompt, build_generator
from tests.generator_helpers import one_thread  # noqa: F401 (autouse fixture)
from tests.pipeline_helpers import save_in_hf_cache, tiny_audioldm, tiny_musicgen

PROMPTS = (Prompt("a", "a dog barks", 0), Prompt("b", "rain falls on the water", 1))


def _request(prompts=PROMPTS, **kw):
    return GenerationRequest(**{**dict(prompts=prompts, seed=0, duration_s=0.32, sample_rate=16000), **kw})


@pytest.fixture(scope="module")
def hf_home(tmp_path_factory):
    from generators.audioldm2_tiny import build_tiny_pipeline

    home = tmp_path_factory.mktemp("hf_home")
    save_in_hf_cache(home, "cvssp/audioldm-s-full-v2", tiny_audioldm(seed=1).save_pretrained)
    save_in_hf_cache(home, "cvssp/audioldm2", build_tiny_pipeline(seed=2).save_pretrained)
    model, processor = tiny_musicgen(seed=3)
    save_in_hf_cache(home, "facebook/musicgen-small",
                     lambda folder: (model.save_pretrained(folder), processor.save_pretrained(folder)))

    def not_audio(folder):
        folder.mkdir(parents=True)
        (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))

    save_in_hf_cache(home, "someone/image-model", not_audio)
    return home


@pytest.fixture
def hf_cache(hf_home, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return hf_home


def test_diffusers_audioldm_from_the_hf_cache(hf_cache):
    gen = build_generator("diffusers", "hf://cvssp/audioldm-s-full-v2", GeneratorContext())
    both = gen.generate(_request(steps=2, guidance=2.5, options={"negative_prompt": "low quality"}))
    meta = both[0].metadata
    assert meta["pipeline"] == "AudioLDMPipeline" and meta["native_sample_rate"] == 16000
    assert meta["checkpoint_source"] == "hf cache" and meta["steps"] == 2 and meta["negative_prompt"] == "low quality"
    assert both[0].waveform.shape == (1, 5120) and np.abs(both[0].waveform).max() > 0
    alone = gen.generate(_request(prompts=PROMPTS[1:], steps=2, guidance=2.5,
                                  options={"negative_prompt": "low quality"}))
    np.testing.assert_array_equal(alone[0].waveform, both[1].waveform)  # batch invariant
    other = gen.generate(_request(prompts=PROMPTS[1:], seed=1, steps=2, guidance=2.5))
    assert np.abs(other[0].waveform - alone[0].waveform).max() > 0
    default = gen.generate(_request(prompts=PROMPTS[:1], sample_rate=22050))[0]
    assert default.metadata["steps"] == 10 and default.metadata["guidance"] == 2.5  # the pipeline's defaults
    assert default.waveform.shape == (1, round(0.32 * 22050)) and default.metadata["resampler"] == "soxr-vhq"


def test_diffusers_runs_audioldm2_like_the_audioldm2_generator(hf_cache):
    request = _request(prompts=PROMPTS[:1], steps=2, guidance=2.5)
    via_diffusers = build_generator("diffusers", "hf://cvssp/audioldm2", GeneratorContext()).generate(request)[0]
    via_own = build_generator("audioldm2", "hf://cvssp/audioldm2", GeneratorContext()).generate(request)[0]
    assert via_diffusers.metadata["pipeline"] == "AudioLDM2Pipeline"
    np.testing.assert_allclose(via_diffusers.waveform, via_own.waveform, atol=1e-6)


def test_diffusers_refuses_other_pipelines_and_missing_repos(hf_cache):
    with pytest.raises(CheckpointError, match="StableDiffusionPipeline.*supported: AudioLDMPipeline"):
        build_generator("diffusers", "hf://someone/image-model", GeneratorContext())
    with pytest.raises(CheckpointError, match="not in the local HF cache.*hf download stabilityai/stable-audio"):
        build_generator("diffusers", "hf://stabilityai/stable-audio-open-1.0", GeneratorContext())


def test_musicgen_from_the_hf_cache(hf_cache):
    gen = build_generator("musicgen", "hf://facebook/musicgen-small", GeneratorContext())
    request = _request(duration_s=0.05, guidance=3.0)
    both = gen.generate(request)
    assert both[0].waveform.shape == (1, 800) and both[0].metadata["native_sample_rate"] == 16000
    assert both[0].metadata["max_new_tokens"] == 50 + gen.model.decoder.num_codebooks - 1  # + the codebook delay
    assert both[0].metadata["steps"] is None
    alone = gen.generate(_request(prompts=PROMPTS[1:], duration_s=0.05, guidance=3.0))
    np.testing.assert_array_equal(alone[0].waveform, both[1].waveform)  # batch invariant
    again = gen.generate(request)
    np.testing.assert_array_equal(again[0].waveform, both[0].waveform)  # seeded, not the global RNG's state
    other = gen.generate(_request(prompts=PROMPTS[1:], duration_s=0.05, guidance=3.0, seed=7))
    assert np.abs(other[0].waveform - alone[0].waveform).max() > 0
