"""`bench train-evaluator` and suites' [evaluators]: learning, determinism, resuming, caching, bad data."""
import hashlib
import json

import numpy as np
import pytest
import torch

from bench.training import evaluator as te
from bench.training.suite_runs import ensure_evaluators
from bench.cli import main
from bench.core.clipsets import load_directory
from bench.core.synthetic import synthetic_dataset
from bench.core.errors import ConfigError
from bench.suite import load_suite
from metrics.backbones import mel_inception as mi
from tests.conftest import write_clips

SPEC = te.TrainSpec(steps=6, batch_size=4, seed=3, val_fraction=0.25)


@pytest.fixture(scope="module")
def data():
    # Synthesis at 8 kHz, 0.5 s: the protocol pads to 10 s anyway, so the training cost is the same.
    return synthetic_dataset(n_clips=14, sample_rate=8000, duration_s=0.5, seed=2)


@pytest.fixture(scope="module")
def mels(data):
    return te.prepare_inputs(data, progress=False)


@pytest.fixture
def fast(monkeypatch, mels):
    """Reuse the log-mels computed once for this module (the protocol itself is tested elsewhere)."""
    monkeypatch.setattr(te, "prepare_inputs", lambda clipset, workers=2, progress=True: mels)


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _quiet(*args):
    pass


@pytest.fixture(scope="module")
def reference_run(data, mels, tmp_path_factory):
    """One uninterrupted run (checkpoints every 2 steps) that other tests compare against."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(te, "prepare_inputs", lambda clipset, workers=2, progress=True: mels)
        return te.train(data, tmp_path_factory.mktemp("run") / "a", SPEC, checkpoint_every=2, progress=False,
                        log=_quiet)


def test_writes_checkpoint_and_card(reference_run):
    card = json.loads((reference_run.checkpoint.parent / te.CARD_NAME).read_text())
    assert card["classes"] == sorted(te.class_labels(synthetic_dataset(14, 8000, 0.5, 2))[0])
    assert len(card["classes"]) == 7 and card["config"]["name"] == "tiny"
    t = card["training"]
    assert (t["steps"], t["seed"], t["batch_size"], t["n_train"], t["n_val"]) == (6, 3, 4, 7, 7)
    assert 0 <= t["val_accuracy"] <= 1 and t["fingerprint"] and t["data"]["fingerprint"]
    assert card["sha256"] == _sha(reference_run.checkpoint)
    assert not list((reference_run.checkpoint.parent / "checkpoints").glob("*.pt"))  # cleaned up at the end
    evaluator = mi.load_trained(reference_run.checkpoint)  # the real loader reads what training wrote
    assert evaluator.classes == card["classes"] and evaluator.std.shape == (80,)


def test_same_seed_same_bytes_other_seed_other_weights(reference_run, data, tmp_path, fast):
    again = te.train(data, tmp_path / "b", SPEC, checkpoint_every=100, progress=False, log=_quiet)
    assert _sha(again.checkpoint) == _sha(reference_run.checkpoint)
    other = te.train(data, tmp_path / "c", te.TrainSpec(steps=6, batch_size=4, seed=4, val_fraction=0.25),
                     progress=False, log=_quiet)
    a, b = (torch.load(r.checkpoint, weights_only=True) for r in (reference_run, other))
    assert not torch.equal(a["model.fc.weight"], b["model.fc.weight"])


def test_interrupted_run_resumes_to_the_same_bytes(reference_run, data, tmp_path, fast, monkeypatch):
    real_batch = te.epoch_batch

    def dies_at_step_5(step, *args):
        if step == 5:
            raise KeyboardInterrupt
        return real_batch(step, *args)

    monkeypatch.setattr(te, "epoch_batch", dies_at_step_5)
    with pytest.raises(KeyboardInterrupt):
        te.train(data, tmp_path / "r", SPEC, checkpoint_every=2, progress=False, log=_quiet)
    assert [p.name for p in (tmp_path / "r" / "checkpoints").glob("*.pt")] == ["step-000004.pt"]
    monkeypatch.setattr(te, "epoch_batch", real_batch)
    logs = []
    resumed = te.train(data, tmp_path / "r", SPEC, checkpoint_every=2, progress=False, log=logs.append)
    assert any("resuming" in line and "step 4" in line for line in logs)
    assert len(resumed.losses) == 2 and resumed.losses == reference_run.losses[4:]
    assert _sha(resumed.checkpoint) == _sha(reference_run.checkpoint)
    # Finished: a rerun reuses it; other settings in the same folder are refused.
    assert te.train(data, tmp_path / "r", SPEC, progress=False, log=_quiet).reused
    with pytest.raises(ConfigError, match="other settings"):
        te.train(data, tmp_path / "r", te.TrainSpec(steps=7, batch_size=4, seed=3), progress=False, log=_quiet)


def test_training_lowers_the_loss(data, tmp_path, fast):
    result = te.train(data, tmp_path / "l", te.TrainSpec(steps=14, batch_size=7, seed=0, val_fraction=0),
                      progress=False, log=_quiet)
    assert len(result.losses) == 14 and np.mean(result.losses[-3:]) < 0.6 * np.mean(result.losses[:3])
    assert result.card["training"]["val_accuracy"] is None  # no validation split asked for


def test_split_is_stratified_and_seeded():
    labels = np.repeat(np.arange(3), [5, 4, 2])
    train, val = te.split(labels, 0.2, seed=0)
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(11))
    assert [int((labels[val] == k).sum()) for k in range(3)] == [1, 1, 1]
    assert np.array_equal(val, te.split(labels, 0.2, seed=0)[1])
    assert not all(np.array_equal(val, te.split(labels, 0.2, seed=s)[1]) for s in range(1, 5))


def test_clips_without_labels_are_named(tmp_path):
    clips = {f"c{i}": (np.zeros((1, 800), np.float32) + 0.1, 8000) for i in range(3)}
    folder = load_directory(write_clips(tmp_path / "unlabelled", clips))
    with pytest.raises(ConfigError, match=r"3 of 3 clip\(s\) have no labels.*'c0'.*'labels' column"):
        te.class_labels(folder)
    manifest = tmp_path / "one-class.jsonl"
    manifest.write_text("".join(json.dumps({"id": f"c{i}", "path": f"unlabelled/c{i}.wav", "labels": ["dog"]}) + "\n"
                                for i in range(3)))
    with pytest.raises(ConfigError, match="at least 2 classes"):
        te.train(str(manifest), tmp_path / "out", SPEC, base_dir=tmp_path, progress=False, log=_quiet)


def test_cli_trains_and_parses_builtin_parameters(tmp_path, fast, capsys):
    out = tmp_path / "cli"
    args = ["train-evaluator", "--data", "builtin:synthetic?n_clips=14&sample_rate=8000&duration_s=0.5&seed=2",
            "--out", str(out), "--steps", "2", "--batch-size", "4", "--quiet"]
    assert main(args) == 0
    assert "validation accuracy" in capsys.readouterr().out
    card = json.loads((out / te.CARD_NAME).read_text())
    assert card["training"]["data"]["source"] == "builtin:synthetic?n_clips=14&sample_rate=8000&duration_s=0.5&seed=2"
    assert main(args[:-1] + ["--config", "huge", "--quiet"]) == 2


SUITE = """
name = "ev"
metrics = ["fid-mel@diffsound"]
[reference]
builtin = "synthetic"
n_clips = 4
[[generators]]
name = "noise"
[evaluators.mel-inception]
data = { builtin = "synthetic", n_clips = 14, sample_rate = 8000, duration_s = 0.5, seed = 2 }
steps = 2
batch_size = 4
"""


def test_suite_evaluators_train_once_then_come_from_the_cache(tmp_path, cache_dir, fast, monkeypatch):
    (tmp_path / "suite.toml").write_text(SUITE)
    suite = load_suite(tmp_path / "suite.toml")
    [(name, path)] = ensure_evaluators(suite.evaluators, suite.base_dir, cache_dir, progress=False, log=_quiet)
    assert name == "mel-inception" and path.startswith(str(cache_dir / "evaluators" / "mel-inception-tiny-"))
    monkeypatch.setattr(te, "prepare_inputs", lambda *a, **k: pytest.fail("trained again despite the cache"))
    again = ensure_evaluators(suite.evaluators, suite.base_dir, cache_dir, progress=False, log=_quiet)
    assert again == ((name, path),)


@pytest.mark.parametrize("table, message", [
    ('[evaluators.mel-inception]\ndata = "builtin:synthetic"\nstep = 3\n', "unknown key 'step'.*did you mean 'steps'"),
    ('[evaluators.vggish]\ndata = "builtin:synthetic"\n', "only mel-inception can be trained"),
    ('[evaluators.mel-inception]\nsteps = 3\n', "missing `data`"),
    ('[evaluators.mel-inception]\ndata = "builtin:synthetic"\nconfig = "huge"\n', "config 'huge' is unknown"),
])
def test_suite_evaluator_table_is_validated(tmp_path, table, message):
    base = SUITE.split("[evaluators")[0]
    (tmp_path / "suite.toml").write_text(base + table)
    with pytest.raises(ConfigError, match=message):
        load_suite(tmp_path / "suite.toml")


def test_quickstart_trains_an_evaluator_and_reports_mel_metrics():
    suite = load_suite(None)
    assert {"fid-mel@diffsound", "kl-mel@diffsound", "fad-vggish@audioldm"} <= set(suite.metrics)
    assert suite.weights.mode == "untrained"  # VGGish stays untrained and labelled so
    spec = suite.evaluators["mel-inception"]
    assert spec["config"] == "tiny" and spec["data"]["seed"] != suite.reference["seed"]  # not trained on the reference
    assert any(g.metric == "fid-mel@diffsound" and g.generator == "reference" for g in suite.gates)
