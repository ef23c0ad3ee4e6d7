"""A short Markdown summary of a `bench run` for CI job pages: gates, then deltas vs a baseline.

`bench run` writes it to RESULTS_DIR/ci-summary.md and appends it to $GITHUB_STEP_SUMMARY when that
variable is set (GitHub Actions shows the file on the job's page). Baseline cells are matched to
current ones by configuration (label, checkpoint file name, seed, steps, guidance, sample rate,
duration), not by path, so a baseline from another checkout still lines up; a metric whose protocol
or backbone differs from the baseline's is reported as not comparable instead of as a delta.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from bench.core.records import RunRecord
from leaderboards.markdown import escape_cell
from leaderboards.table import ARROWS, fmt_number, metric_display, metric_identity


def _cell_key(record: RunRecord) -> tuple:
    c = record.cell
    ckpt = Path(c["checkpoint"]).name if c.get("checkpoint") else None
    return (c["label"], ckpt, c.get("seed"), c.get("steps"), c.get("guidance"), c.get("sample_rate"),
            c.get("duration_s"))


def _cell_name(record: RunRecord) -> str:
    return re.sub(r"_[0-9a-f]{8}$", "", record.cell_id)


def _gates(gates) -> list[str]:
    lines = ["### Gates", "", "| result | gate | cell | value |", "|---|---|---|--:|"]
    for g in gates:
        value = "missing" if g.value is None else f"{g.value:.4g}"
        mark = " (untrained)" if g.untrained else ""
        status = "✅ PASS" if g.passed else "❌ FAIL"
        lines.append(f"| {status} | `{escape_cell(g.gate.text)}` | {escape_cell(g.label)} | {value}{mark} |")
    return lines


def _verdict(delta: float, direction: str | None, precision: int) -> str:
    if round(delta, precision) == 0:
        return "same"
    if direction not in ARROWS:
        return ""
    return "better" if (delta < 0) == (direction == "lower") else "worse"


def _deltas(records: list[RunRecord], baseline: list[RunRecord], source: str) -> list[str]:
    lines = [f"### Deltas vs baseline `{escape_cell(source)}`", ""]
    base_refs = {r.reference["fingerprint"] for r in baseline}
    if records and records[0].reference["fingerprint"] not in base_refs:
        lines += ["⚠️ The baseline was scored against a different reference set: deltas compare "
                  "different things.", ""]
    by_key = {_cell_key(r): r for r in baseline}
    rows, unmatched = [], []
    for record in records:
        base = by_key.get(_cell_key(record))
        if base is None:
            unmatched.append(_cell_name(record))
            continue
        base_results = {r["key"]: r for r in base.metrics}
        for result in record.metrics:
            arrow = ARROWS.get(result.get("direction"), "")
            name = f"{escape_cell(_cell_name(record))} | {escape_cell(result['key'])} {arrow}"
            old = base_results.get(result["key"])
            if old is None:
                rows.append(f"| {name} | – | – | – | not in baseline |")
                continue
            _, p = metric_display(result)
            if metric_identity(old) != metric_identity(result):
                rows.append(f"| {name} | {fmt_number(old['value'], p)} | {fmt_number(result['value'], p)} | – | "
                            "not comparable: protocol or backbone differs |")
                continue
            delta = result["value"] - old["value"]
            rel = f" ({delta / abs(old['value']):+.1%})" if old["value"] and round(delta, p) else ""
            sign = "+" if round(delta, p) >= 0 else ""
            rows.append(f"| {name} | {fmt_number(old['value'], p)} | {fmt_number(result['value'], p)} | "
                        f"{sign}{fmt_number(delta, p)}{rel} | {_verdict(delta, result.get('direction'), p)} |")
    if rows:
        lines += ["| cell | metric | baseline | current | Δ | |", "|---|---|--:|--:|--:|---|", *rows]
    else:
        lines.append("No cell of this run matches a baseline cell.")
    current = {_cell_key(r) for r in records}
    gone = [_cell_name(r) for r in baseline if _cell_key(r) not in current]
    if unmatched:
        lines += ["", f"New cells (not in the baseline): {', '.join(escape_cell(u) for u in unmatched)}."]
    if gone:
        lines += ["", f"Baseline cells not in this run: {', '.join(escape_cell(g) for g in gone)}."]
    return lines


def render(suite: str, outcome, baseline: list[RunRecord] | None = None, baseline_source: str = "") -> str:
    """`outcome`: a bench.runner.RunOutcome (records, gates, errors, tracking_errors, exit_code)."""
    failed = [g for g in outcome.gates if not g.passed]
    if outcome.errors:
        verdict = f"❌ {len(outcome.errors)} cell(s) could not be computed"
    elif failed:
        verdict = f"❌ {len(failed)} of {len(outcome.gates)} gate checks failed"
    else:
        verdict = f"✅ passed ({len(outcome.gates)} gate checks)" if outcome.gates else "✅ done (no gates)"
    n_metrics = len({r["key"] for rec in outcome.records for r in rec.metrics})
    lines = [f"## bench run `{escape_cell(suite)}`: {verdict}", "",
             f"{len(outcome.records)} cells, {n_metrics} metrics, exit code {outcome.exit_code}. "
             f"Records: `{outcome.results_dir / 'records'}`."]
    if any(rec.untrained for rec in outcome.records):
        lines.append("⚠️ Untrained backbone (seeded random weights) in some results: those numbers check the "
                     "pipeline and are not comparable to published ones.")
    if outcome.gates:
        lines += [""] + _gates(outcome.gates)
    if baseline is not None:
        lines += [""] + _deltas(outcome.records, baseline, baseline_source)
    problems = [f"cell failed: {e}" for e in outcome.errors] + [f"tracking: {e}" for e in outcome.tracking_errors]
    if problems:
        lines += ["", "### Errors", ""] + [f"- {escape_cell(p)}" for p in problems]
    return "\n".join(lines) + "\n"


def write(suite: str, outcome, baseline_path: str | Path | None = None) -> Path:
    """Write RESULTS_DIR/ci-summary.md (and append it to $GITHUB_STEP_SUMMARY if set); return its path."""
    baseline = None
    if baseline_path is not None:
        from leaderboards.sources import load_records

        baseline = load_records(baseline_path)
    text = render(suite, outcome, baseline, str(baseline_path or ""))
    path = Path(outcome.results_dir) / "ci-summary.md"
    path.write_text(text)
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if step_summary:
        with open(step_summary, "a") as f:
            f.write(text + "\n")
    return path
