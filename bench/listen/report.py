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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
        fig, ax = plt.subplots(figsize=(max(4.0, 0.5 * len(raters) + 2), 3.2))
        for c, label in enumerate(labels):
            xs = [k for k, r in enumerate(raters) if (r, c) in by]
            ax.plot(xs, [np.mean(by[(raters[k], c)]) for k in xs], "o", label=label)
        ax.set_xticks(range(len(raters)), [f"{r}{' (excl.)' if r in excluded else ''}" for r in raters],
                      rotation=60, ha="right", fontsize=7)
        ax.set_ylim(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))
        ax.set_ylabel(f"mean {q['id']}")
        ax.set_title(f"{q['id']}: per rater", fontsize=9)
        ax.legend(fontsize=6, loc="best")
        fig.tight_layout()
        files.append(out / f"per-rater-{q['id']}.png")
        fig.savefig(files[-1], dpi=120)
        plt.close(fig)
        # Per item: each condition's mean over raters (kept raters only).
        items = sorted({clips[a["clip"]]["item"] for a in rows})
        by = defaultdict(list)
        for a in rows:
            if a["rater"] not in excluded:
                by[(clips[a["clip"]]["item"], clips[a["clip"]]["condition"])].append(a["score"])
        fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * len(items) + 2), 3.2))
        for c, label in enumerate(labels):
            xs = [k for k, i in enumerate(items) if (i, c) in by]
            ax.plot(xs, [np.mean(by[(items[k], c)]) for k in xs], "s", label=label)
        ax.set_xticks(range(len(items)), items, rotation=60, ha="right", fontsize=7)
        ax.set_ylim(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))
        ax.set_ylabel(f"mean {q['id']} (kept raters)")
        ax.set_title(f"{q['id']}: per item", fontsize=9)
        ax.legend(fontsize=6, loc="best")
        fig.tight_layout()
        files.append(out / f"per-item-{q['id']}.png")
        fig.savefig(files[-1], dpi=120)
        plt.close(fig)
    return files
