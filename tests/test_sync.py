"""A tracking store that cannot take results at logging time: records stay on disk, marked unsynced,
and `bench sync` pushes them later exactly once (no duplicate MLflow runs, however often it runs)."""
import json

from bench.cli import main

SUITE = """
name = "syncme"
metrics = ["fad-vggish@audioldm"]
[reference]
builtin = "synthetic"
n_clips = 4
duration_s = 1.0
[generation]
duration_s = 1.0
[[generators]]
name = "noise"
[[generators]]
name = "silence"
[weights]
mode = "untrained"
[scoring]
bootstrap = 5
batch_size = 4
"""


def _runs(uri):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("syncme")
    return client, ([] if exp is None else client.search_runs([exp.experiment_id], run_view_type=3))


def test_down_tracking_keeps_records_and_sync_pushes_them_once(tmp_path, cache_dir, capsys):
    suite = tmp_path / "suite.toml"
    suite.write_text(SUITE)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the database's directory should be")
    bad_uri = f"sqlite:///{blocker / 'mlflow.db'}"
    out = tmp_path / "out"
    assert main(["run", str(suite), "--out", str(out), "--quiet", "--tracking-uri", bad_uri]) == 3
    assert "bench sync" in capsys.readouterr().err
    records = sorted(p for p in (out / "records").glob("*.json") if not p.name.endswith(".tracking.json"))
    assert len(records) == 2
    for record in records:
        side = json.loads(record.with_name(record.stem + ".tracking.json").read_text())
        assert side["synced"] is False and side["uri"] == bad_uri and side["error"]
    # No cell was tried against the dead store: it was checked once, up front.
    assert sum("not tried" in json.loads(p.read_text())["error"] for p in (out / "records").glob("*.tracking.json")) == 2

    # Still down: sync fails cleanly, exit 3, nothing lost.
    assert main(["sync", str(out)]) == 3
    good = f"sqlite:///{tmp_path / 'good.db'}"
    assert main(["sync", str(out), "--tracking-uri", good]) == 0
    assert "2 record(s) pushed" in capsys.readouterr().out
    client, runs = _runs(good)
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}
    by_cell = {r.data.tags["bench.cell_id"]: r for r in runs}
    for record in records:
        data = json.loads(record.read_text())
        assert by_cell[data["cell_id"]].data.metrics["fad-vggish:audioldm untrained"] == data["metrics"][0]["value"]
        assert json.loads(record.with_name(record.stem + ".tracking.json").read_text())["synced"] is True

    # Idempotent: again, and even with the sidecars lost, the record hash tag finds the existing runs.
    assert main(["sync", str(out), "--tracking-uri", good]) == 0
    for side in (out / "records").glob("*.tracking.json"):
        side.unlink()
    assert main(["sync", str(out), "--tracking-uri", good]) == 0
    assert len(_runs(good)[1]) == 2

    # A run cut off mid-logging (tagged, never finished) is replaced, not kept next to a new one.
    victim = by_cell[json.loads(records[0].read_text())["cell_id"]]
    client.delete_run(victim.info.run_id)
    half = client.create_run(victim.info.experiment_id, tags={"bench.record_sha256": victim.data.tags["bench.record_sha256"]})
    for side in (out / "records").glob("*.tracking.json"):
        side.unlink()
    assert main(["sync", str(out), "--tracking-uri", good]) == 0
    live = [r for r in _runs(good)[1] if r.info.lifecycle_stage == "active"]
    assert len(live) == 2 and half.info.run_id not in {r.info.run_id for r in live}
    assert {r.info.status for r in live} == {"FINISHED"}


def test_sync_names_a_directory_without_records(tmp_path, capsys):
    assert main(["sync", str(tmp_path)]) == 2
    assert "no records/ directory" in capsys.readouterr().err
