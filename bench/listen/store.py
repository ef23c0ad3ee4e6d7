"""The study's SQLite database: raters (by token hash) and their answers, each written in one transaction.

An answer's key is (rater, clip, question): the first answer counts, a replayed or duplicated
submission changes nothing. Tokens are stored only as sha256 hashes; the links file holds the tokens.
"""
from __future__ import annotations

import hashlib
import sqlite3
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path

from bench.core.errors import BenchError

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS raters (
    rater_id TEXT PRIMARY KEY, token_sha256 TEXT UNIQUE, source TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS answers (
    rater_id TEXT NOT NULL REFERENCES raters(rater_id), trial_id TEXT NOT NULL, clip TEXT NOT NULL,
    question TEXT NOT NULL, score REAL NOT NULL, source TEXT NOT NULL, answered_at TEXT NOT NULL,
    PRIMARY KEY (rater_id, clip, question));
CREATE TABLE IF NOT EXISTS plays (
    rater_id TEXT NOT NULL, clip TEXT NOT NULL, played_at TEXT NOT NULL);
"""


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def connect(path: Path) -> sqlite3.Connection:
    if not Path(path).is_file():
        raise BenchError(f"{path}: no ratings database; create the study with `bench listen create`")
    conn = sqlite3.connect(str(path), timeout=30, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def create(path: Path, fingerprint: str, raters: list[tuple[str, str]]) -> None:
    """A new database for a study: its fingerprint and (rater id, token) pairs."""
    if Path(path).exists():
        raise BenchError(f"{path} exists; a study's database is never overwritten (choose another --out)")
    with closing(sqlite3.connect(str(path), isolation_level=None)) as conn:
        conn.executescript(SCHEMA)
        conn.execute("BEGIN")
        conn.execute("INSERT INTO meta VALUES ('study_fingerprint', ?)", (fingerprint,))
        conn.executemany("INSERT INTO raters VALUES (?, ?, 'web')", [(r, token_hash(t)) for r, t in raters])
        conn.execute("COMMIT")


def study_fingerprint(conn: sqlite3.Connection) -> str:
    return conn.execute("SELECT value FROM meta WHERE key = 'study_fingerprint'").fetchone()[0]


def rater_for_token(conn: sqlite3.Connection, token: str) -> str | None:
    row = conn.execute("SELECT rater_id FROM raters WHERE token_sha256 = ? AND source = 'web'",
                       (token_hash(token),)).fetchone()
    return row[0] if row else None


def answered_clips(conn: sqlite3.Connection, rater_id: str) -> set[tuple[str, str]]:
    return set(conn.execute("SELECT clip, question FROM answers WHERE rater_id = ?", (rater_id,)).fetchall())


def save_answers(conn: sqlite3.Connection, rater_id: str, trial_id: str, answers: list[tuple[str, str, float]],
                 source: str = "web") -> int:
    """Write (clip, question, score) answers of one trial in one transaction; return how many were new."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        new = insert_answers(conn, [(rater_id, trial_id, clip, q, s) for clip, q, s in answers], source)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return new


def insert_answers(conn: sqlite3.Connection, rows: list[tuple[str, str, str, str, float]], source: str) -> int:
    """(rater, trial, clip, question, score) rows, inside the caller's transaction; the first answer
    to (rater, clip, question) counts. Returns how many rows were new."""
    now = _now()
    before = conn.total_changes
    conn.executemany("INSERT OR IGNORE INTO answers VALUES (?, ?, ?, ?, ?, ?, ?)",
                     [(r, t, c, q, float(s), source, now) for r, t, c, q, s in rows])
    return conn.total_changes - before


def log_play(conn: sqlite3.Connection, rater_id: str, clip: str) -> None:
    conn.execute("INSERT INTO plays VALUES (?, ?, ?)", (rater_id, clip, _now()))


def add_imported_raters(conn: sqlite3.Connection, rater_ids: list[str], source: str) -> None:
    conn.executemany("INSERT OR IGNORE INTO raters VALUES (?, NULL, ?)", [(r, source) for r in rater_ids])


def all_answers(conn: sqlite3.Connection) -> list[dict]:
    rows = conn.execute("SELECT rater_id, trial_id, clip, question, score, source, answered_at FROM answers "
                        "ORDER BY rater_id, answered_at, clip, question").fetchall()
    keys = ("rater", "trial", "clip", "question", "score", "source", "answered_at")
    return [dict(zip(keys, row)) for row in rows]


def play_counts(conn: sqlite3.Connection) -> dict[tuple[str, str], int]:
    return {(r, c): n for r, c, n in
            conn.execute("SELECT rater_id, clip, COUNT(*) FROM plays GROUP BY rater_id, clip").fetchall()}
