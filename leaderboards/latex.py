"""Paper-ready LaTeX leaderboard (booktabs), rendered from the table model.

Compiles in a plain `article` with `\\usepackage{booktabs}` and `\\usepackage{graphicx}` (the table is
scaled down to the text width only when it would not fit). Arrows give direction,
the best value per metric column is bold and the second underlined (ties share), values carry their
interval as `mean ± half-width` (asymmetric intervals as `mean^{+a}_{-b}`) or as a subscript, every
column has one number of decimals, untrained numbers carry a dagger explained in the caption, columns
with one value in every row (sample rate, duration) are said once in the caption, and a footnote-size
note under the table lists the reference set, protocols, backbone checkpoints and generator checkpoints.
Tables mixing seed-averaged rows (Student-t over cells) and single cells (bootstrap over clips) say which
is which in an Interval column.
Every piece of text is escaped: model names with _ & % # $ are common.
"""
from __future__ import annotations

import re
import unicodedata

from leaderboards.table import (DEGENERATE_NOTE, INTERVAL_NOTE, Column, Row, Table, constant_fields, field_text,
                                 fmt_number, interval_label)

CI_STYLES = ("pm", "sub", "none")
_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
            "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
            "<": r"\textless{}", ">": r"\textgreater{}", "|": r"\textbar{}",
            # a row starting with [ or * would be read as an argument of the previous row's \\
            "[": "{[}", "]": "{]}", "*": "{*}",
            "\n": " ", "\r": " ", "\t": " ",
            "–": "--", "—": "---", "…": r"\ldots{}", "×": r"$\times$", "÷": r"$\div$", "±": r"$\pm$",
            "µ": r"$\mu$", "μ": r"$\mu$", "→": r"$\rightarrow$", "↓": r"$\downarrow$", "↑": r"$\uparrow$",
            "“": "``", "”": "''", "‘": "`", "’": "'"}
_ARROWS = {"lower": r"$\downarrow$", "higher": r"$\uparrow$"}


def escape(text) -> str:
    """Text -> LaTeX that prints it literally under pdflatex's default (utf8, OT1) setup.

    Accented Latin-1 letters pass through (the utf8 input encoding sets them); other characters become their
    ASCII decomposition (ő -> o) or '?', because an unset Unicode character stops pdflatex."""
    out = []
    text = str(text)
    for i, ch in enumerate(text):
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ch == "-":
            out.append("-{}" if text[i + 1:i + 2] == "-" else "-")  # no -- / --- ligatures in names
        elif ch.isascii():
            out.append(ch)
        elif "\u00c0" <= ch <= "\u00ff" and (ch in "ßæøÆØ" or unicodedata.normalize("NFKD", ch)[0].isascii()):
            out.append(ch)  # accented Latin letters: OT1 builds them from accents
        else:
            ascii_ = unicodedata.normalize("NFKD", ch).encode("ascii", "ignore").decode()
            out.append(escape(ascii_) if ascii_ else "?")
    return "".join(out)


def _number(v, col: Column, ci: str) -> str:
    p = col.precision
    main = fmt_number(v.value, p)
    main = {1: rf"\mathbf{{{main}}}", 2: rf"\underline{{{main}}}"}.get(v.rank, main)
    if v.degenerate:
        return f"${main}^\\ddagger$"
    if ci == "none" or not v.has_ci:
        return f"${main}$"
    if ci == "sub":
        return rf"${main}_{{[{fmt_number(v.low, p)},\,{fmt_number(v.high, p)}]}}$"
    above, below = round(v.high - v.value, p) + 0.0, round(v.value - v.low, p) + 0.0
    if above == below:
        return rf"${main} \pm {fmt_number(above, p)}$"
    return rf"${main}^{{+{fmt_number(above, p)}}}_{{-{fmt_number(below, p)}}}$"


def _header(col: Column) -> str:
    unit = f" ({escape(col.unit)})" if col.unit else ""
    if col.kind != "metric":
        return escape(col.title) + unit
    name, at, preset = col.title.replace("[untrained]", "").replace("[unverified]", "").partition("@")
    dagger = r"$^\dagger$" if col.untrained else r"$^\S$" if col.unverified else ""
    arrow = f" {_ARROWS[col.direction]}" if col.direction in _ARROWS else ""
    # name over @preset: two short lines keep metric columns narrow
    return (rf"\begin{{tabular}}[b]{{@{{}}c@{{}}}}{escape(name)}\\{escape(at + preset)}{dagger}{unit}{arrow}"
            r"\end{tabular}")


def _cell(col: Column, row: Row, ci: str) -> str:
    if col.kind == "field":
        return escape(field_text(col.key, row.fields[col.key]))
    v = row.values.get(col.key)
    return "--" if v is None else _number(v, col, ci)


def _constants_text(constants: dict) -> str:
    parts = {"sample_rate": lambda v: f"{v / 1000:g} kHz", "duration_s": lambda v: f"{v:g} s clips"}
    return ", ".join(parts[k](v) for k, v in constants.items())


def _caption(table: Table, ci: str, caption: str | None, constants: dict) -> str:
    parts = [escape(caption or table.title or "Leaderboard").rstrip(".") + "."]
    if constants:
        parts.append(f"All rows: {escape(_constants_text(constants))}.")
    if ci != "none":
        levels = "/".join(f"{lv:.0%}" for lv in table.ci_levels("bootstrap")).replace("%", r"\%")
        seeds = "/".join(f"{lv:.0%}" for lv in table.ci_levels("seeds")).replace("%", r"\%")
        what = (r"Values: mean $\pm$ half-width of the interval (asymmetric ones as "
                r"$^{+\mathrm{up}}_{-\mathrm{down}}$)." if ci == "pm" else "Subscripts: intervals.")
        if levels or seeds or table.ci_levels("raters-items"):
            parts.append(what)
        if table.aggregated:  # both kinds may share a column: each row says which it has
            kinds = ([f"clips = {levels} bootstrap over the clips of one cell"] if levels else []) + (
                [f"$n$ cells = mean over $n$ cells (seeds) with a {seeds} Student-t interval"] if seeds else [])
            parts.append("Interval column: " + "; ".join(kinds) + ".")
        elif levels:
            parts.append(f"Intervals: {levels} {escape(INTERVAL_NOTE)}.")
        listening = table.ci_levels("raters-items")
        if listening:
            parts.append(f"Listening-test columns: {'/'.join(f'{lv:.0%}' for lv in listening)} two-way bootstrap "
                         "interval over raters and items.".replace("%", r"\%"))
    floors = [f"{escape(c.title)} " + r" $\pm$ ".join(escape(part) for part in c.floor_text.split(" ± "))
              for c in table.metric_columns if c.floor_text]
    if floors:
        parts.append("Noise floor (a perfect generator at this set size): " + "; ".join(floors) + ".")
    if any(v.rank for r in table.rows for v in r.values.values()):
        parts.append("Best per column in bold, second underlined.")
    if table.degenerate:
        parts.append(rf"$^\ddagger${escape(DEGENERATE_NOTE)}.")
    if table.untrained:
        parts.append(r"$^\dagger$UNTRAINED backbone (seeded random weights): not comparable to published "
                     "numbers.")
    if table.unverified:
        parts.append(r"$^\S$LOCAL UNVERIFIED checkpoint (its sha256 does not match a published one).")
    return " ".join(parts)


def _provenance(table: Table) -> str:
    """Where the numbers come from, compactly: set up as a footnote-size note under the table."""
    parts = []
    ref = table.references[0] if table.references else None
    if ref:
        parts.append(f"Reference: {escape(ref['name'])} ({escape(ref['kind'])}, {ref['n_clips']} clips, "
                     f"fingerprint {escape(ref['fingerprint'][:12])}).")
    for col in table.metric_columns:
        p = col.provenance
        parts.append(f"{escape(col.title)}: v{p['version']}, {escape(p['protocol'])}, {escape(p['backbone'])}.")
    ckpts = [f"{escape(c['label'])}: {escape(field_text('checkpoint', c['checkpoint']))}"
             + (f" ({escape(c['sha256'][:12])})" if c["sha256"] else "")
             for c in table.checkpoints if c["checkpoint"]]
    if ckpts:
        parts.append("Checkpoints (sha256): " + "; ".join(ckpts) + ".")
    return " ".join(parts)


def render_table(table: Table, ci: str = "pm", caption: str | None = None, label: str | None = None) -> str:
    """The table environment; scaled down to the text width only when its natural width exceeds it."""
    if ci not in CI_STYLES:
        raise ValueError(f"ci style must be one of {CI_STYLES}, got {ci!r}")
    constants = constant_fields(table)
    columns = [c for c in table.columns if not (c.kind == "field" and c.key == table.section_field)
               and c.key not in constants]
    spec = "".join("l" if c.kind == "field" else "r" for c in columns) + ("l" if table.aggregated else "")
    header = [_header(c) for c in columns] + (["Interval"] if table.aggregated else [])
    width = len(header)
    label = label or "tab:" + (re.sub(r"[^A-Za-z0-9]+", "-", table.title or "leaderboard").strip("-").lower()
                               or "leaderboard")
    provenance = _provenance(table)
    lines = [r"% bench leaderboard: needs \usepackage{booktabs} and \usepackage{graphicx}",
             r"\begin{table}[t]", r"\centering",
             *([r"\renewcommand{\arraystretch}{1.2}"] if ci != "none" else []),  # room for scripts; local
             r"\setlength{\tabcolsep}{4pt}",
             rf"\caption{{{_caption(table, ci, caption, constants)}}}",
             rf"\label{{{re.sub(r'[^A-Za-z0-9:._-]', '-', label)}}}",
             # natural size when it fits the text width, else scaled down to it
             r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%",
             rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
             " & ".join(header) + r" \\", r"\midrule"]
    if not table.rows:
        lines.append(rf"\multicolumn{{{width}}}{{c}}{{No results.}} \\")
    sections = table.sections if table.section_field else [None]
    for i, section in enumerate(sections):
        if section is not None:
            if i:
                lines.append(r"\midrule")
            lines.append(rf"\multicolumn{{{width}}}{{l}}{{\textit{{{escape(section)}}}}} \\")
        for row in (r for r in table.rows if r.section == section):
            cells = [_cell(c, row, ci) for c in columns] + ([escape(interval_label(row))] if table.aggregated
                                                             else [])
            lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}}"]
    if provenance:
        lines += [r"\par\smallskip", rf"\parbox{{\linewidth}}{{\footnotesize\raggedright {provenance}}}"]
    lines += [r"\end{table}"]
    return "\n".join(lines) + "\n"


def document(table_tex: str) -> str:
    """A complete, compilable article around a rendered table (for checking and previews)."""
    return ("\\documentclass{article}\n\\usepackage{booktabs}\n\\usepackage{graphicx}\n\\begin{document}\n"
            + table_tex + "\\end{document}\n")
