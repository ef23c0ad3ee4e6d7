"""`bench listen score`: screen raters, aggregate per condition and question, write RunRecords.

Per question, every condition's mean comes with a two-way bootstrap interval over raters and items
(metrics.listening.crossed_bootstrap; the same resample for every condition). Screening before that:
MOS raters who fail more than the protocol's fraction of attention checks, MUSHRA raters failing
BS.1534-3 post-screening; who was excluded and why goes into `score.json` and every record. Agreement:
Krippendorff's alpha (interval) over the clips rated by two or more kept raters.

Each suite cell in the study gets a RunRecord (`STUDY/records/CELL+listening.json`) with metrics
`mos-ovl@listening`, `mos-rel@listening` or `mushra@listening`, carrying the cell's configuration and
reference set from its suite record, so `bench leaderboard` puts them in the same row as FAD & co.
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from bench.core.cache import atomic_write_json
from bench.core.errors import BenchError
from bench.core.cache import stable_hash
from bench.core.records import SCHEMA as RECORD_SCHEMA
from bench.core.records import RunRecord, write_record
from bench.core.versions import git_revision, library_versions
from bench.listen import store
from bench.listen.protocols import metric_id, scale
from bench.listen.study import DB_FILE, load_study
from metrics.listening import (attention_screening, crossed_bootstrap, krippendorff_alpha,
                               mushra_post_screening)

RECORDS_DIR = "records"
LINEAGE = {"mos": "ITU-T P.800 ACR 1-5; OVL/REL questions as in AudioLDM 2's human evaluation",
           "mushra": "ITU-R BS.1534-3 MUSHRA (hidden reference, 3.5 / 7 kHz anchors, post-screening)"}


def listening_cell_id(cell_id: str) -> str:
    return f"{cell_id}+listening"


def _screen(study: dict, answers: list[dict]) -> tuple[dict[str, str], set[str]]:
    """(excluded rater -> reason, raters the screening could check at all)."""
    protocol, clips, conditions = study["protocol"], study["clips"], study["conditions"]
    if protocol["kind"] == "mos":
        lo, hi = protocol["attention_expect"]
        checks = defaultdict(list)
        for a in answers:
            if clips[a["clip"]]["role"] == "attention":
                checks[a["rater"]].append((a["score"], lo, hi))
        return attention_screening(dict(checks), protocol["attention_max_fail_fraction"]), set(checks)
    hidden = next(k for k, c in enumerate(conditions) if c["kind"] == "hidden-reference")
    mid = max((k for k, c in enumerate(conditions) if c["kind"] == "anchor"),
              key=lambda k: conditions[k]["cutoff_hz"])
    reference, anchor = defaultdict(list), defaultdict(list)
    for a in answers:
        condition = clips[a["clip"]]["condition"]
        if condition == hidden:
            reference[a["rater"]].append(a["score"])
        elif condition == mid:
            anchor[a["rater"]].append(a["score"])
    return mushra_post_screening(dict(reference), dict(anchor)), set(reference)


def aggregate(study: dict, answers: list[dict], n_resamples: int = 1000, seed: int = 0,
              level: float = 0.95) -> dict:
    """Screening, per-question condition summaries and agreement, as a JSON-ready dict."""
    protocol, clips, conditions = study["protocol"], study["clips"], study["conditions"]
    unknown = sorted({a["clip"] for a in answers} - set(clips))
    if unknown:
        raise BenchError(f"ratings database holds answers for clips not in study.json (e.g. {unknown[0]}); "
                         "it belongs to another study")
    excluded, screened = _screen(study, answers)
    kept = [a for a in answers if a["rater"] not in excluded and clips[a["clip"]]["role"] == "rated"]
    raters = sorted({a["rater"] for a in kept})
    items = sorted({clips[a["clip"]]["item"] for a in kept})
    r_index, i_index = {r: k for k, r in enumerate(raters)}, {i: k for k, i in enumerate(items)}
    questions = {}
    for q in protocol["questions"]:
        rows = [a for a in kept if a["question"] == q["id"]]
        summaries = [None] * len(conditions)
        if rows:
            summaries = crossed_bootstrap([r_index[a["rater"]] for a in rows],
                                          [i_index[clips[a["clip"]]["item"]] for a in rows],
                                          [clips[a["clip"]]["condition"] for a in rows],
                                          [a["score"] for a in rows], len(conditions), n_resamples, seed, level)
        by_clip = defaultdict(list)
        for a in rows:
            by_clip[a["clip"]].append(a["score"])
        alpha = krippendorff_alpha(list(by_clip.values()), "interval")
        questions[q["id"]] = {
            "metric": metric_id(protocol, q["id"]), "text": q["text"],
            "conditions": [{"label": c["label"], "kind": c["kind"], **({"cell_id": c["cell_id"]} if "cell_id" in c
                                                                        else {}),
                            "summary": s.to_dict() if s else None} for c, s in zip(conditions, summaries)],
            "agreement": {"krippendorff_alpha_interval": None if np.isnan(alpha) else round(alpha, 6),
                          "clips_with_two_or_more_ratings": sum(len(v) >= 2 for v in by_clip.values())}}
    all_raters = sorted({a["rater"] for a in answers})
    return {"study_fingerprint": study["fingerprint"], "protocol": protocol["name"],
            "raters": {"answered": len(all_raters), "kept": len(raters),
                       "excluded": {r: excluded[r] for r in sorted(excluded)},
                       # e.g. imported raters whose tool played no attention checks / hidden reference
                       "not_screened": sorted(set(all_raters) - screened)},
            "n_answers": len(answers), "n_ratings_kept": len(kept), "bootstrap": {"n_resamples": n_resamples,
                                                                                    "seed": seed, "level": level},
            "questions": questions}


def _result(study: dict, summary: dict, question: dict, condition: dict) -> dict:
    protocol = study["protocol"]
    s = condition["summary"]
    lo, hi = scale(protocol)
    return {
        "key": question["metric"], "metric": question["metric"], "metric_version": 1, "direction": "higher",
        "kind": "listening", "lineage": LINEAGE[protocol["kind"]], "unit": "", "untrained": False,
        "precision": 2 if protocol["kind"] == "mos" else 1,
        "value": s["mean"],
        "ci": {"low": s["low"], "high": s["high"], "level": s["level"], "n_resamples": s["n_resamples"],
               "seed": s["seed"], "method": s["method"], "over": "raters and items"},
        "n_raters": s["n_raters"], "n_ratings": s["n_ratings"], "n_items": s["n_items"],
        "protocol": {"id": protocol["name"], "version": protocol["version"], "kind": protocol["kind"],
                     "question": question["text"], "scale": [lo, hi]},
        # Who "measured": the study's raters; the study fingerprint plays the checkpoint hash's part.
        "backbone": {"backbone": "human raters", "weights": "human", "file": "study.json",
                     "sha256": study["fingerprint"]},
        "details": {"excluded_raters": summary["raters"]["excluded"], "agreement": question["agreement"]},
    }


def score_study(study_dir: Path, n_resamples: int = 1000, seed: int = 0,
                level: float = 0.95) -> tuple[dict, list[RunRecord]]:
    """Aggregate the study's answers; write score.json and one record per suite cell; return both."""
    study_dir = Path(study_dir)
    study = load_study(study_dir)
    conn = store.connect(study_dir / DB_FILE)
    try:
        if store.study_fingerprint(conn) != study["fingerprint"]:
            raise BenchError(f"{study_dir / DB_FILE} belongs to another study (fingerprint differs)")
        answers = store.all_answers(conn)
    finally:
        conn.close()
    if not answers:
        raise BenchError(f"{study_dir}: no answers yet; serve the study (`bench listen serve`) or import "
                         "ratings (`bench listen import`)")
    summary = aggregate(study, answers, n_resamples, seed, level)
    atomic_write_json(study_dir / "score.json", summary)
    records = []
    for k, condition in enumerate(study["conditions"]):
        if condition["kind"] != "system":
            continue
        source = study["source"]["records"][condition["cell_id"]]
        results = [_result(study, summary, q, q["conditions"][k]) for q in summary["questions"].values()
                   if q["conditions"][k]["summary"] is not None]
        if not results:
            continue
        record = RunRecord(
            schema=RECORD_SCHEMA, suite=source["suite"], cell_id=listening_cell_id(condition["cell_id"]),
            # what the numbers depend on: the study, every answer, the bootstrap settings
            cell_hash=stable_hash({"study": study["fingerprint"], "answers": answers,
                                   "bootstrap": summary["bootstrap"]}),
            cell=source["cell"], generation=source["generation"], reference=source["reference"],
            metrics=tuple(results), untrained=False, git_revision=git_revision(), versions=library_versions(),
            timing={},
            listening={"rates_cell": condition["cell_id"], "study_fingerprint": study["fingerprint"],
                       "protocol": study["protocol"], "n_raters": summary["raters"]["kept"],
                       "n_ratings": summary["n_ratings_kept"], "excluded_raters": summary["raters"]["excluded"],
                       "not_screened_raters": summary["raters"]["not_screened"]})
        write_record(study_dir / RECORDS_DIR / f"{record.cell_id}.json", record)
        records.append(record)
    return summary, records


def tracking_target(study: dict, uri: str | None, experiment: str | None) -> tuple[str, str]:
    """Default: where `bench run` logged the suite's cells (their sidecar), else its sqlite store."""
    from bench.core.mlflow_store import results_store_uri
    from bench.sync import sidecar_path

    results_dir = Path(study["source"]["results_dir"])
    logged = {}
    for cell_id in study["source"]["records"]:
        try:
            logged = json.loads(sidecar_path(results_dir, cell_id).read_text())
            break
        except (OSError, ValueError):
            continue
    suite_name = (study["source"].get("suite") or {}).get("name") or "listening"
    return (uri or logged.get("uri") or results_store_uri(results_dir),
            experiment or logged.get("experiment") or suite_name)


def log_records(study_dir: Path, records: list[RunRecord], uri: str | None = None, experiment: str | None = None,
                log=print) -> list[str]:
    """Log each record once to MLflow (bench.sync's idempotent path); return the errors (records stay on disk,
    marked unsynced: push them later with `bench sync STUDY`)."""
    from bench.sync import track
    from bench.tracking import TrackingError

    uri, experiment = tracking_target(load_study(study_dir), uri, experiment)
    errors = []
    for record in records:
        try:
            run_id = track(record, uri, experiment, Path(study_dir))
            log(f"logged {record.cell_id} -> {uri} (experiment {experiment}, run {run_id})")
        except TrackingError as exc:
            errors.append(f"{exc}; push later with `bench sync {study_dir}`")
            break
    return errors
