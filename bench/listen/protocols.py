"""Listening-test protocols: built-in MOS (OVL, REL) and MUSHRA, or custom questions from a TOML file.

A protocol is data: its kind ("mos": one clip per page, 1..5 ACR radio buttons per question; "mushra":
one page per item with the open reference and every condition on 0..100 sliders), its questions, and
its screening rule. Custom protocol file:

    name = "my-mos"
    kind = "mos"
    attention_checks = 2            # noise clips every rater must rate within `attention_expect`
    attention_expect = [1, 2]
    attention_max_fail_fraction = 0.25
    [[questions]]
    id = "ovl"                      # -> metric id mos-ovl@listening
    text = "How good is the overall quality of this clip?"
    show_caption = false            # show the text prompt beside the clip
"""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

from bench.core.errors import ConfigError

ACR_LABELS = ["1 Bad", "2 Poor", "3 Fair", "4 Good", "5 Excellent"]

# AudioLDM 2 (Liu et al. 2023, human evaluation) asks for the overall quality (OVL) and the relevance to
# the text (REL); here on the 1-5 absolute category rating scale (ITU-T P.800).
BUILTIN = {
    "mos-ovl-rel": {
        "name": "mos-ovl-rel", "kind": "mos", "version": 1,
        "questions": [
            {"id": "ovl", "text": "Overall quality: how good does this clip sound?", "show_caption": False},
            {"id": "rel", "text": "Relevance to the text: how well does this clip match the description?",
             "show_caption": True}],
        "attention_checks": 2, "attention_expect": [1, 2], "attention_max_fail_fraction": 0.25,
    },
    "mos-ovl": {
        "name": "mos-ovl", "kind": "mos", "version": 1,
        "questions": [{"id": "ovl", "text": "Overall quality: how good does this clip sound?",
                       "show_caption": False}],
        "attention_checks": 2, "attention_expect": [1, 2], "attention_max_fail_fraction": 0.25,
    },
    # ITU-R BS.1534-3: open reference, hidden reference, low-range (3.5 kHz) and mid-range (7 kHz)
    # low-pass anchors, 0..100 continuous quality scale; assessor post-screening on reference and anchor.
    "mushra": {
        "name": "mushra", "kind": "mushra", "version": 1,
        "questions": [{"id": "mushra", "text": "Rate the basic audio quality of each sample against the "
                       "reference (0 bad ... 100 excellent).", "show_caption": True}],
        "anchors_hz": [3500, 7000], "attention_checks": 0,
    },
}

_KEYS = {"name", "kind", "version", "questions", "attention_checks", "attention_expect",
         "attention_max_fail_fraction", "anchors_hz"}
_QUESTION_KEYS = {"id", "text", "show_caption"}
SCALES = {"mos": (1, 5), "mushra": (0, 100)}


def scale(protocol: dict) -> tuple[int, int]:
    return SCALES[protocol["kind"]]


def metric_id(protocol: dict, question_id: str) -> str:
    """mos-ovl@listening, mos-rel@listening, mushra@listening."""
    if protocol["kind"] == "mushra" and question_id == "mushra":
        return "mushra@listening"
    return f"{protocol['kind']}-{question_id}@listening"


def load_protocol(spec: str) -> dict:
    """A built-in protocol by name, or a TOML file (validated: unknown keys and bad values are errors)."""
    if spec in BUILTIN:
        return validate(dict(BUILTIN[spec]), spec)
    path = Path(spec)
    if not path.is_file():
        raise ConfigError(f"--protocol {spec!r}: neither a built-in protocol ({', '.join(BUILTIN)}) nor a "
                          "TOML file")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from exc
    return validate(raw, str(path))


def validate(raw: dict, where: str) -> dict:
    unknown = set(raw) - _KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown protocol key(s) {', '.join(sorted(unknown))}; valid: "
                          f"{', '.join(sorted(_KEYS))}")
    kind = raw.get("kind")
    if kind not in SCALES:
        raise ConfigError(f"{where}: kind must be one of {', '.join(SCALES)}, got {kind!r}")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}: name must be a non-empty string")
    questions = raw.get("questions")
    if not isinstance(questions, list) or not questions:
        raise ConfigError(f"{where}: give at least one [[questions]] table")
    seen = set()
    for n, q in enumerate(questions, 1):
        if not isinstance(q, dict) or set(q) - _QUESTION_KEYS:
            raise ConfigError(f"{where}: questions[{n}] may only have {', '.join(sorted(_QUESTION_KEYS))}")
        if not isinstance(q.get("id"), str) or not re.fullmatch(r"[a-z][a-z0-9_]{0,31}", q["id"]):
            raise ConfigError(f"{where}: questions[{n}].id must be lowercase letters, digits or _ "
                              f"(it becomes the metric id), got {q.get('id')!r}")
        if q["id"] in seen:
            raise ConfigError(f"{where}: questions[{n}].id {q['id']!r} appears twice")
        seen.add(q["id"])
        if not isinstance(q.get("text"), str) or not q["text"].strip():
            raise ConfigError(f"{where}: questions[{n}].text must be a non-empty string")
        q.setdefault("show_caption", False)
        if not isinstance(q["show_caption"], bool):
            raise ConfigError(f"{where}: questions[{n}].show_caption must be true or false")
    if kind == "mushra" and len(questions) != 1:
        raise ConfigError(f"{where}: a MUSHRA protocol has exactly one question (the slider page)")
    checks = raw.setdefault("attention_checks", 2 if kind == "mos" else 0)
    if isinstance(checks, bool) or not isinstance(checks, int) or checks < 0:
        raise ConfigError(f"{where}: attention_checks must be an integer >= 0, got {checks!r}")
    if kind == "mushra" and checks:
        raise ConfigError(f"{where}: MUSHRA screens raters by the hidden reference and anchor "
                          "(BS.1534-3); attention_checks must be 0")
    lo, hi = SCALES[kind]
    if kind == "mos":
        expect = raw.setdefault("attention_expect", [1, 2])
        if (not isinstance(expect, list) or len(expect) != 2 or not all(isinstance(v, int) for v in expect)
                or not lo <= expect[0] <= expect[1] <= hi):
            raise ConfigError(f"{where}: attention_expect must be [low, high] within {lo}..{hi}, got {expect!r}")
        frac = raw.setdefault("attention_max_fail_fraction", 0.25)
        if not isinstance(frac, (int, float)) or isinstance(frac, bool) or not 0 <= frac < 1:
            raise ConfigError(f"{where}: attention_max_fail_fraction must be in [0, 1), got {frac!r}")
    else:
        anchors = raw.setdefault("anchors_hz", [3500, 7000])
        if (not isinstance(anchors, list) or len(anchors) != 2
                or not all(isinstance(v, int) and v > 0 for v in anchors) or anchors[0] >= anchors[1]):
            raise ConfigError(f"{where}: anchors_hz must be [low-range, mid-range] cutoffs in Hz, got {anchors!r}")
    raw.setdefault("version", 1)
    return raw
