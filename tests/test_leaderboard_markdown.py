"""Markdown leaderboard against a golden file (regenerate: BENCH_UPDATE_GOLDEN=1 pytest this file)."""
import os
from pathlib import Path

from bench.core.records import SCHEMA, RunRecord
from leaderboards.markdown import render

GOLDEN = Path(__file__).parent / "golden" / "leaderboard.md"


def _result(key, value, untrained, ci=True, degenerate=False):
    backbone = ({"backbone": "vggish", "weights": "untrained", "seed": 0} if untrained else
                {"backbone": "vggish", "weights": "pretrained", "file": "vggish-10086976.pth",
                 "sha256": "10086976" + "ab" * 28})
    return {"key": key, "metric": key.split("[")[0], "metric_version": 1, "direction": "lower",
            "lineage": "audioldm_eval", "untrained": untrained, "value": value,
            "ci": {"low": value * 0.9, "high": value * 1.1, "level": 0.95,
                   "covers": "the population FD"} if ci else None,
            "noise_floor": {"mean": 4.25, "std": 0.5, "splits": 5, "set_sizes": [14, 14]},
            "degenerate": "the generated set is the reference set itself" if degenerate else None,
            "protocol": {"id": "vggish@audioldm", "version": 1}, "backbone": backbone}


def _record(label, seed, results):
    return RunRecord(schema=SCHEMA, suite={"name": "golden", "path": None, "hash": "0" * 64},
                     cell_id=f"{label.split()[0]}_seed{seed}", cell_hash="1" * 64,
                     cell={"generator": label.split()[0], "label": label, "checkpoint": None, "seed": seed,
                           "steps": None, "guidance": None, "sample_rate": 16000},
                     generation={},
                     reference={"name": "synthetic", "kind": "synthetic", "n_clips": 28, "fingerprint": "f" * 64},
                     metrics=tuple(results), untrained=any(r["untrained"] for r in results), git_revision=None,
                     versions={}, timing={})


def test_markdown_matches_golden():
    records = [
        _record("reference", 0, [_result("fad-vggish@audioldm", 0.0, False, degenerate=True),
                                 _result("fad-vggish@google[untrained]", 0.0, True, degenerate=True)]),
        _record("noise | loud", 0, [_result("fad-vggish@audioldm", 12.3456, False)]),
        _record("noise | loud", 1, [_result("fad-vggish@audioldm", 13.0, False, ci=False),
                                    _result("fad-vggish@google[untrained]", 2761.5, True)]),
    ]
    text = render(records, title="golden")
    if os.environ.get("BENCH_UPDATE_GOLDEN"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text()
    assert "noise \\| loud" in text  # a pipe in a name cannot break the table
    assert "| – |" in text  # a metric missing for a cell is shown as missing, not as 0
    # The oracle (a set against itself) is labelled and not ranked; the floor and what intervals cover are noted.
    assert "| reference | 0 | 0.000 (degenerate) |" in text and "**12.346**" in text
    assert "Noise floor: 4.250 ± 0.500 (reference half vs half, 14 vs 14 clips, 5 splits)" in text
    assert "Interval covers the population FD." in text


def test_empty():
    assert "No results" in render([])
