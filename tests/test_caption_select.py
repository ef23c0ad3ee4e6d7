"""`bench select`: top-k per prompt by caption scores, written as a manifest other metrics can score."""
from __future__ import annotations

import json

import pytest

from bench.cli import main
from bench.core.clipsets import load_manifest
from bench.select import rank
from tests.caption_helpers import shared_captioner, write_manifest


def test_rank_groups_by_prompt_and_breaks_ties_by_id():
    scores = {"a#0": 1.0, "a#1": 3.0, "a#2": 3.0, "b#0": 0.5, "c": 2.0}
    assert rank(scores, list(scores), 2) == [("a#1", 1, 3.0), ("a#2", 2, 3.0), ("b#0", 1, 0.5), ("c", 1, 2.0)]
    assert [cid for cid, _, _ in rank(scores, list(scores), 1)] == ["a#1", "b#0", "c"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("select")
    _, result = shared_captioner()
    # Two prompts, three samples each, drawn from different clips of the set the captioner saw.
    prompt_a, prompt_b = "a steady 440 hz sine tone", "sharp rhythmic clicks"
    manifest = write_manifest(root / "gen", [
        ("a#0", prompt_a, 0, ["a sine tone"]), ("a#1", prompt_a, 1, ["a sine tone"]), ("a#2", prompt_a, 2, ["a sine tone"]),
        ("b#0", prompt_b, 3, []), ("b#1", prompt_b, 4, []), ("b#2", prompt_b, 5, [])])
    return root, result.checkpoint, manifest


def test_select_writes_top_k_manifest(setup, capsys):
    root, checkpoint, manifest = setup
    out = root / "best.jsonl"
    common = ["--cache-dir", str(root / "cache"), "select", "--generated", str(manifest), "--captioner", "trained",
              "--checkpoint", f"small-captioner={checkpoint}", "--offline", "--quiet", "--out", str(out)]
    # Diffsound's ranking needs SPICE: without the CoreNLP jars, an error that names the way out.
    assert main(common + ["--top-k", "2"]) == 2
    err = capsys.readouterr().err
    assert "SPICE" in err and "--by cider-d" in err and "stanford-corenlp-3.6.0.jar" in err and not out.exists()

    assert main(common + ["--top-k", "2", "--by", "cider-d"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    record = json.loads((root / "best.jsonl.record.json").read_text())
    assert record["ranking"]["by"] == "cider-d" and record["ranking"]["diffsound"] is False
    # The kept clips are each prompt's two best by the CIDEr-D scores computed independently here.
    from metrics.inputs import ScoreOptions
    from bench.scoring import score
    from metrics.backbones.base import WeightsChoice

    options = ScoreOptions(weights=WeightsChoice(local_files=(("small-captioner", str(checkpoint)),),
                                                 cache_root=root / "cache", allow_download=False),
                           cache_root=root / "cache", bootstrap=0, progress=False, batch_size=8)
    [cider] = score(["caption-cider-d@trained"], load_manifest(manifest), None, options)
    per_clip = {r["id"]: r["value"] for r in cider["per_clip"]}
    for group in ("a", "b"):
        best = sorted((cid for cid in per_clip if cid.startswith(group)), key=lambda c: (-per_clip[c], c))[:2]
        assert [r["id"] for r in rows if r["id"].startswith(group)] == best
    assert [r["selection"]["rank"] for r in rows] == [1, 2, 1, 2]
    assert rows[0]["references"] == ["a sine tone"] and rows[0]["caption"] == "a steady 440 hz sine tone"
    # The selection is a manifest like any other: it loads, and another metric scores it.
    selected = load_manifest(out)
    assert len(selected) == 4 and selected.clips[0].references == ("a sine tone",)
    [rouge] = score(["caption-rouge-l@trained"], selected, None, options)
    assert rouge["generated"]["n_clips"] == 4 and 0 <= rouge["value"] <= 1
