"""Markdown leaderboard, rendered from the table model (leaderboards/table.py).

Arrows give each metric's direction, values carry their interval, the best value of a column is bold
and the second italic, numbers from untrained backbones say so in the column header, and notes under
the table list protocols, backbone checkpoints and the reference set, so the table stands on its own.
"""
from __future__ import annotations

from bench.core.records import RunRecord
from leaderboards.table import (DEGENERATE_NOTE, INTERVAL_NOTE, Column, Row, Table, build_table, field_text,
                                 fmt_number)


def escape_cell(text) -> str:
    """Text safe inside a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _header(col: Column) -> str:
    if col.kind == "field":
        return "generator" if col.key == "label" else col.key
    unit = f" ({col.unit})" if col.unit else ""
    return f"{col.title}{unit} {col.arrow}".rstrip()


def _cell(col: Column, row: Row) -> str:
    if col.kind == "field":
        return field_text(col.key, row.fields[col.key], raw=True)
    v = row.values.get(col.key)
    if v is None:
        return "–"
    text = fmt_number(v.value, col.precision)
    text = {1: f"**{text}**", 2: f"_{text}_"}.get(v.rank, text)
    if v.degenerate:
        text += " (degenerate)"
    elif v.has_ci:
        text += f" [{fmt_number(v.low, col.precision)}, {fmt_number(v.high, col.precision)}]"
    return text


def _grid(table: Table, rows: list[Row]) -> list[str]:
    columns = [c for c in table.columns if c.key != table.section_field or c.kind != "field"]
    header = [_header(c) for c in columns] + (["n"] if table.aggregated else [])
    align = [":--" if c.kind == "field" else "--:" for c in columns] + (["--:"] if table.aggregated else [])
    lines = ["| " + " | ".join(escape_cell(h) for h in header) + " |", "|" + "|".join(align) + "|"]
    for row in rows:
        cells = [_cell(c, row) for c in columns] + ([str(row.n)] if table.aggregated else [])
        lines.append("| " + " | ".join(escape_cell(c) for c in cells) + " |")
    return lines


def render_table(table: Table) -> str:
    lines = [f"# {table.title}", ""] if table.title else []
    if not table.rows:
        return "\n".join(lines + ["_No results._"]) + "\n"
    if table.section_field:
        for section in table.sections:
            lines += [f"## {escape_cell(section)}", ""]
            lines += _grid(table, [r for r in table.rows if r.section == section]) + [""]
    else:
        lines += _grid(table, table.rows) + [""]
    lines += _notes(table)
    return "\n".join(lines) + "\n"


def render(records: list[RunRecord], title: str | None = None, **options) -> str:
    """Records -> Markdown. Without options: one row per cell and no timing columns, so the file that
    `bench run` writes is identical for identical runs."""
    options.setdefault("info", [])
    return render_table(build_table(records, title=title, **options))


def _notes(table: Table) -> list[str]:
    ref = table.references[0]
    notes = [f"Reference set: {ref['name']} ({ref['kind']}, {ref['n_clips']} clips, "
             f"fingerprint {ref['fingerprint'][:12]})."]
    if any(v.rank for r in table.rows for v in r.values.values()):
        notes.append("Bold: best in its column; italic: second (compared at the printed precision).")
    levels = table.ci_levels("bootstrap")
    if levels:
        notes.append(f"Brackets: {', '.join(f'{lv:.0%}' for lv in levels)} {INTERVAL_NOTE} (each column's "
                     "note says what it covers).")
    if table.degenerate:
        notes.append(f"(degenerate): {DEGENERATE_NOTE}.")
    listening = table.ci_levels("raters-items")
    if listening:
        notes.append(f"Listening tests: {', '.join(f'{lv:.0%}' for lv in listening)} two-way bootstrap intervals "
                     "over raters and items (see each record).")
    seed_levels = table.ci_levels("seeds")
    if seed_levels:
        notes.append(f"Rows with n > 1: mean over n cells (seeds), bracketed by a "
                     f"{', '.join(f'{lv:.0%}' for lv in seed_levels)} Student-t interval over them.")
    checkpoints = [c for c in table.checkpoints if c["checkpoint"]]
    for c in checkpoints:
        sha = f" sha256 `{c['sha256'][:16]}…`" if c["sha256"] else ""
        notes.append(f"- {escape_cell(c['label'])}: checkpoint `{c['checkpoint']}`{sha}")
    for col in table.metric_columns:
        p, b = col.provenance, col.provenance["backbone_card"]
        weights = (f"**UNTRAINED** {b.get('backbone')} (seeded random weights, seed {b.get('seed')}): "
                   "not comparable to published numbers" if col.untrained else
                   p["backbone"] if b.get("weights") == "human" else
                   f"{b.get('backbone')} `{b.get('file')}` sha256 `{(b.get('sha256') or 'unknown')[:16]}…`"
                   + (" (trained here with `bench train-evaluator`)" if b.get("weights") == "trained" else "")
                   + (" **LOCAL UNVERIFIED** checkpoint (its sha256 does not match a published one)"
                      if col.unverified else ""))
        notes.append(f"- `{col.key}` (v{p['version']}; {p['lineage']}): protocol {p['protocol']}, {weights}."
                     + (f" Interval covers {col.ci_covers}." if col.ci_covers else "")
                     + (f" Noise floor: {col.floor_text}." if col.floor_text else ""))
    return notes
