"""`bench compare`: paired bootstrap of metric differences between two records, end to end."""
import json

import numpy as np
import pytest

from bench.cli import main
from bench.compare import PromptDraws, comparability_problems, repeat_clips, verdict
from bench.core.synthetic import synthetic_dataset
from metrics.inputs import SetEmbeddings, pair_by_id
from tests.conftest import write_clips

METRICS = ["fad-vggish@audioldm", "kad-vggish@audioldm", "fad-inf-vggish@audioldm"]


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """Score records of a noise set and of a slightly perturbed reference, both against the reference."""
    root = tmp_path_factory.mktemp("compare")
    ds = synthetic_dataset(n_clips=8, sample_rate=16000, duration_s=1.5, seed=0)
    rng = np.random.default_rng(0)
    clips = {c.id: ds.load(c) for c in ds.clips}
    write_clips(root / "ref", clips)
    write_clips(root / "noise", {i: ((0.1 * rng.standard_normal(w.shape)).astype(np.float32), r)
                                 for i, (w, r) in clips.items()})
    perturbed = {i: ((w + 0.01 * rng.standard_normal(w.shape)).astype(np.float32), r) for i, (w, r) in clips.items()}
    write_clips(root / "pert", perturbed)
    write_clips(root / "renamed", {f"other-{i}": v for i, v in perturbed.items()})
    cache = root / "cache"

    def score(gen, out):
        args = ["--cache-dir", str(cache), "score", "--generated", str(root / gen), "--reference", str(root / "ref"),
                "--weights", "untrained", "--bootstrap", "0", "--out", str(root / out), "--quiet"]
        for m in METRICS:
            args += ["--metric", m]
        assert main(args) == 0
        return root / out

    return {"root": root, "cache": cache, "noise": score("noise", "noise.json"), "pert": score("pert", "pert.json"),
            "renamed": score("renamed", "renamed.json")}


def compare(scored, a, b, *extra):
    return main(["--cache-dir", str(scored["cache"]), "compare", str(a), str(b), "--quiet", *extra])


def test_paired_comparison_gives_a_clear_verdict(scored, capsys):
    assert compare(scored, scored["noise"], scored["pert"], "--bootstrap", "40", "--format", "json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["schema"] == "bench.compare/1" and report["difference"] == "A - B"
    assert [m["metric"] for m in report["metrics"]] == METRICS
    for m in report["metrics"]:
        assert m["verdict"] == "B better", m
        assert m["resampling"]["mode"] == "paired" and m["resampling"]["shared_prompts"] == 8
        assert m["resampling"]["reference"] == "reference clips drawn with their prompts"
        # Recomputed from the embedding cache: the recorded values, to round-off.
        assert m["a"]["recomputed"] == pytest.approx(m["a"]["recorded"], rel=1e-9)
        assert m["b"]["recomputed"] == pytest.approx(m["b"]["recorded"], rel=1e-9)
        assert m["difference"] == pytest.approx(m["a"]["recorded"] - m["b"]["recorded"], rel=1e-9)
        assert 0 < m["ci"]["low"] <= m["ci"]["high"] and m["ci"]["n_resamples"] == 40 and not m["warnings"]

    assert compare(scored, scored["pert"], scored["noise"], "--bootstrap", "40", "--format", "json") == 0
    swapped = json.loads(capsys.readouterr().out)
    for m, s in zip(report["metrics"], swapped["metrics"]):
        assert s["verdict"] == "A better" and s["difference"] == pytest.approx(-m["difference"])
        # The same draws mirrored: the interval of B - A is minus the interval of A - B.
        assert (s["ci"]["low"], s["ci"]["high"]) == pytest.approx((-m["ci"]["high"], -m["ci"]["low"]))


def test_a_record_against_itself_is_no_significant_difference(scored, capsys):
    assert compare(scored, scored["pert"], scored["pert"], "--bootstrap", "20", "--metric", "kad-vggish@audioldm",
                   "--format", "json") == 0
    (m,) = json.loads(capsys.readouterr().out)["metrics"]
    assert m["difference"] == 0 and m["verdict"] == "no significant difference at 95%"


def test_text_table_and_level(scored, capsys):
    assert compare(scored, scored["noise"], scored["pert"], "--bootstrap", "30", "--level", "0.9",
                   "--metric", "fad-vggish@audioldm") == 0
    out = capsys.readouterr().out
    assert "90% CI of A-B" in out and "verdicts at the 90% level" in out
    row = next(line for line in out.splitlines() if line.startswith("fad-vggish@audioldm[untrained]"))
    assert row.endswith("B better") and "lower" in row
    assert "paired over 8 shared prompts" in out


def test_different_prompts_fall_back_to_an_independent_bootstrap(scored, capsys):
    assert compare(scored, scored["noise"], scored["renamed"], "--bootstrap", "40", "--format", "json",
                   "--metric", "fad-vggish@audioldm") == 0
    (m,) = json.loads(capsys.readouterr().out)["metrics"]
    assert m["resampling"]["mode"] == "independent" and m["resampling"]["shared_prompts"] == 0
    assert "drawn once per resample, the same draw for A and B" in m["resampling"]["reference"]
    assert m["verdict"] == "B better"


def _edited(scored, source, name, edit):
    record = json.loads(source.read_text())
    for result in record["metrics"]:
        edit(result)
    path = scored["root"] / name
    path.write_text(json.dumps(record))
    return path


def test_refuses_incomparable_records_with_a_clear_message(scored, capsys):
    def seed1(r):
        r["backbone"]["seed"] = 1

    assert compare(scored, scored["noise"], _edited(scored, scored["pert"], "seed1.json", seed1)) == 2
    assert "different backbone weights" in capsys.readouterr().err

    def pretrained(r):
        r["untrained"] = False
        r["key"] = r["metric"]
        r["backbone"] = {"backbone": "vggish", "weights": "pretrained", "sha256": "ab" * 32}

    assert compare(scored, scored["noise"], _edited(scored, scored["pert"], "pretrained.json", pretrained)) == 2
    err = capsys.readouterr().err
    assert "A used an untrained (random-weight) backbone" in err and "Traceback" not in err

    def other_reference(r):
        r["reference"]["fingerprint"] = "0" * 64

    assert compare(scored, scored["noise"], _edited(scored, scored["pert"], "otherref.json", other_reference)) == 2
    assert "different reference sets" in capsys.readouterr().err


def test_changed_audio_is_detected(scored, capsys, tmp_path):
    record = json.loads(scored["pert"].read_text())
    moved = tmp_path / "pert"
    moved.mkdir()
    for wav in (scored["root"] / "pert").glob("*.wav"):
        (moved / wav.name).write_bytes(wav.read_bytes())
    write_clips(moved, {"synthetic-0000": (np.zeros((1, 24000), np.float32), 16000)})
    for r in record["metrics"]:
        r["generated"]["source"] = str(moved)
    path = tmp_path / "changed.json"
    path.write_text(json.dumps(record))
    assert compare(scored, scored["noise"], path, "--metric", "fad-vggish@audioldm") == 2
    assert "has changed since the record was written" in capsys.readouterr().err


def test_run_records_compare_end_to_end(tmp_path, cache_dir, capsys):
    suite = tmp_path / "suite.toml"
    suite.write_text("""
name = "cmp"
metrics = ["fad-vggish@audioldm", "kad-vggish@audioldm"]
[reference]
builtin = "synthetic"
n_clips = 6
duration_s = 1.5
[generation]
duration_s = 1.5
[[generators]]
name = "reference"
[[generators]]
name = "noise"
[weights]
mode = "untrained"
[scoring]
bootstrap = 0
""")
    out = tmp_path / "out"
    assert main(["run", str(suite), "--out", str(out), "--quiet", "--no-tracking"]) == 0
    records = {json.loads(p.read_text())["cell"]["generator"]: p for p in (out / "records").glob("*.json")
               if not p.name.endswith(".tracking.json")}
    capsys.readouterr()
    assert main(["compare", str(records["reference"]), str(records["noise"]), "--bootstrap", "40", "--quiet",
                 "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert "reference" in report["a"]["label"] and "noise" in report["b"]["label"]
    for m in report["metrics"]:
        assert m["verdict"] == "A better" and m["resampling"]["mode"] == "paired"
        assert m["resampling"]["reference"] == "reference clips drawn with their prompts"
        assert m["a"]["recomputed"] == pytest.approx(m["a"]["recorded"], abs=1e-9)


def _set(ids):
    return SetEmbeddings({}, list(ids), [None] * len(ids), {"embedding": [np.full((1, 2), k) for k in range(len(ids))]},
                         [1.0] * len(ids), [False] * len(ids))


def test_draws_tie_samples_to_their_prompt_and_repeats_keep_pairs():
    gen_a = _set(["x#0", "x#1", "y#0", "y#1"])
    gen_b = _set(["y#0", "x#0", "x#1", "y#1"])
    ref = _set(["y", "x"])
    draws = PromptDraws(gen_a.clip_ids, gen_b.clip_ids, ref.clip_ids)
    assert draws.paired and draws.ref_tied
    rng = np.random.default_rng(0)
    for _ in range(10):
        ca, cb, cr = draws.draw(rng)
        count = {"x": cr[1], "y": cr[0]}
        assert [count[i[0]] for i in gen_a.clip_ids] == list(ca) and [count[i[0]] for i in gen_b.clip_ids] == list(cb)
        rep_gen, rep_ref = repeat_clips(gen_a, ca), repeat_clips(ref, cr)
        pairs, _ = pair_by_id(rep_gen, rep_ref, "strict")
        # Every copy pairs with the same copy of its own prompt's reference clip.
        assert all(rep_gen.clip_ids[i].split("#")[0] == rep_ref.clip_ids[j] for i, j in pairs)
        assert len(pairs) == len(rep_gen.clip_ids)


def test_verdict_uses_the_direction():
    assert verdict(0.1, 0.5, "lower", 0.95) == "B better"
    assert verdict(0.1, 0.5, "higher", 0.95) == "A better"
    assert verdict(-0.5, -0.1, "lower", 0.95) == "A better"
    assert verdict(-0.5, 0.1, "lower", 0.95) == "no significant difference at 95%"


def test_comparability_checks_protocol_and_version():
    base = {"metric": "m@p", "untrained": True, "metric_version": 1, "protocol": {"id": "p", "version": 1},
            "backbone": {"backbone": "b", "seed": 0, "init": "i"}, "reference": {"fingerprint": "f"}}
    assert comparability_problems(base, dict(base)) == []
    newer = {**base, "metric_version": 2, "protocol": {"id": "p", "version": 2}}
    problems = comparability_problems(base, newer)
    assert any("metric version" in p for p in problems) and any("protocol p v1" in p for p in problems)
