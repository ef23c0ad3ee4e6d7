"""`bench listen report`: the raw answers as a table and per-rater / per-item plots (PNG)."""
from __future__ import annotations

import csv
import io
from collections import defaultdict
from pathlib import Path

import numpy as np

from bench.core.cache import atomic_write_bytes
from bench.listen import store
from bench.listen.protocols import scale
from bench.listen.scoring import aggregate
from bench.listen.study import DB_FILE, load_study

RAW_COLUMNS = ("rater", "excluded", "trial", "clip", "role", "condition", "item", "question", "score",
               "plays", "source", "answered_at")


def _condition_label(study: dict, clip: dict) -> str:
    if clip["role"] == "attention":
        return "attention check (noise)"
    if clip["condition"] is None:
        return "open reference"
    return study["conditions"][clip["condition"]]["label"]


def write_report(study_dir: Path, out: Path) -> list[Path]:
    study = load_study(study_dir)
    conn = store.connect(Path(study_dir) / DB_FILE)
    try:
        answers, plays = store.all_answers(conn), store.play_counts(conn)
    finally:
        conn.close()
    out.mkdir(parents=True, exist_ok=True)
    excluded = aggregate(study, answers, n_resamples=2)["raters"]["excluded"] if answers else {}
    clips = study["clips"]

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(RAW_COLUMNS)
    for a in answers:
        clip = clips[a["clip"]]
        writer.writerow([a["rater"], excluded.get(a["rater"], ""), a["trial"], a["clip"], clip["role"],
                         _condition_label(study, clip), clip["item"], a["question"], a["score"],
                         plays.get((a["rater"], a["clip"]), 0), a["source"], a["answered_at"]])
    files = [out / "answers.csv"]
    atomic_write_bytes(files[0], buf.getvalue().encode())

    lo, hi = scale(study["protocol"])
    labels = [c["label"] for c in study["conditions"]]
    for q in study["protocol"]["questions"]:
        rows = [a for a in answers if a["question"] == q["id"] and clips[a["clip"]]["role"] == "rated"]
        if not rows:
            continue
        # Per rater: each condition's mean score given by that rater (excluded raters marked).
        raters = sorted({a["rater"] for a in rows})
        by = defaultdict(list)
        for a in rows:
            by[(a["rater"], clips[a["clip"]]["condition"])].append(a["score"])
        files.append(_dot_plot(out / f"per-rater-{q['id']}.png", raters, by, labels, (lo, hi), "o",
                               [f"{r}{' (excl.)' if r in excluded else ''}" for r in raters], 0.5,
                               f"mean {q['id']}", f"{q['id']}: per rater"))
        # Per item: each condition's mean over raters (kept raters only).
        items = sorted({clips[a["clip"]]["item"] for a in rows})
        by = defaultdict(list)
        for a in rows:
            if a["rater"] not in excluded:
                by[(clips[a["clip"]]["item"], clips[a["clip"]]["condition"])].append(a["score"])
        files.append(_dot_plot(out / f"per-item-{q['id']}.png", items, by, labels, (lo, hi), "s", items, 0.45,
                               f"mean {q['id']} (kept raters)", f"{q['id']}: per item"))
    return files


def _dot_plot(path: Path, keys: list, by: dict, labels: list[str], scale_range: tuple, marker: str,
              tick_labels: list[str], width_per_key: float, ylabel: str, title: str) -> Path:
    """One dot per (key, condition): the mean of its scores, conditions in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lo, hi = scale_range
    fig, ax = plt.subplots(figsize=(max(4.0, width_per_key * len(keys) + 2), 3.2))
    for c, label in enumerate(labels):
        xs = [k for k, key in enumerate(keys) if (key, c) in by]
        ax.plot(xs, [np.mean(by[(keys[k], c)]) for k in xs], marker, label=label)
    ax.set_xticks(range(len(keys)), tick_labels, rotation=60, ha="right", fontsize=7)
    ax.set_ylim(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
