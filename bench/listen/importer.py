"""`bench listen import`: ratings collected elsewhere (webMUSHRA, Prolific, a spreadsheet) into a study.

A CSV (header row) or JSONL file with the fields `rater`, `item`, `question`, `score`: `item` is the
study's clip name (the audio file's stem, e.g. `3f9c...` or `audio/3f9c....wav`, as the external tool
played it), `question` a protocol question id (`ovl`, `rel`, `mushra`), `score` a number on the
protocol's scale. Every row is validated and all problems are reported together, naming the row; nothing
is written unless the whole file is valid. External raters are stored as `ext:NAME`. A row repeating an
answer already in the file or the database with the same score counts once; a different score for the
same (rater, item, question) is an error.
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from bench.core.errors import ManifestError
from bench.listen import store
from bench.listen.protocols import scale
from bench.listen.study import DB_FILE, load_study

FIELDS = ("rater", "item", "question", "score")
MAX_LISTED = 20


def _rows(path: Path):
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(text.splitlines())
        missing = [f for f in FIELDS if f not in (reader.fieldnames or [])]
        if missing:
            raise ManifestError(f"{path}: header lacks column(s) {', '.join(missing)}; need {', '.join(FIELDS)}")
        for n, row in enumerate(reader, start=2):
            yield n, row
    elif path.suffix.lower() in (".jsonl", ".json-lines"):
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise ManifestError(f"{path} row {n}: not valid JSON ({exc})") from exc
            yield n, row
    else:
        raise ManifestError(f"{path}: give a .csv or .jsonl file of {', '.join(FIELDS)}")


def import_ratings(study_dir: Path, path: Path) -> dict:
    study_dir, path = Path(study_dir), Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: no such ratings file")
    study = load_study(study_dir)
    lo, hi = scale(study["protocol"])
    questions = {q["id"] for q in study["protocol"]["questions"]}
    rateable = {name for name, c in study["clips"].items() if c["role"] in ("rated", "attention")}
    errors, answers, repeated = [], {}, 0
    for n, row in _rows(path):
        where = f"{path} row {n}"
        if not isinstance(row, dict):
            errors.append(f"{where}: expected an object with {', '.join(FIELDS)}")
            continue
        missing = [f for f in FIELDS if row.get(f) in (None, "")]
        if missing:
            errors.append(f"{where}: missing {', '.join(missing)}")
            continue
        rater, question = str(row["rater"]).strip(), str(row["question"]).strip().lower()
        item = Path(str(row["item"]).strip()).name.removesuffix(".wav")
        if item not in rateable:
            errors.append(f"{where}: item {row['item']!r} is not a rated clip of this study (use the audio "
                          "file's name as the external tool played it)")
            continue
        if question not in questions:
            errors.append(f"{where}: question {row['question']!r} is not one of {', '.join(sorted(questions))}")
            continue
        try:
            score = float(row["score"])
        except (TypeError, ValueError):
            errors.append(f"{where}: score {row['score']!r} is not a number")
            continue
        if not math.isfinite(score) or not lo <= score <= hi:
            errors.append(f"{where}: score {score:g} is outside the scale {lo}..{hi}")
            continue
        key = (f"ext:{rater}", item, question)
        if key in answers:
            if answers[key][0] != score:
                errors.append(f"{where}: rater {rater!r} already rated {item} ({question}) "
                              f"{answers[key][0]:g} in row {answers[key][1]}; conflicting answers")
            else:
                repeated += 1
            continue
        answers[key] = (score, n)
    if not answers and not errors:
        errors.append(f"{path}: no ratings in the file")
    conn = store.connect(study_dir / DB_FILE)
    try:
        existing = {(a["rater"], a["clip"], a["question"]): a["score"] for a in store.all_answers(conn)}
        for key, (score, n) in answers.items():
            if key in existing and existing[key] != score:
                errors.append(f"{path} row {n}: {key[0]} rated {key[1]} ({key[2]}) {existing[key]:g} "
                              "before (in the database); conflicting answers")
        if errors:
            more = f"\n  ... and {len(errors) - MAX_LISTED} more" if len(errors) > MAX_LISTED else ""
            raise ManifestError(f"{path}: {len(errors)} invalid row(s), nothing imported:\n  "
                                + "\n  ".join(errors[:MAX_LISTED]) + more)
        new_keys = [k for k in answers if k not in existing]
        conn.execute("BEGIN IMMEDIATE")
        try:
            store.add_imported_raters(conn, sorted({k[0] for k in new_keys}), f"import:{path.name}")
            store.insert_answers(conn, [(k[0], "import", k[1], k[2], answers[k][0]) for k in new_keys],
                                 f"import:{path.name}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    finally:
        conn.close()
    return {"imported": len(new_keys), "already_present": len(answers) - len(new_keys),
            "repeated_in_file": repeated, "raters": len({k[0] for k in answers})}
