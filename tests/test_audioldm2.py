"""audioldm2: a tiny pipeline saved into a test-filled HF cache under a real repo id, loaded the user's way."""
import json

import numpy as np
import pytest

from bench.core.errors import CheckpointError, ConfigError
from generators.base import GenerationRequest, GeneratorContext, Prompt, build_generator
from tests.generator_helpers import by_key, one_thread  # noqa: F401 (one_thread: autouse fixture)

PROMPTS = (Prompt("a", "a dog barks", 0), Prompt("b", "rain falls on the water", 1), Prompt("c", "music", 2))
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _request(prompts=PROMPTS, **kw):
    args = dict(prompts=prompts, seed=0, duration_s=0.32, sample_rate=16000, steps=2, guidance=2.5)
    return GenerationRequest(**{**args, **kw})


def _differs(a, b):
    return np.abs(a - b).max() > 1e-3 * np.abs(a).max()


@pytest.fixture(scope="module")
def hf_home(tmp_path_factory):
    """An HF cache holding a tiny AudioLDM2Pipeline as cvssp/audioldm2 (hub layout: refs + snapshots)."""
    from generators.audioldm2_tiny import build_tiny_pipeline

    home = tmp_path_factory.mktemp("hf_home")
    repo = home / "hub" / "models--cvssp--audioldm2"
    build_tiny_pipeline(seed=3).save_pretrained(repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    return home


@pytest.fixture(scope="module")
def cached_generator(hf_home):
    mp = pytest.MonkeyPatch()
    mp.setenv("HF_HOME", str(hf_home))
    mp.setenv("HF_HUB_OFFLINE", "1")
    try:
        yield build_generator("audioldm2", "cvssp/audioldm2", GeneratorContext())
    finally:
        mp.undo()


def test_loads_repo_id_from_hf_cache_and_generates(cached_generator):
    gen = cached_generator
    assert gen.version == f"diffusers-{COMMIT}" and not gen.untrained
    out = gen.generate(_request(prompts=PROMPTS[:1], sample_rate=22050))
    meta = out[0].metadata
    assert out[0].waveform.shape == (1, round(0.32 * 22050)) and out[0].waveform.dtype == np.float32
    assert np.isfinite(out[0].waveform).all() and np.abs(out[0].waveform).max() > 0
    assert meta["native_sample_rate"] == 16000 and meta["resampler"] == "soxr-vhq"
    assert meta["checkpoint_source"] == "hf cache" and meta["steps"] == 2 and meta["guidance"] == 2.5
    assert meta["clap_rerank"] is None and len(meta["checkpoint_sha256"]) == 64


def test_batch_order_invariance_and_no_global_rng(cached_generator):
    import torch

    torch.manual_seed(1)
    whole = by_key(cached_generator.generate(_request(samples_per_prompt=2)))
    torch.manual_seed(2)
    single = by_key(cached_generator.generate(_request(prompts=(PROMPTS[1],), samples_per_prompt=2)))
    for k in single:
        np.testing.assert_array_equal(whole[k], single[k])
    assert not np.array_equal(whole[("b", 0)], whole[("b", 1)])


def test_steps_and_guidance_change_output(cached_generator):
    base = by_key(cached_generator.generate(_request(prompts=PROMPTS[:1])))[("a", 0)]
    more = by_key(cached_generator.generate(_request(prompts=PROMPTS[:1], steps=3)))[("a", 0)]
    cfg = by_key(cached_generator.generate(_request(prompts=PROMPTS[:1], guidance=1.0)))[("a", 0)]
    assert _differs(base, more) and _differs(base, cfg)


def test_rerank_only_when_asked_and_recorded(cached_generator):
    req = _request(prompts=PROMPTS[:1], options={"rerank_candidates": 3})
    np.random.seed(0)
    first = cached_generator.generate(req)[0]
    np.random.seed(1)  # CLAP's numpy draws are seeded from the sample, not taken from the global state
    again = cached_generator.generate(req)[0]
    np.testing.assert_array_equal(first.waveform, again.waveform)
    assert first.metadata["clap_rerank"]["candidates"] == 3


def test_missing_repo_names_fetch_command(hf_home, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(hf_home))
    with pytest.raises(CheckpointError, match=r"cvssp/audioldm2-music.*not in the local HF cache.*hf download"):
        build_generator("audioldm2", "hf://cvssp/audioldm2-music", GeneratorContext())


def test_local_folder_and_wrong_pipeline(hf_home, tmp_path):
    snapshot = hf_home / "hub" / "models--cvssp--audioldm2" / "snapshots" / COMMIT
    gen = build_generator("audioldm2", str(snapshot), GeneratorContext())
    assert gen.provenance["source"] == "local folder"
    bad = tmp_path / "ldm1"
    bad.mkdir()
    (bad / "model_index.json").write_text(json.dumps({"_class_name": "AudioLDMPipeline"}))
    with pytest.raises(CheckpointError, match="names pipeline 'AudioLDMPipeline'"):
        build_generator("audioldm2", str(bad), GeneratorContext())
    with pytest.raises(CheckpointError, match="no model_index.json"):
        build_generator("audioldm2", str(tmp_path), GeneratorContext())


def test_untrained_without_checkpoint_and_bad_input(cached_generator):
    gen = build_generator("audioldm2", None, GeneratorContext())
    assert gen.untrained and "untrained" in gen.version
    assert gen.generate(_request(prompts=PROMPTS[:1]))[0].metadata["untrained"] is True
    with pytest.raises(ConfigError, match="empty text"):
        gen.generate(_request(prompts=(Prompt("x", "  ", 0),)))
    with pytest.raises(ConfigError, match="unknown option"):
        gen.generate(_request(options={"num_waveforms_per_prompt": 4}))
    with pytest.raises(ConfigError, match="eta"):
        gen.generate(_request(options={"eta": 2.0}))
    with pytest.raises(ConfigError, match="steps"):
        _request(steps=0)


def test_a_vocoder_at_another_rate_is_taken_at_that_rate(hf_home, tmp_path):
    """A fine-tune whose vocoder runs at 24 kHz: generated natively at 24 kHz, recorded as such."""
    import shutil

    snapshot = hf_home / "hub" / "models--cvssp--audioldm2" / "snapshots" / COMMIT
    folder = tmp_path / "audioldm2-24k"
    shutil.copytree(snapshot, folder)
    config_path = folder / "vocoder" / "config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "sampling_rate": 24000}))
    gen = build_generator("audioldm2", str(folder), GeneratorContext())
    assert gen.native_sample_rates == (24000,)
    out = gen.generate(_request(prompts=PROMPTS[:1], sample_rate=24000))[0]
    assert out.waveform.shape == (1, round(0.32 * 24000)) and np.isfinite(out.waveform).all()
    meta = out.metadata
    assert (meta["native_sample_rate"], meta["vocoder_sample_rate"], meta["resampler"]) == (24000, 24000, None)
    assert gen.generate(_request(prompts=PROMPTS[:1]))[0].metadata["resampler"] == "soxr-vhq"  # 16 kHz asked
    config_path.write_text(json.dumps({**config, "sampling_rate": 0}))
    with pytest.raises(CheckpointError, match="sampling_rate is 0, not a positive integer"):
        build_generator("audioldm2", str(folder), GeneratorContext())
