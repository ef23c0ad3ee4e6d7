"""RunRecord: written and read in one module; older schema versions stay readable."""
import json

import pytest

from bench.core.errors import BenchError
from bench.core.records import SCHEMA, RunRecord, read_record, write_record


def _v1_record():
    result = {"key": "clap@laion", "metric": "clap@laion", "metric_version": 1, "direction": "higher",
              "kind": "text-audio", "lineage": "x", "untrained": False, "value": 0.25, "ci": None,
              "protocol": {"id": "clap", "version": 1}, "backbone": {"backbone": "clap"}}
    fad = {**result, "key": "fad-vggish@audioldm", "metric": "fad-vggish@audioldm", "kind": "set",
           "direction": "lower"}
    return {"schema": "bench.run-record/1", "suite": {"name": "s", "path": "s.toml", "hash": "0" * 64},
            "cell_id": "model_seed0", "cell_hash": "1" * 64,
            "cell": {"generator": "model", "label": "mine", "seed": 0},
            "generation": {"untrained": True, "checkpoint_sha256": None}, "reference": {"fingerprint": "f"},
            "metrics": [result, fad], "untrained": False, "git_revision": None, "versions": {},
            "timing": {"generation_seconds": 1.0}}


def test_version_1_records_are_upgraded_on_read(tmp_path):
    path = tmp_path / "old.json"
    path.write_text(json.dumps(_v1_record()))
    record = read_record(path)
    assert record.schema == SCHEMA
    assert record.label == "mine" and record.generator == "model" and record.generator_untrained
    # v1 printed CLAP with 4 decimals and everything else with 3, unitless
    assert record.result("clap@laion")["precision"] == 4 and record.result("fad-vggish@audioldm")["precision"] == 3
    assert record.result("clap@laion")["unit"] == ""


def test_round_trip_keeps_every_field(tmp_path):
    record = RunRecord.from_dict(_v1_record())
    write_record(tmp_path / "r.json", record)
    again = read_record(tmp_path / "r.json")
    assert again == record
    assert "timing" not in record.comparable() and record.comparable()["cell_id"] == "model_seed0"


def test_foreign_and_incomplete_documents_are_refused(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"schema": "something/9"}))
    with pytest.raises(BenchError, match=r"x\.json: not a RunRecord"):
        read_record(path)
    broken = _v1_record()
    del broken["cell_hash"]
    path.write_text(json.dumps(broken))
    with pytest.raises(BenchError, match="lacks field.*cell_hash"):
        read_record(path)
    path.write_text("{not json")
    with pytest.raises(BenchError, match="not a readable RunRecord"):
        read_record(path)


def test_bench_score_records_from_before_run_records_are_read_as_files_cells(tmp_path):
    old = {"schema": "bench.score-record/1",
           "generated": {"name": "gen", "kind": "folder", "source": "/data/gen", "fingerprint": "g" * 64},
           "reference": {"name": "ref", "kind": "folder", "source": "/data/ref", "fingerprint": "r" * 64},
           "metrics": [_v1_record()["metrics"][1]]}
    path = tmp_path / "score.json"
    path.write_text(json.dumps(old))
    record = read_record(path)
    assert record.schema == SCHEMA and record.generator == "files" and record.label == "gen"
    assert record.cell["checkpoint"] == "/data/gen" and record.reference["fingerprint"] == "r" * 64
    assert record.suite["path"] is None and record.result("fad-vggish@audioldm")["precision"] == 3
    assert read_record(path) == record  # the same identity every time it is read
