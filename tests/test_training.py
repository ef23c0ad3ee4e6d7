"""`bench train` / generators.trainable: determinism, bit-identical resume, checkpoint errors, loss falls,
and suites that train a generator themselves ([training] + training:RUN/... checkpoints)."""
import json
from pathlib import Path

import pytest
import torch

from bench.core.synthetic import synthetic_dataset
from bench.core.errors import CheckpointError, ConfigError
from bench.training.generator import TrainingData, TrainSettings, train_generator
from bench.core.seeding import derived_generator
from generators.trainable import get_trainable, load_generator_checkpoint, load_model_state, read_checkpoint

# A very small archisound: the training machinery is generic, the model only has to be real and fast.
TINY = {"widths": [8, 16], "factors": [1, 2], "items": [1, 1], "attentions": [0, 1], "cross_attentions": [1, 1],
        "head_features": 8, "transform_width": 8, "emb_dim": 16, "text_dim": 16, "heads": 2, "duration_s": 0.25,
        "patch": 8}


@pytest.fixture(scope="module")
def data():
    return synthetic_dataset(n_clips=8, sample_rate=8000, duration_s=0.5, seed=3)


def _train(data, out, steps, seed=0, every=2, **kw):
    return train_generator("archisound", data, out, TrainSettings(steps=steps, seed=seed, every=every, batch_size=4,
                                                                   **kw),
                           overrides=TINY, progress=False, log=lambda *a: None)


def _states_equal(a: Path, b: Path) -> bool:
    sa, sb = read_checkpoint(a), read_checkpoint(b)
    flat = lambda s: {**{f"m.{k}": v for k, v in s["model"].items()},  # noqa: E731
                      **{f"o.{i}.{k}": v for i, st in s["optimizer"]["state"].items() for k, v in st.items()}}
    fa, fb = flat(sa), flat(sb)
    return fa.keys() == fb.keys() and all(torch.equal(fa[k], fb[k]) for k in fa) and sa["step"] == sb["step"]


def test_training_deterministic_and_resume_is_bit_identical(data, tmp_path):
    whole = _train(data, tmp_path / "a", steps=6)
    assert [p.name for p in whole.checkpoints] == ["step-000002.pt", "step-000004.pt", "step-000006.pt"]
    again = _train(data, tmp_path / "b", steps=6)
    assert _states_equal(whole.checkpoints[-1], again.checkpoints[-1])

    # interrupted after 4 steps (a stray logged step 5 past the last checkpoint), then resumed to 6
    first = _train(data, tmp_path / "c", steps=4)
    with open(tmp_path / "c" / "train_log.jsonl", "a") as f:
        f.write(json.dumps({"step": 5, "loss": 123.0}) + "\n")
    resumed = _train(data, tmp_path / "c", steps=6)
    assert first.losses and resumed.start_step == 4 and len(resumed.losses) == 2
    assert _states_equal(whole.checkpoints[-1], tmp_path / "c" / "step-000006.pt")
    assert (tmp_path / "a" / "train_log.jsonl").read_text() == (tmp_path / "c" / "train_log.jsonl").read_text()

    other_seed = _train(data, tmp_path / "d", steps=2, seed=1)
    assert not _states_equal(whole.checkpoints[0], other_seed.checkpoints[0])

    ckpt = read_checkpoint(whole.checkpoints[-1])
    assert ckpt["format"] == "bench-generator-checkpoint/1" and ckpt["generator"] == "archisound"
    assert ckpt["step"] == 6 and ckpt["config"]["widths"] == [8, 16] and len(ckpt["data_fingerprint"]) == 64

    # resuming with other settings is refused, naming the setting
    with pytest.raises(ConfigError, match="another batch_size"):
        train_generator("archisound", data, tmp_path / "c", TrainSettings(steps=8, batch_size=2), overrides=TINY,
                        progress=False, log=lambda *a: None)
    with pytest.raises(ConfigError, match=r"another config \(differs in emb_dim\)"):
        train_generator("archisound", data, tmp_path / "c", TrainSettings(steps=8, batch_size=4),
                        overrides={**TINY, "emb_dim": 8}, progress=False, log=lambda *a: None)


def test_checkpoint_errors_name_the_problem(data, tmp_path):
    path = _train(data, tmp_path / "run", steps=1, every=1).checkpoints[0]
    with pytest.raises(CheckpointError, match="trained for generator 'archisound', not 'archisound-vocoder'"):
        load_generator_checkpoint(path, "archisound-vocoder")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(path.read_bytes()[:500])
    with pytest.raises(CheckpointError, match=r"cannot read generator checkpoint .*corrupt.pt .*truncated, corrupt"):
        load_generator_checkpoint(corrupt, "archisound")
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="format None, expected 'bench-generator-checkpoint/1'"):
        load_generator_checkpoint(foreign, "archisound")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_generator_checkpoint(tmp_path / "missing.pt", "archisound")

    config, state, meta = load_generator_checkpoint(path, "archisound")
    assert meta["step"] == 1 and len(meta["sha256"]) == 64
    other = get_trainable("archisound").build({**config, "widths": [8, 24]}, 0)
    with pytest.raises(CheckpointError, match=r"key 'unet\.down\.1\.0\.res\.conv1\.weight' has shape \(16, 8, 3\) "
                                              r"in the checkpoint but \(24, 8, 3\)"):
        load_model_state(other, state, "ckpt")
    with pytest.raises(CheckpointError, match="unexpected key 'extra'"):
        load_model_state(get_trainable("archisound").build(config, 0), {**state, "extra": torch.zeros(1)}, "ckpt")


def test_loss_falls(tmp_path):
    data = synthetic_dataset(n_clips=14, sample_rate=8000, duration_s=0.5, seed=4)
    outcome = _train(data, tmp_path / "run", steps=30, every=30, lr=1e-2)
    trainable = get_trainable("archisound")
    dataset = TrainingData(data, outcome.config, progress=False)
    trained = trainable.build(outcome.config, 0)
    load_model_state(trained, read_checkpoint(outcome.checkpoints[-1])["model"], "ckpt")
    initial = trainable.build(outcome.config, 0)  # the same seeded init training started from

    def held_out_loss(model):  # fixed batches and noise, so the two models see identical inputs
        with torch.no_grad():
            return sum(float(trainable.training_loss(model, dataset.batch(k, 8, 99), derived_generator(7, "eval", k)))
                       for k in range(4)) / 4

    before, after = held_out_loss(initial), held_out_loss(trained)
    assert after < 0.85 * before, (before, after)  # measured: 0.507 -> 0.392


def test_settings_and_overrides_are_validated(data, tmp_path):
    with pytest.raises(ConfigError, match="steps must be an integer >= 1"):
        TrainSettings(steps=0)
    with pytest.raises(ConfigError, match="has no config key 'widht'"):
        train_generator("archisound", data, tmp_path, TrainSettings(steps=1), overrides={"widht": [4]},
                        progress=False, log=lambda *a: None)
    with pytest.raises(ConfigError, match="unknown trainable generator 'archisond'; did you mean 'archisound'"):
        train_generator("archisond", data, tmp_path, TrainSettings(steps=1), progress=False)
    with pytest.raises(ConfigError, match="unknown size 'huge'"):
        train_generator("archisound", data, tmp_path, TrainSettings(steps=1), size="huge", progress=False)


def test_cli_train_and_bad_config(tmp_path, capsys):
    from bench.cli import main

    overrides = [f"{k}={json.dumps(v)}" for k, v in TINY.items()]
    args = ["train", "archisound", "--data", "builtin:synthetic?n_clips=4&sample_rate=8000&duration_s=0.5",
            "--steps", "2", "--every", "1", "--batch-size", "2", "--out", str(tmp_path / "cli"), "--quiet",
            "--config", *overrides]
    assert main(args) == 0
    assert sorted(p.name for p in (tmp_path / "cli").iterdir()) == ["step-000001.pt", "step-000002.pt",
                                                                   "train_log.jsonl"]
    assert main(args[:-len(overrides)] + ["emb_dim=oops"]) == 2
    assert "expected a int like the default 64" in capsys.readouterr().err


SUITE = """
metrics = ["fad-vggish@audioldm"]
reference = "builtin:synthetic"
[training.tiny]
generator = "archisound"
data = {{ builtin = "synthetic", n_clips = 4, sample_rate = 8000, duration_s = 0.5, seed = 2 }}
steps = 3
every = 2
batch_size = 2
config = {config}
[[generators]]
name = "archisound"
checkpoints = "{pattern}"
"""


def _suite(tmp_path, pattern="training:tiny/step-*.pt"):
    from bench.suite import load_suite

    config = "{ " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in TINY.items()) + " }"
    (tmp_path / "s.toml").write_text(SUITE.format(config=config, pattern=pattern))
    return load_suite(tmp_path / "s.toml")


def test_suite_trains_once_and_resolves_checkpoints(tmp_path):
    from bench.training.suite_runs import ensure_generator_training, resolve_trained_cells

    suite = _suite(tmp_path)
    assert [c.checkpoint for c in suite.cells] == ["training:tiny/step-000002.pt", "training:tiny/step-000003.pt"]
    ids = [c.id for c in suite.cells]
    logs = []
    resolved = ensure_generator_training(suite.training, suite.base_dir, tmp_path / "cache", False, logs.append)
    cells = resolve_trained_cells(suite, resolved).cells
    assert [c.id for c in cells] == ids and all(Path(c.checkpoint).is_file() for c in cells)
    assert cells[0].params()["checkpoint"] == "training:tiny/step-000002.pt"
    assert Path(cells[0].checkpoint).parent.parent == tmp_path / "cache" / "generators"
    logs.clear()
    assert ensure_generator_training(suite.training, suite.base_dir, tmp_path / "cache", False, logs.append) == resolved
    assert any("nothing to train" in line for line in logs)

    assert [c.checkpoint for c in _suite(tmp_path, "training:tiny/step-000003.pt").cells] == \
        ["training:tiny/step-000003.pt"]
    with pytest.raises(ConfigError, match=r"names training run 'other'.*no \[training.other\]"):
        _suite(tmp_path, "training:other/step-*.pt")
    with pytest.raises(ConfigError, match="matches none of step-000002.pt, step-000003.pt"):
        _suite(tmp_path, "training:tiny/step-9*.pt")
