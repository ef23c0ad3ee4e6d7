"""Markdown leaderboard from RunRecords: one row per cell, one column per metric key.

Arrows give each metric's direction, values carry their bootstrap CI, numbers from untrained
backbones say so in the column header, and notes under the table list protocols, backbone
checkpoints and the reference set, so the table stands on its own.
"""
from __future__ import annotations

_ARROW = {"lower": "↓", "higher": "↑"}
_AXES = ("checkpoint", "seed", "steps", "guidance", "sample_rate")


def _fmt(value: float, digits: int = 3) -> str:
    return f"{value:.{digits}f}"


def _escape(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _columns(records: list[dict]) -> list[dict]:
    seen: dict[str, dict] = {}
    for record in records:
        for result in record["metrics"]:
            seen.setdefault(result["key"], result)
    return list(seen.values())


def render(records: list[dict], title: str | None = None) -> str:
    if not records:
        return (f"# {title}\n\n" if title else "") + "_No results._\n"
    metrics = _columns(records)
    varying = [a for a in _AXES if len({str(r["cell"].get(a)) for r in records}) > 1]
    header = ["generator"] + varying + [f"{m['key']} {_ARROW[m['direction']]}" for m in metrics]
    lines = [f"# {title}", ""] if title else []
    lines += ["| " + " | ".join(_escape(h) for h in header) + " |",
              "|" + "|".join([":--"] * (1 + len(varying)) + ["--:"] * len(metrics)) + "|"]
    for record in records:
        by_key = {r["key"]: r for r in record["metrics"]}
        row = [record["cell"]["label"]] + [record["cell"].get(a) for a in varying]
        for m in metrics:
            result = by_key.get(m["key"])
            if result is None:
                row.append("–")
            elif result.get("ci"):
                row.append(f"{_fmt(result['value'])} [{_fmt(result['ci']['low'])}, {_fmt(result['ci']['high'])}]")
            else:
                row.append(_fmt(result["value"]))
        lines.append("| " + " | ".join(_escape("–" if v is None else v) for v in row) + " |")
    lines += ["", *_notes(records, metrics)]
    return "\n".join(lines) + "\n"


def _notes(records: list[dict], metrics: list[dict]) -> list[str]:
    ref = records[0]["reference"]
    notes = [f"Reference set: {ref['name']} ({ref['kind']}, {ref['n_clips']} clips, "
             f"fingerprint {ref['fingerprint'][:12]})."]
    levels = {m["ci"]["level"] for m in metrics if m.get("ci")}
    if levels:
        notes.append(f"Brackets: {', '.join(f'{lv:.0%}' for lv in sorted(levels))} bootstrap "
                     "intervals over clips (bias-shifted percentile; see each record).")
    for m in metrics:
        b = m["backbone"]
        weights = (f"**UNTRAINED** {b['backbone']} (seeded random weights, seed {b['seed']}): "
                   "not comparable to published numbers"
                   if m["untrained"] else f"{b['backbone']} `{b['file']}` sha256 `{b['sha256'][:16]}…`")
        notes.append(f"- `{m['key']}` (v{m['metric_version']}; {m['lineage']}): protocol "
                     f"{m['protocol']['id']} v{m['protocol']['version']}, {weights}.")
    return notes
