"""srcgaudio: the sampling rate as a generation condition (16/24/32/48 kHz), CFG, the contract, suites."""
import numpy as np
import pytest
import torch

from bench.core.synthetic import synthetic_dataset
from bench.core.errors import ConfigError
from generators.base import GenerationRequest, GeneratorContext, Prompt, build_generator
from generators.srcgaudio import MEL_CONFIGS
from tests.generator_helpers import one_thread  # noqa: F401 (autouse fixture)

PROMPTS = (Prompt("a", "a dog barks", 0), Prompt("b", "rain on a roof", 1))
RATES = (16000, 24000, 32000, 48000)


@pytest.fixture(scope="module")
def gen(tmp_path_factory):
    from bench.training.generator import TrainSettings, train_generator

    out = tmp_path_factory.mktemp("srcgaudio")
    data = synthetic_dataset(4, 48000, 1.0, seed=0)
    result = train_generator("srcgaudio", data, out, TrainSettings(steps=2, every=2, batch_size=2), progress=False,
                             log=lambda *a: None)
    return build_generator("srcgaudio", str(result.checkpoints[-1]), GeneratorContext())


def _request(prompts=PROMPTS, **kw):
    args = dict(prompts=prompts, seed=0, duration_s=0.5, sample_rate=16000, steps=4, guidance=3.0)
    return GenerationRequest(**{**args, **kw})


def test_paper_mel_configs_share_one_frame_rate():
    assert MEL_CONFIGS[24000] == (2048, 240, 64) and MEL_CONFIGS[48000] == (2048, 480, 64)
    assert {rate // hop for rate, (_, hop, _) in MEL_CONFIGS.items()} == {100}


def test_every_rate_is_a_native_condition(gen):
    assert gen.native_sample_rates == RATES and not gen.info["untrained"]
    waves = {}
    for rate in RATES:
        out = gen.generate(_request(prompts=PROMPTS[:1], sample_rate=rate))[0]
        meta = out.metadata
        assert out.sample_rate == rate and out.waveform.shape == (1, rate // 2) and out.waveform.dtype == np.float32
        assert meta["rate_condition"] == rate and meta["resampler"] is None and meta["native_sample_rate"] == rate
        assert meta["mel_config"]["hop"] == MEL_CONFIGS[rate][1] and meta["vocoder"].startswith("learned")
        waves[rate] = out.waveform
    assert len({w.shape[1] for w in waves.values()}) == 4


def test_rate_token_changes_the_denoiser_and_cfg_keeps_the_rate(gen):
    m = gen.model
    z = torch.randn(1, 4, 16, 13, generator=torch.Generator().manual_seed(0))
    text, pad = m.encode_text(["a dog barks"])
    with torch.no_grad():
        e16, e48 = (m.denoiser(z, torch.tensor([500]), torch.tensor([i]), text, pad) for i in (0, 3))
    assert (e16 - e48).abs().max() > 0
    g1 = gen.generate(_request(prompts=PROMPTS[:1], guidance=1.0))[0].waveform
    g3 = gen.generate(_request(prompts=PROMPTS[:1], guidance=3.0))[0].waveform
    assert np.abs(g1 - g3).max() > 0


def test_batch_invariance_and_steps(gen):
    whole = {(o.prompt_id, o.sample_index): o.waveform for o in gen.generate(_request(samples_per_prompt=2))}
    for o in gen.generate(_request(prompts=PROMPTS[1:], samples_per_prompt=2)):
        np.testing.assert_array_equal(o.waveform, whole[(o.prompt_id, o.sample_index)])
    other = gen.generate(_request(prompts=PROMPTS[:1], steps=6))[0]
    assert other.metadata["steps"] == 6 and np.abs(other.waveform - whole[("a", 0)]).max() > 0


def test_bad_input_and_untrained(gen):
    with pytest.raises(ConfigError, match="sample_rate 22050 Hz is not one this model was trained"):
        gen.generate(_request(sample_rate=22050))
    with pytest.raises(ConfigError, match="empty text"):
        gen.generate(_request(prompts=(Prompt("x", " ", 0),)))
    with pytest.raises(ConfigError, match="exceeds"):
        gen.generate(_request(steps=5000))
    with pytest.raises(ConfigError, match="unknown option"):
        gen.generate(_request(options={"time_stride": 2}))
    untrained = build_generator("srcgaudio", None, GeneratorContext())
    assert untrained.info["untrained"] and untrained.version.startswith("untrained")


def test_rate_sweep_suite_has_one_cell_per_rate(tmp_path):
    from bench.suite import load_suite

    path = tmp_path / "rates.toml"
    path.write_text('name = "src-rates"\nmetrics = ["fad-vggish@audioldm"]\n'
                    '[reference]\nbuiltin = "synthetic"\nn_clips = 4\n'
                    '[generation]\nsample_rates = [16000, 24000, 32000, 48000]\nsteps = [50]\n'
                    '[[generators]]\nname = "srcgaudio"\n')
    suite = load_suite(path)
    assert sorted(c.sample_rate for c in suite.cells) == list(RATES)
    assert len({c.id for c in suite.cells}) == 4


def test_rate_sweep_runs_and_renders_table_one(gen, tmp_path, cache_dir):
    """SRC-gAudio's Table I: one trained model, one cell per generation rate, metrics per rate."""
    from bench.cli import main
    from leaderboards import markdown
    from leaderboards.sources import load_records
    from leaderboards.table import build_table

    suite = tmp_path / "rates.toml"
    suite.write_text(f'name = "src-rates"\nmetrics = ["fad-vggish@audioldm"]\n'
                     '[reference]\nbuiltin = "synthetic"\nn_clips = 3\nsample_rate = 48000\nduration_s = 1.0\n'
                     '[generation]\nsample_rates = [16000, 24000, 32000, 48000]\nsteps = [2]\nguidance = [2.0]\n'
                     f'[[generators]]\nname = "srcgaudio"\ncheckpoints = "{gen.info["checkpoint"]}"\n'
                     '[weights]\nmode = "untrained"\n[scoring]\nbootstrap = 10\n')
    assert main(["run", str(suite), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    records = load_records(tmp_path / "out")
    assert sorted(r.cell["sample_rate"] for r in records) == list(RATES)
    for r in records:  # generated at the rate itself, not resampled to it
        assert r.generation["native_sample_rates"] == [r.cell["sample_rate"]]
    table = markdown.render_table(build_table(records, layout="rates", metrics=["fad-vggish@audioldm"]))
    assert "## srcgaudio" in table and "| sample_rate | fad-vggish@audioldm[untrained] ↓ |" in table
    rows = [line.split("|")[1].strip() for line in table.splitlines() if line[:3] in ("| 1", "| 2", "| 3", "| 4")]
    assert rows == [str(rate) for rate in RATES]  # one row per rate


def test_pretrain_at_16k_then_fine_tune_on_all_rates(tmp_path):
    """Section II-C: a fixed-rate pre-train, then `--init-from` it with the rate set extended (new rate
    embedding rows, new vocoders); the trained rate keeps its weights; the record says where it started."""
    from bench.training.generator import TrainSettings, train_generator
    from generators.trainable import read_checkpoint

    quiet = dict(progress=False, log=lambda *a: None)
    small = {"dim": 32, "vae_channels": 16, "vocoder_width": 16, "text_dim": 32, "duration_s": 0.5}
    pre = train_generator("srcgaudio", synthetic_dataset(2, 16000, 0.5, seed=0), tmp_path / "pre",
                          TrainSettings(steps=1, every=1, batch_size=2),
                          overrides={**small, "rates": [16000], "sample_rate": 16000}, **quiet).checkpoints[-1]
    data = synthetic_dataset(2, 48000, 0.5, seed=1)
    ft = train_generator("srcgaudio", data, tmp_path / "ft", TrainSettings(steps=1, every=1, batch_size=2),
                         overrides=small, init_from=pre, **quiet)
    before, after = read_checkpoint(pre), read_checkpoint(ft.checkpoints[-1])
    init = after["training"]["init_from"]
    assert init["step"] == 1 and init["changed"]["rates"] == [[16000], list(RATES)]
    # warm start, before any fine-tuning step: the 16 kHz row and vocoder are the pre-trained ones
    from bench.training.generator import warm_start
    from generators.srcgaudio import SRCgAudioTrainable

    trainable = SRCgAudioTrainable()
    model = trainable.build(ft.config, seed=5)
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    warm_start("srcgaudio", trainable, model, ft.config, pre)
    state = model.state_dict()
    assert torch.equal(state["denoiser.rate.weight"][0], before["model"]["denoiser.rate.weight"][0])
    assert torch.equal(state["denoiser.rate.weight"][1:], fresh["denoiser.rate.weight"][1:])
    assert all(torch.equal(state[k], before["model"][k]) for k in before["model"] if k.startswith("vocoders.16000."))
    assert all(torch.equal(state[k], fresh[k]) for k in state if k.startswith("vocoders.48000."))
    assert all(torch.equal(state[k], before["model"][k]) for k in before["model"] if k.startswith("vae."))
    gen = build_generator("srcgaudio", str(ft.checkpoints[-1]), GeneratorContext())
    out = gen.generate(_request(prompts=PROMPTS[:1], sample_rate=48000, duration_s=0.3))[0]
    assert gen.native_sample_rates == RATES and np.isfinite(out.waveform).all()

    with pytest.raises(ConfigError, match=r"config key 'dim' is 32 there and 64 now; a fine-tune .* may change"):
        train_generator("srcgaudio", data, tmp_path / "bad", TrainSettings(steps=1), init_from=pre,
                        overrides={**small, "dim": 64}, **quiet)
    with pytest.raises(ConfigError, match=r"rates \[16000\] of the pre-trained model are missing"):
        train_generator("srcgaudio", data, tmp_path / "bad", TrainSettings(steps=1), init_from=pre,
                        overrides={**small, "rates": [48000]}, **quiet)
    with pytest.raises(ConfigError, match="trained with another init_from"):  # resuming ft from another start
        train_generator("srcgaudio", data, tmp_path / "ft", TrainSettings(steps=2, every=1, batch_size=2),
                        overrides=small, **quiet)
