"""`bench score` writes the RunRecord of a `files` cell: leaderboards, compare, gates, MLflow and sync take it."""

import numpy as np

from bench.cli import main
from bench.core.audio import write_audio

RATE = 44100


def _clip(seed, noise=0.0):
    rng = np.random.default_rng(seed)
    t = np.arange(RATE) / RATE
    tone = 0.3 * np.sin(2 * np.pi * (200 + 100 * seed) * t)
    wave = np.stack([tone, tone]) + noise * np.random.default_rng(100 + seed).standard_normal((2, RATE))
    return (wave + 0.01 * rng.standard_normal((2, RATE))).astype(np.float32)


def _folders(tmp_path, ids=("a", "b", "c", "d")):
    for i, pid in enumerate(ids):
        write_audio(tmp_path / "ref" / f"{pid}.wav", _clip(i), RATE)
        for step, noise in ((100, 0.3), (2000, 0.05)):
            write_audio(tmp_path / "outputs" / f"step-{step}" / f"{pid}.wav", _clip(i, noise), RATE)


def test_score_records_make_a_leaderboard_and_reach_mlflow(tmp_path, cache_dir, monkeypatch, capsys):
    from bench.core.records import RunRecord
    from bench.runner import evaluate_gates
    from bench.suite import parse_gate
    from leaderboards.sources import load_records

    _folders(tmp_path)
    monkeypatch.chdir(tmp_path)
    common = ["--metric", "fad-vggish@audioldm", "--reference", "ref", "--weights", "untrained", "--bootstrap",
              "10", "--label", "my-model", "--quiet"]
    for step in (100, 2000):
        assert main(["score", "--generated", f"outputs/step-{step}", *common, "--experiment", "byo"]) == 0
    records = load_records(tmp_path / "bench-results" / "score")
    assert len(records) == 2 and all(isinstance(r, RunRecord) for r in records)
    by_step = {r.cell["checkpoint"].rsplit("/", 1)[-1]: r for r in records}
    assert set(by_step) == {"step-100", "step-2000"}
    assert by_step["step-100"].generation["output_sample_rates"] == [RATE]
    assert by_step["step-100"].generation["channels"] == [2]
    assert by_step["step-100"].metrics[0]["value"] > by_step["step-2000"].metrics[0]["value"]

    assert main(["leaderboard", "--records", "bench-results/score", "--layout", "checkpoints",
                 "--out", "board.md"]) == 0
    board = (tmp_path / "board.md").read_text()
    assert "## my-model" in board and board.index("step-100") < board.index("step-2000")

    gates = evaluate_gates([parse_gate({"check": "fad-vggish@audioldm <= 1e9", "label": "my-model"}, "test")],
                           records)
    assert len(gates) == 2 and all(g.passed for g in gates)

    paths = sorted((tmp_path / "bench-results" / "score" / "records").glob("*_step-*.json"))
    paths = [p for p in paths if not p.name.endswith(".tracking.json")]
    assert main(["compare", str(paths[0]), str(paths[1]), "--bootstrap", "50", "--quiet"]) == 0

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'bench-results' / 'score' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("byo").experiment_id])
    assert len(runs) == 2 and {r.data.params["label"] for r in runs} == {"my-model"}
    capsys.readouterr()
    assert main(["sync", "bench-results/score"]) == 0  # already logged: nothing pushed twice
    assert len(client.search_runs([client.get_experiment_by_name("byo").experiment_id])) == 2


def test_score_checks_pairing_and_weights_before_embedding(tmp_path, cache_dir, capsys):
    _folders(tmp_path, ids=("a", "b"))
    write_audio(tmp_path / "outputs" / "step-100" / "extra.wav", _clip(5), RATE)
    code = main(["score", "--metric", "kl-panns@audioldm", "--metric", "fad-vggish@audioldm", "--generated",
                 str(tmp_path / "outputs" / "step-100"), "--reference", str(tmp_path / "ref"), "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert "Cnn14_16k_mAP=0.438.pth" in err and "vggish-10086976.pth" in err  # every missing file
    assert "ids do not pair up" in err and "extra" in err
    assert not (cache_dir / "embeddings").exists()  # nothing was embedded
