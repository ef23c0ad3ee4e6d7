"""Caption metric kernels: CIDEr-D known value, parity with pycocoevalcap called directly, Java and SPICE errors,
the SPICE invocation up to the jar, manifest `references`."""
from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from bench.core.clipsets import load_manifest
from bench.core.errors import BenchError, ManifestError
from metrics import coco_caption_scores as cs

# docs/protocols.md#caption-metrics (aac-metrics documentation example).
KNOWN_CANDIDATES = ["a man is speaking", "rain falls"]
KNOWN_REFERENCES = [["a man speaks.", "someone speaks.", "a man is speaking while a bird is chirping in the background"],
                    ["rain is falling hard on a surface"]]

OTHER_CANDIDATES = ["A dog barks, then a car passes by.", "birds chirp in the trees", "Water is running!",
                    "an engine idles and revs"]
OTHER_REFERENCES = [["A dog is barking while a vehicle drives past", "a dog barks and a car goes by."],
                    ["Several birds are chirping.", "birds sing in a forest", "chirping of birds outdoors"],
                    ["water flows from a faucet"],
                    ["A vehicle engine idling then revving up", "an engine revs", "a motor is running"]]


def test_cider_d_known_value():
    scores = cs.coco_scores(KNOWN_CANDIDATES, KNOWN_REFERENCES, which=("cider-d",))
    assert round(scores["cider-d"].corpus, 4) == 0.9614
    assert [round(v, 4) for v in scores["cider-d"].per_clip] == [1.3641, 0.5587]


def test_matches_pycocoevalcap_called_directly():
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    ours = cs.coco_scores(OTHER_CANDIDATES, OTHER_REFERENCES, which=("bleu4", "rouge-l", "cider-d"))
    # COCOEvalCap's own path: its PTBTokenizer wrapper (its own JVM call), then each scorer.
    gts = PTBTokenizer().tokenize({i: [{"caption": r} for r in refs] for i, refs in enumerate(OTHER_REFERENCES)})
    res = PTBTokenizer().tokenize({i: [{"caption": c}] for i, c in enumerate(OTHER_CANDIDATES)})
    cider, cider_per = Cider().compute_score(gts, res)
    bleu, bleu_per = Bleu(4).compute_score(gts, res, verbose=0)
    rouge, rouge_per = Rouge().compute_score(gts, res)
    assert ours["cider-d"].corpus == pytest.approx(cider, abs=1e-12) and cider > 0
    assert ours["cider-d"].per_clip == pytest.approx(list(cider_per), abs=1e-12)
    assert ours["bleu4"].corpus == pytest.approx(bleu[3], abs=1e-12)
    assert ours["bleu4"].per_clip == pytest.approx(list(bleu_per[3]), abs=1e-12)
    assert ours["rouge-l"].corpus == pytest.approx(rouge, abs=1e-12)
    assert ours["rouge-l"].per_clip == pytest.approx(list(rouge_per), abs=1e-12)
    # IDF over the evaluated references: a clip's CIDEr-D depends on the other items.
    alone = cs.coco_scores(OTHER_CANDIDATES[:2], OTHER_REFERENCES[:2], which=("cider-d",))
    assert alone["cider-d"].per_clip[0] != pytest.approx(ours["cider-d"].per_clip[0])


@pytest.mark.slow  # METEOR's JVM loads its paraphrase table: ~15 s
def test_meteor_scores_each_clip_against_its_own_references():
    candidates = ["a dog barks loudly in the yard", "rain falls"]
    references = [["an engine revs", "a dog barks loudly in the yard"], ["a motor is running"]]
    meteor = cs.coco_scores(candidates, references, which=("meteor",))["meteor"]
    assert len(meteor.per_clip) == 2
    assert meteor.per_clip[0] > 0.9 and meteor.per_clip[1] < 0.1  # exact match vs nothing in common
    assert 0 < meteor.corpus < 1


def test_tokenizer_is_pycocoevalcaps():
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    sentences = ["A Dog's bark, then (silence)...", "Rain -- falling!", "Two  cars; one honks?"]
    toks = cs.ptb_tokenize(sentences)
    assert toks[1:] == ["rain falling", "two cars one honks"]
    direct = PTBTokenizer().tokenize({i: [{"caption": s}] for i, s in enumerate(sentences)})
    assert toks == [direct[i][0] for i in range(len(sentences))]


def test_java_missing_is_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no java anywhere
    with pytest.raises(BenchError, match=r"no `java` is on PATH.*default-jre-headless"):
        cs.coco_scores(["a new caption nobody tokenized yet"], [["a reference"]], which=("cider-d",))


def test_bad_references_are_refused():
    with pytest.raises(BenchError, match="no \\(or an empty\\) reference caption; first: item 1"):
        cs.coco_scores(["a", "b"], [["x"], []], which=("cider-d",))


def test_spice_missing_jars_names_files_urls_and_paths(tmp_path):
    with pytest.raises(cs.SpiceUnavailable) as err:
        cs.spice_jars(cache_root=tmp_path, allow_download=False)
    msg = str(err.value)
    for card in cs.CORENLP_JARS:
        assert card.filename in msg and card.url in msg and str(tmp_path / "weights" / card.filename) in msg
    assert "bench weights fetch corenlp-3.6.0 corenlp-3.6.0-models" in msg and "downloads are off" in msg


def _fake_java(folder: Path, log: Path) -> None:
    """A `java` that records its arguments and, as SpiceScorer, writes one F-score per item (= test words / 10)."""
    script = folder / "java"
    script.write_text(f"""#!{sys.executable}
import json, sys
args = sys.argv[1:]
open({str(log)!r}, "w").write(json.dumps(args))
items = json.load(open(args[args.index("edu.anu.spice.SpiceScorer") + 1]))
out = [{{"image_id": it["image_id"], "scores": {{"All": {{"f": len(it["test"].split()) / 10, "pr": 0.5, "re": 0.5}},
        "Object": {{"f": "NaN"}}}}}} for it in reversed(items)]
json.dump(out, open(args[args.index("-out") + 1], "w"))
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)


def test_spice_invocation_up_to_the_jar(tmp_path, monkeypatch):
    weights = tmp_path / "cache" / "weights"
    weights.mkdir(parents=True)
    for card in cs.CORENLP_JARS:
        (weights / card.filename).write_bytes(b"PK not really a jar " + card.name.encode())
    bin_dir, log = tmp_path / "bin", tmp_path / "java-args.json"
    bin_dir.mkdir()
    _fake_java(bin_dir, log)
    monkeypatch.setenv("PATH", str(bin_dir) + os.pathsep + os.environ["PATH"])
    gts = {0: ["a man speaks", "someone speaks"], 1: ["rain is falling hard on a surface"]}
    res = {0: ["a man is speaking"], 1: ["rain falls"]}
    score = cs.spice(gts, res, cache_root=tmp_path / "cache", allow_download=False)
    assert score.per_clip == [0.4, 0.2] and score.corpus == pytest.approx(0.3)
    args = json.loads(log.read_text())
    classpath = args[args.index("-cp") + 1].split(os.pathsep)
    assert classpath[0].endswith("spice/spice-1.0.jar")
    assert [Path(p).name for p in classpath[1:3]] == ["stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar"]
    assert any(p.endswith("SceneGraphParser-1.0.jar") for p in classpath)
    assert args[args.index("-cache") + 1] == str(tmp_path / "cache" / "spice-cache")
    assert "-subset" in args and "-silent" in args and "-Xmx8G" in args
    provenance = score.details["corenlp_jars"]
    assert [p["file"] for p in provenance] == ["stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar"]
    assert all(len(p["sha256"]) == 64 for p in provenance)


def test_manifest_references_jsonl_and_csv(tmp_path):
    (tmp_path / "m.jsonl").write_text(json.dumps({"id": "a", "caption": "dog", "references": ["a dog", "dogs"]}) + "\n"
                                      + json.dumps({"id": "b", "caption": "cat"}) + "\n")
    clips = load_manifest(tmp_path / "m.jsonl", require_audio=False).clips
    assert clips[0].references == ("a dog", "dogs") and clips[1].references == ()
    assert all(k != "references" for k, _ in clips[0].extra)
    (tmp_path / "m.csv").write_text('id,caption,references\na,dog,"a dog | dogs"\nb,cat,\n')
    clips = load_manifest(tmp_path / "m.csv", require_audio=False).clips
    assert clips[0].references == ("a dog", "dogs") and clips[1].references == ()
    (tmp_path / "bad.jsonl").write_text(json.dumps({"id": "a", "references": "a dog"}) + "\n")
    with pytest.raises(ManifestError, match=r"bad.jsonl row 1: field 'references' must be a list"):
        load_manifest(tmp_path / "bad.jsonl", require_audio=False)
