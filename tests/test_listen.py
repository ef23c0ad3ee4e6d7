"""`bench listen`: study building, the web app's rules (through Flask's test client), import, score,
records in leaderboards and MLflow, report. The browser test is tests/test_listen_browser.py."""
import csv
import json
import re
import sqlite3
import stat

import numpy as np
import pytest
import soundfile as sf

from bench.cli import main
from bench.core.cache import stable_hash
from bench.core.errors import BenchError, ConfigError, ManifestError
from bench.core.records import read_record
from bench.listen import store
from bench.listen.app import make_app
from bench.listen.importer import import_ratings
from bench.listen.protocols import load_protocol
from bench.listen.scoring import log_records, score_study
from bench.listen.study import create_study, load_study, read_links

INJECTED = '<script>document.title="pwned"</script><img src=x onerror=alert(1)>'
# Known per-system quality of the simulated raters: the reference system is rated high, noise low.
TRUE_OVL = {"reference": 4.6, "noise": 1.6, "silence": 1.2}
TRUE_REL = {"reference": 4.4, "noise": 1.3, "silence": 1.1}


@pytest.fixture
def mos_study(listening_results, tmp_path):
    create_study(listening_results, "mos-ovl-rel", clips_per_rater=6, n_raters=4, out=tmp_path / "study", seed=3)
    return tmp_path / "study"


def _page(client, link):
    html = client.get(link).get_data(as_text=True)
    trial = re.search(r'name="trial" value="(t\d+)"', html)
    return html, trial.group(1) if trial else None, re.findall(r'data-clip="([0-9a-f]{32})"', html)


def _answer_all(client, study, link, score_of):
    """Answer every page of one rater through the app; score_of(clip info, question) -> score."""
    given = {}
    while True:
        html, trial, clips = _page(client, link)
        if trial is None:
            assert 'id="done"' in html
            return given
        form = {"trial": trial}
        for clip in clips:
            info = study["clips"][clip]
            if info["role"] == "open-reference":
                continue
            for q in study["protocol"]["questions"]:
                form[f"answer:{clip}:{q['id']}"] = str(score_of(info, q["id"]))
                given[(clip, q["id"])] = float(form[f"answer:{clip}:{q['id']}"])
        assert client.post(f"{link}/answer", data=form).status_code == 303


def _label(study, info):
    return "noise-check" if info["role"] == "attention" else study["conditions"][info["condition"]]["label"]


def test_create_is_blind_balanced_reproducible(listening_results, tmp_path, mos_study):
    study = load_study(mos_study)
    again = create_study(listening_results, "mos-ovl-rel", 6, 4, tmp_path / "again", seed=3)
    assert again == study  # the design is a function of the inputs and the seed (tokens are not)
    other = create_study(listening_results, "mos-ovl-rel", 6, 4, tmp_path / "other", seed=4)
    assert set(other["clips"]) != set(study["clips"])
    assert [c["label"] for c in study["conditions"]] == ["noise", "reference", "silence"]
    for name, info in study["clips"].items():
        assert re.fullmatch(r"[0-9a-f]{32}", name)  # the file name says nothing about the system
        data, rate = sf.read(mos_study / "audio" / f"{name}.wav", dtype="int16")
        assert rate == 16000 and sf.info(mos_study / "audio" / f"{name}.wav").subtype == "PCM_16"
    for rater in study["raters"]:
        rated = [t for t in rater["trials"] if not t.get("attention")]
        counts = np.bincount([study["clips"][t["clips"][0]]["condition"] for t in rated], minlength=3)
        assert counts.max() - counts.min() <= 1 and len(rated) == 6
        assert sum(bool(t.get("attention")) for t in rater["trials"]) == 2
        assert not rater["trials"][0].get("attention")
    links = read_links(mos_study)
    assert len(links) == 4 and all(len(path.split("/")[-1]) >= 32 for _, path in links)
    assert stat.S_IMODE((mos_study / "links.txt").stat().st_mode) == 0o600
    with pytest.raises(BenchError, match="never overwritten"):
        create_study(listening_results, "mos-ovl-rel", 6, 4, mos_study)
    study_json = json.loads((mos_study / "study.json").read_text())
    study_json["seed"] = 99
    (mos_study / "study.json").write_text(json.dumps(study_json))
    with pytest.raises(BenchError, match="fingerprint"):
        load_study(mos_study)


def test_mushra_study_has_hidden_reference_and_lowpass_anchors(listening_results, tmp_path):
    study = create_study(listening_results, "mushra", 3, 2, tmp_path / "m", seed=0)
    kinds = [c["kind"] for c in study["conditions"]]
    assert kinds == ["system"] * 3 + ["hidden-reference", "anchor", "anchor"]
    trial = study["raters"][0]["trials"][0]
    assert len(trial["clips"]) == 6 and study["clips"][trial["reference"]]["role"] == "open-reference"

    def high_band_energy(name):
        x, rate = sf.read(tmp_path / "m" / "audio" / f"{name}.wav")
        spectrum = np.abs(np.fft.rfft(x)) ** 2
        return spectrum[np.fft.rfftfreq(len(x), 1 / rate) > 4000].sum() / spectrum.sum()

    by_kind = {study["conditions"][study["clips"][c]["condition"]].get("cutoff_hz", kinds[
        study["clips"][c]["condition"]]): c for c in trial["clips"]}
    hidden = high_band_energy(by_kind["hidden-reference"])
    assert high_band_energy(by_kind[3500]) < 0.01 * max(hidden, 1e-9) or hidden < 1e-6
    with open(tmp_path / "m" / "audio" / f"{trial['reference']}.wav", "rb") as f:
        assert f.read() == (tmp_path / "m" / "audio" / f"{by_kind['hidden-reference']}.wav").read_bytes()


def test_mos_with_hidden_reference(listening_results, tmp_path, capsys):
    assert main(["listen", "create", str(listening_results), "--protocol", "mos-ovl", "--clips-per-rater", "4",
                 "--raters", "2", "--hidden-reference", "--out", str(tmp_path / "h")]) == 0
    assert "4 conditions" in capsys.readouterr().out
    study = load_study(tmp_path / "h")
    assert study["conditions"][-1]["kind"] == "hidden-reference"
    hidden = [n for n, c in study["clips"].items() if c["condition"] == 3]
    assert hidden and all(c["role"] == "rated" for n, c in study["clips"].items() if n in hidden)
    counts = np.bincount([study["clips"][t["clips"][0]]["condition"] for t in study["raters"][0]["trials"]
                          if not t.get("attention")], minlength=4)
    assert counts.tolist() == [1, 1, 1, 1]


def test_protocol_toml_validation(tmp_path):
    good = tmp_path / "p.toml"
    good.write_text('name = "x"\nkind = "mos"\n[[questions]]\nid = "noisy"\ntext = "How noisy?"\n')
    assert load_protocol(str(good))["attention_checks"] == 2
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\nkind = "mos"\nquestionz = 1\n')
    with pytest.raises(ConfigError, match="unknown protocol key.*questionz"):
        load_protocol(str(bad))
    bad.write_text('name = "x"\nkind = "mos"\n[[questions]]\nid = "Bad Id"\ntext = "t"\n')
    with pytest.raises(ConfigError, match=r"questions\[1\].id"):
        load_protocol(str(bad))
    with pytest.raises(ConfigError, match="neither a built-in"):
        load_protocol("mos-nope")
    # A failed create leaves neither a study nor a half-built folder behind.
    (tmp_path / "empty-results").mkdir()
    with pytest.raises(BenchError, match="no RunRecords"):
        create_study(tmp_path / "empty-results", "mos-ovl", 2, 2, tmp_path / "study")
    assert not (tmp_path / "study").exists() and not list(tmp_path.glob(".study.building-*"))


def test_app_answers_resume_and_duplicates(mos_study):
    study = load_study(mos_study)
    client = make_app(mos_study).test_client()
    (rid_a, link_a), (rid_b, link_b) = read_links(mos_study)[:2]
    html, trial, clips = _page(client, link_a)
    assert "Page 1 of 8" in html and len(clips) == 1
    response = client.get(link_a)
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert "<script>" not in html.replace('<script src="', "")  # no inline script
    form = {"trial": trial, f"answer:{clips[0]}:ovl": "4", f"answer:{clips[0]}:rel": "5"}
    assert client.post(f"{link_a}/answer", data=form).status_code == 303
    # Replays and a changed resubmission of the same page count once: the first answer stays.
    assert client.post(f"{link_a}/answer", data=form).status_code == 303
    assert client.post(f"{link_a}/answer", data={**form, f"answer:{clips[0]}:ovl": "1"}).status_code == 303
    # A "new session" (another client, as after closing the tab) resumes at page 2.
    html2, trial2, _ = _page(make_app(mos_study).test_client(), link_a)
    assert "Page 2 of 8" in html2 and trial2 != trial
    # Out of range / missing answers are refused and nothing is written.
    bad = client.post(f"{link_a}/answer", data={"trial": trial2, f"answer:{clips[0]}:ovl": "7"})
    assert bad.status_code == 400
    with store.connect(mos_study / "ratings.sqlite") as conn:
        rows = store.all_answers(conn)
    assert [(r["rater"], r["clip"], r["question"], r["score"]) for r in rows] == [
        (rid_a, clips[0], "ovl", 4.0), (rid_a, clips[0], "rel", 5.0)]
    assert study["clips"][clips[0]]["role"] in ("rated", "attention")


def test_app_security(mos_study):
    study = load_study(mos_study)
    client = make_app(mos_study).test_client()
    (rid_a, link_a), (rid_b, link_b) = read_links(mos_study)[:2]
    _, trial_a, clips_a = _page(client, link_a)
    own_b = {c for t in study["raters"][1]["trials"] for c in t["clips"]}
    not_b = next(c for t in study["raters"][0]["trials"] for c in t["clips"] if c not in own_b)
    token_a = link_a.split("/")[-1]
    # Tokens are required for everything; unknown or malformed tokens see nothing.
    assert client.get("/r/" + "x" * 32).status_code == 404
    assert client.get(f"/r/{'x' * 32}/audio/{clips_a[0]}.wav").status_code == 404
    assert client.get(f"/audio/{clips_a[0]}.wav").status_code == 404
    assert client.get(f"{link_a}/audio/{clips_a[0]}.wav").status_code == 200
    # Only the study's own clips, only the rater's own, no traversal.
    for path in ("..%2Fstudy.json", "../study", "..%2F..%2Fetc%2Fpasswd", "%2e%2e%2fratings",
                 clips_a[0].upper()):
        assert client.get(f"{link_a}/audio/{path}.wav").status_code == 404, path
    assert client.get(f"{link_a}/../study.json").status_code == 404
    assert client.get(f"{link_b}/audio/{not_b}.wav").status_code == 404
    assert client.post(f"{link_b}/played", data=not_b).status_code == 404
    # Rater A answers page 1; rater B cannot change A's answer: B's post lands on B's own trial and
    # lacks B's clips, so it is refused; A's answer is untouched. No page shows another rater's answers.
    form_a = {"trial": trial_a, f"answer:{clips_a[0]}:ovl": "4", f"answer:{clips_a[0]}:rel": "4"}
    assert client.post(f"{link_a}/answer", data=form_a).status_code == 303
    hijack = {**form_a, f"answer:{clips_a[0]}:ovl": "1"}
    assert client.post(f"{link_b}/answer", data=hijack).status_code in (400, 404)
    near_miss = token_a[:-1] + ("A" if token_a[-1] != "A" else "B")
    assert client.post(f"/r/{near_miss}/answer", data=hijack).status_code == 404
    with store.connect(mos_study / "ratings.sqlite") as conn:
        rows = store.all_answers(conn)
    assert {(r["rater"], r["score"]) for r in rows} == {(rid_a, 4.0)}
    assert "4" not in re.sub(r"<[^>]+>|Page \d+ of \d+|\d Good|\d Bad|\d Poor|\d Fair|\d Excellent", "",
                             client.get(link_b).get_data(as_text=True)).replace("44rem", "")


def test_app_escapes_captions_and_questions(listening_results, tmp_path):
    protocol = tmp_path / "p.toml"
    protocol.write_text(f'name = "inj"\nkind = "mos"\n[[questions]]\nid = "q"\ntext = \'{INJECTED}\'\n'
                        'show_caption = true\n')
    study_dir = tmp_path / "s"
    study = create_study(listening_results, str(protocol), 2, 1, study_dir)
    # A caption with markup (as a manifest may hold): re-fingerprint the study as create would.
    for item in study["items"]:
        item["caption"] = "caption " + INJECTED
    study["fingerprint"] = stable_hash({k: v for k, v in study.items() if k != "fingerprint"})
    (study_dir / "study.json").write_text(json.dumps(study))
    with sqlite3.connect(study_dir / "ratings.sqlite") as conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'study_fingerprint'", (study["fingerprint"],))
    html = make_app(study_dir).test_client().get(read_links(study_dir)[0][1]).get_data(as_text=True)
    assert "<script>document" not in html and "<img src=x" not in html
    assert "&lt;script&gt;document.title=&#34;pwned&#34;&lt;/script&gt;" in html
    assert html.count("&lt;img src=x onerror=alert(1)&gt;") == 2  # the caption and the question


def test_serve_warns_on_all_interfaces(mos_study, monkeypatch, capsys):
    import waitress

    calls = []
    monkeypatch.setattr(waitress, "serve", lambda app, **kw: calls.append(kw))
    assert main(["listen", "serve", str(mos_study), "--host", "0.0.0.0", "--port", "9999"]) == 0
    err, out = capsys.readouterr().err, capsys.readouterr().out
    assert "WARNING: listening on 0.0.0.0" in err and calls == [{"host": "0.0.0.0", "port": 9999, "threads": 4,
                                                                "ident": "bench-listen"}]
    assert main(["listen", "serve", str(mos_study)]) == 0
    assert "WARNING" not in capsys.readouterr().err and calls[-1]["host"] == "127.0.0.1"


def _simulate_web_raters(study_dir, careless=("rater-004",)):
    """Raters answer through the app: attentive ones near the true means, careless ones rate
    everything 5 (and fail the noise checks)."""
    study = load_study(study_dir)
    client = make_app(study_dir).test_client()
    rng = np.random.default_rng(0)
    given = {}
    for rater_id, link in read_links(study_dir):
        def score_of(info, q, rater_id=rater_id):
            if rater_id in careless:
                return 5
            if info["role"] == "attention":
                return 1
            true = (TRUE_OVL if q == "ovl" else TRUE_REL)[_label(study, info)]
            return int(np.clip(np.rint(true + rng.normal(0, 0.4)), 1, 5))
        given[rater_id] = _answer_all(client, study, link, score_of)
    return study, given


def test_score_screens_raters_and_writes_records(mos_study, listening_results, capsys):
    study, given = _simulate_web_raters(mos_study)
    summary, records = score_study(mos_study, n_resamples=200)
    assert list(summary["raters"]["excluded"]) == ["rater-004"]
    assert "failed 4 of 4 attention-check answers" in summary["raters"]["excluded"]["rater-004"]
    assert summary["raters"]["kept"] == 3 and summary["n_answers"] == sum(len(g) for g in given.values())
    assert summary["raters"]["not_screened"] == []
    by_label = {r.label: {m["key"]: m for m in r.metrics} for r in records}
    assert set(by_label) == {"reference", "noise", "silence"}
    for label, result in by_label.items():
        ovl, rel = result["mos-ovl@listening"], result["mos-rel@listening"]
        assert abs(ovl["value"] - TRUE_OVL[label]) < 0.8 and ovl["ci"]["low"] <= ovl["value"] <= ovl["ci"]["high"]
        assert abs(rel["value"] - TRUE_REL[label]) < 0.8
        assert ovl["n_raters"] == 3 and ovl["backbone"]["sha256"] == study["fingerprint"]
    assert by_label["reference"]["mos-ovl@listening"]["ci"]["low"] > by_label["noise"]["mos-ovl@listening"]["ci"]["high"]
    record = read_record(mos_study / "records" / f"{records[0].cell_id}.json")
    assert record == records[0] and record.cell_id.endswith("+listening")
    suite_record = read_record(listening_results / "records" / f"{record.scored_cell}.json")
    assert record.cell == suite_record.cell and record.reference == suite_record.reference
    assert record.listening["protocol"]["name"] == "mos-ovl-rel"
    assert record.listening["n_raters"] == 3 and record.listening["n_ratings"] == summary["n_ratings_kept"]
    alpha = summary["questions"]["ovl"]["agreement"]["krippendorff_alpha_interval"]
    assert alpha is None or alpha > 0.5

    # `bench leaderboard` shows FAD and OVL/REL side by side: one row per suite cell.
    assert main(["leaderboard", "--records", str(listening_results), str(mos_study / "records"),
                 "--info", "none"]) == 0
    table = capsys.readouterr().out
    header = next(line for line in table.splitlines() if line.startswith("| generator"))
    assert "fad-vggish@audioldm[untrained]" in header and "mos-ovl@listening ↑" in header
    assert "mos-rel@listening" in header and "| n |" not in header
    rows = [line for line in table.splitlines() if line.startswith("| ") and "generator" not in line
            and not line.startswith("| :")]
    assert len(rows) == 3
    ref_row = next(line for line in rows if line.startswith("| reference"))
    ovl = by_label["reference"]["mos-ovl@listening"]
    assert f"**{ovl['value']:.2f}** [{ovl['ci']['low']:.2f}, {ovl['ci']['high']:.2f}]" in ref_row  # best: bold


def test_score_logs_records_to_mlflow(mos_study, tmp_path):
    from leaderboards.sources import load_mlflow_records

    _simulate_web_raters(mos_study)
    _, records = score_study(mos_study, n_resamples=50)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert log_records(mos_study, records, uri, "tiny-listen", log=lambda *a: None) == []
    assert log_records(mos_study, records, uri, "tiny-listen", log=lambda *a: None) == []  # once only
    logged = load_mlflow_records("tiny-listen", uri)
    assert sorted(logged, key=lambda r: r.cell_id) == sorted(records, key=lambda r: r.cell_id)


def test_import_external_csv(mos_study, tmp_path):
    study = load_study(mos_study)
    rated = [n for n, c in study["clips"].items() if c["role"] == "rated"]
    good = tmp_path / "ratings.csv"
    with open(good, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["rater", "item", "question", "score", "extra"])
        w.writerow(["p1", rated[0], "ovl", "4", "x"])
        w.writerow(["p1", f"audio/{rated[0]}.wav", "rel", "3.5", ""])
        w.writerow(["p1", rated[0], "ovl", "4", ""])  # a repeated row counts once
        w.writerow(["p2", rated[1], "OVL", "2", ""])
    assert import_ratings(mos_study, good) == {"imported": 3, "already_present": 0, "repeated_in_file": 1,
                                               "raters": 2}
    assert import_ratings(mos_study, good)["imported"] == 0  # importing twice adds nothing
    bad = tmp_path / "bad.csv"
    bad.write_text("rater,item,question,score\n"
                   f"p3,{rated[0]},ovl,6\n"
                   f"p3,deadbeef,ovl,3\n"
                   f"p3,{rated[0]},loudness,3\n"
                   f"p3,{rated[0]},rel,good\n"
                   f",{rated[0]},rel,3\n"
                   f"p1,{rated[0]},ovl,2\n")
    with pytest.raises(ManifestError) as err:
        import_ratings(mos_study, bad)
    text = str(err.value)
    for fragment in ("row 2: score 6 is outside the scale 1..5", "row 3: item 'deadbeef' is not a rated clip",
                     "row 4: question 'loudness'", "row 5: score 'good' is not a number", "row 6: missing rater",
                     "row 7: ext:p1 rated", "6 invalid row(s), nothing imported"):
        assert fragment in text, fragment
    with store.connect(mos_study / "ratings.sqlite") as conn:
        rows = store.all_answers(conn)
    assert sorted((r["rater"], r["question"], r["score"]) for r in rows) == [
        ("ext:p1", "ovl", 4.0), ("ext:p1", "rel", 3.5), ("ext:p2", "ovl", 2.0)]
    jsonl = tmp_path / "r.jsonl"
    jsonl.write_text(json.dumps({"rater": "p4", "item": rated[2], "question": "rel", "score": 5}) + "\n")
    assert main(["listen", "import", str(mos_study), str(jsonl)]) == 0


def test_mushra_import_score_and_report(listening_results, tmp_path, capsys):
    """MUSHRA ratings from an external tool: BS.1534-3 post-screening drops the rater who rates the
    hidden reference low; the report has the raw table and plots."""
    study_dir = tmp_path / "m"
    study = create_study(listening_results, "mushra", 3, 4, study_dir, seed=1)
    kind = {n: (study["conditions"][c["condition"]]["kind"] if c["condition"] is not None else "open")
            for n, c in study["clips"].items()}
    label = {n: study["conditions"][c["condition"]]["label"] for n, c in study["clips"].items()
             if c["condition"] is not None}
    true = {"hidden-reference": 97, "reference": 95, "noise": 15, "silence": 5}
    rng = np.random.default_rng(0)
    rows = ["rater,item,question,score"]
    for r, rater in enumerate(study["raters"]):
        for trial in rater["trials"]:
            for clip in trial["clips"]:
                if r == 3:  # careless: everything around the middle
                    score = rng.integers(30, 70)
                elif kind[clip] == "anchor":
                    score = 30 if "3.5" in label[clip] else 60
                else:
                    score = true.get(kind[clip], true.get(label[clip]))
                    score = int(np.clip(score + rng.integers(-3, 4), 0, 100))
                rows.append(f"listener{r},{clip},mushra,{score}")
    (tmp_path / "web.csv").write_text("\n".join(rows) + "\n")
    assert main(["listen", "import", str(study_dir), str(tmp_path / "web.csv")]) == 0
    assert main(["listen", "score", str(study_dir), "--bootstrap", "100", "--no-tracking"]) == 0
    out = capsys.readouterr().out
    assert "excluded ext:listener3: rated the hidden reference below 90 in 3 of 3" in out
    summary = json.loads((study_dir / "score.json").read_text())
    means = {c["label"]: c["summary"]["mean"] for c in summary["questions"]["mushra"]["conditions"]}
    assert means["hidden reference"] > 90 and means["noise"] < 25 and means["anchor 3.5 kHz low-pass"] == 30
    record = json.loads(next((study_dir / "records").glob("reference*+listening.json")).read_text())
    assert record["metrics"][0]["key"] == "mushra@listening" and record["metrics"][0]["n_raters"] == 3
    assert main(["listen", "report", str(study_dir)]) == 0
    report = study_dir / "report"
    table = list(csv.DictReader(open(report / "answers.csv")))
    assert len(table) == 4 * 3 * 6
    assert {r["excluded"] != "" for r in table if r["rater"] == "ext:listener3"} == {True}
    for name in ("per-rater-mushra.png", "per-item-mushra.png"):
        assert (report / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
