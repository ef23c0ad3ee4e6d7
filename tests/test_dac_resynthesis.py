"""dac-resynthesis and the DAC checkpoint path (a DAC-format checkpoint the test writes into a temp cache)."""
import numpy as np
import pytest
import torch

from bench.core import weights
from bench.core.synthetic import synthetic_dataset
from bench.core.errors import CheckpointError, ConfigError
from generators.base import GenerationRequest, GeneratorContext, Prompt, build_generator
from generators.dac_codec import DAC_44KHZ, TINY_CONFIG, load_codec, random_codec
from tests.dac_release_reference import random_release_codec, write_release_checkpoint
from tests.generator_helpers import one_thread  # noqa: F401 (autouse fixture)

PROMPTS = (Prompt("synthetic-0000", "a pure sine tone", 0), Prompt("synthetic-0001", "a noise burst", 1))


@pytest.fixture(scope="module")
def reference():
    return synthetic_dataset(n_clips=2, sample_rate=44100, duration_s=0.2, seed=0)


def _request(**kw):
    return GenerationRequest(PROMPTS, **{**dict(seed=0, duration_s=0.2, sample_rate=44100), **kw})


def test_resynthesis_with_n_codebooks(reference):
    gen = build_generator("dac-resynthesis", "untrained-tiny", GeneratorContext(reference))
    full = gen.generate(_request(samples_per_prompt=2))
    assert full[0].metadata["n_codebooks"] == 9 and full[0].metadata["untrained"]
    assert "untrained" in gen.version
    np.testing.assert_array_equal(full[0].waveform, full[1].waveform)  # deterministic, no randomness
    clip, _ = reference.load(reference.by_id()["synthetic-0000"])
    codec = random_codec(TINY_CONFIG, 0)
    expected = codec.resynthesize(torch.from_numpy(clip)[None], 9)[0].numpy()
    np.testing.assert_array_equal(full[0].waveform, expected)
    coarse = gen.generate(_request(options={"n_codebooks": 1}))[0]
    assert coarse.metadata["n_codebooks"] == 1 and coarse.waveform.shape == full[0].waveform.shape
    assert not np.array_equal(coarse.waveform, full[0].waveform)
    with pytest.raises(ConfigError, match="n_codebooks must be an integer from 1 to 9, got 10"):
        gen.generate(_request(options={"n_codebooks": 10}))
    with pytest.raises(ConfigError, match="unknown options"):
        gen.generate(_request(options={"bitrate": 8}))
    with pytest.raises(ConfigError, match="has no sampling steps"):
        gen.generate(_request(steps=4))
    with pytest.raises(ConfigError, match="'dac-resynthesis' needs reference audio"):
        build_generator("dac-resynthesis", "untrained-tiny", GeneratorContext())


def test_release_weights_load_from_the_cache(tmp_path, monkeypatch, reference):
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv(weights.OFFLINE_ENV, "1")
    with pytest.raises(CheckpointError, match=r"dac_weights_44khz_8kbps_0.0.1.pth.*releases/download/0.0.1/"
                                              r"weights.pth.*" + str(tmp_path / "weights")):
        build_generator("dac-resynthesis", None, GeneratorContext(reference))

    source = random_release_codec(TINY_CONFIG, seed=7)  # stands in for the release: same layout, small
    target = weights.weights_dir(tmp_path) / DAC_44KHZ.filename
    write_release_checkpoint(target, source)
    gen = build_generator("dac-resynthesis", None, GeneratorContext(reference))
    out = gen.generate(_request())[0]
    assert out.metadata["checkpoint"]["sha256"] == weights.sha256_file(target)
    assert out.metadata["checkpoint"]["source"] == "cache" and not out.metadata["untrained"]
    clip, _ = reference.load(reference.by_id()["synthetic-0000"])
    # DacModel with the release weights folded in: the release architecture's output to float rounding
    np.testing.assert_allclose(out.waveform, source.resynthesize(torch.from_numpy(clip)[None])[0].numpy(),
                               atol=1e-5)

    # a mismatching state dict names the key; pickled code is refused by weights_only loading
    bad = random_release_codec({**TINY_CONFIG, "codebook_size": 32}, seed=0)
    write_release_checkpoint(tmp_path / "bad.pth", bad)
    payload = torch.load(tmp_path / "bad.pth", weights_only=True)
    payload["metadata"]["kwargs"]["codebook_size"] = 64
    torch.save(payload, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match=r"bad.pth.*'quantizer.quantizers.0.codebook.weight' has shape"):
        load_codec(str(tmp_path / "bad.pth"))
    torch.save({"state_dict": {}, "metadata": {"kwargs": {}, "obj": ConfigError("x")}}, tmp_path / "code.pth")
    with pytest.raises(CheckpointError, match="code.pth: it pickles .*tensors-only loading refuses"):
        load_codec(str(tmp_path / "code.pth"))
    with pytest.raises(CheckpointError, match="not a file, and not one of"):
        load_codec(str(tmp_path / "missing.pth"))
