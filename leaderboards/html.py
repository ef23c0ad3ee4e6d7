"""A self-contained static HTML leaderboard: sortable table, provenance on hover and in details rows,
plots embedded below. Nothing is fetched at view time.

Safety: every string from records or the command line goes through `html.escape`, sort keys travel
in escaped attributes (no record data inside <script>), and a Content-Security-Policy allows only this
page's own script and style (by hash) and data: images, so even markup that slipped through escaping
could neither run nor load anything.

Sorting: click a header (first click puts the best value first); the order is kept in the URL hash
(`#sort=<column key>&dir=asc|desc`), and a page opened with such a hash sorts itself on load.
"""
from __future__ import annotations

import base64
import hashlib
from html import escape
from pathlib import Path

from leaderboards.table import (DEGENERATE_NOTE, INTERVAL_NOTE, Column, Row, Table, constant_fields, field_text,
                                 fmt_number, interval_label)

_STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto;
       max-width: 96rem; padding: 0 1rem; color: #1b1f24; background: #fff; }
h1 { font-size: 1.5rem; margin-bottom: .25rem; }
.caption { color: #444; margin-top: 0; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: 1rem 0; font-variant-numeric: tabular-nums; }
td { white-space: nowrap; }
td.text { white-space: normal; min-width: 5rem; max-width: 24rem; overflow-wrap: break-word; }
th, td { padding: .35rem .7rem; border-bottom: 1px solid #d8dee4; text-align: right; vertical-align: top; }
th.text, td.text { text-align: left; }
thead th { border-bottom: 2px solid #1b1f24; cursor: pointer; user-select: none; vertical-align: bottom; }
thead th .preset { display: block; font-weight: 400; color: #57606a; }
thead th.nosort { cursor: default; }
thead th[aria-sort=ascending]::after { content: " \\25B2"; font-size: .7em; }
thead th[aria-sort=descending]::after { content: " \\25BC"; font-size: .7em; }
td.best { font-weight: 700; }
td.second { text-decoration: underline; }
.ci { display: block; color: #57606a; font-size: .8em; }
.badge { display: inline-block; margin-left: .3rem; padding: 0 .35rem; border-radius: .6rem;
         background: #ffebe9; color: #a40e26; font-size: .75em; font-weight: 600; }
td.untrained { background: #fff8f7; }
tr.details td { text-align: left; background: #f6f8fa; font-size: .85em; white-space: normal; }
tr.details ul { margin: .2rem 0; padding-left: 1.2rem; }
button.more { border: 1px solid #d0d7de; background: #f6f8fa; border-radius: .3rem; cursor: pointer; }
.notes { font-size: .9em; color: #333; }
.plots { display: flex; flex-wrap: wrap; gap: 1rem; align-items: flex-start; }
.plots figure { margin: 0; width: 30rem; max-width: 100%; }
.plots img { width: 100%; border: 1px solid #d8dee4; }
code { font-size: .9em; }
"""

_SCRIPT = """
(function () {
  function sortable(table, keepInUrl) {
    var body = table.tBodies[0];
    var heads = Array.prototype.slice.call(table.tHead.rows[0].cells);
    function sortBy(index, dir) {
      var items = Array.prototype.map.call(body.querySelectorAll("tr.row"), function (r) {
        var next = r.nextElementSibling;
        return [r, next && next.classList.contains("details") ? next : null];
      });
      var numeric = heads[index].dataset.type === "num";
      items.sort(function (a, b) {
        var x = a[0].cells[index].dataset.sort, y = b[0].cells[index].dataset.sort;
        if (x === "" || y === "") { return (x === "") - (y === ""); }  // missing values last
        var c = numeric ? Number(x) - Number(y) : x.localeCompare(y, undefined, {numeric: true});
        return dir === "desc" ? -c : c;
      });
      items.forEach(function (pair) { body.appendChild(pair[0]); if (pair[1]) { body.appendChild(pair[1]); } });
      heads.forEach(function (h) { h.removeAttribute("aria-sort"); });
      heads[index].setAttribute("aria-sort", dir === "desc" ? "descending" : "ascending");
    }
    heads.forEach(function (h, i) {
      if (!h.dataset.key) { return; }
      function activate() {
        var current = h.getAttribute("aria-sort");
        var dir = current ? (current === "ascending" ? "desc" : "asc") : (h.dataset.first || "asc");
        sortBy(i, dir);
        if (!keepInUrl) { return; }
        try { history.replaceState(null, "", "#sort=" + encodeURIComponent(h.dataset.key) + "&dir=" + dir); }
        catch (e) { /* some viewers forbid URL changes; sorting still works */ }
      }
      h.addEventListener("click", activate);
      h.addEventListener("keydown", function (e) { if (e.key === "Enter") { activate(); } });
    });
    if (!keepInUrl) { return; }
    var params = new URLSearchParams(location.hash.slice(1));
    var key = params.get("sort");
    for (var i = 0; key !== null && i < heads.length; i++) {
      if (heads[i].dataset.key === key) { sortBy(i, params.get("dir") === "desc" ? "desc" : "asc"); break; }
    }
  }
  var body = document.getElementById("leaderboard").tBodies[0];
  Array.prototype.forEach.call(body.querySelectorAll("button.more"), function (b) {
    b.addEventListener("click", function () {
      var details = b.closest("tr").nextElementSibling;
      details.hidden = !details.hidden;
      b.setAttribute("aria-expanded", String(!details.hidden));
    });
  });
  sortable(document.getElementById("leaderboard"), true);
  var clips = document.getElementById("clips");
  if (clips) { sortable(clips, false); }
  document.body.dataset.ready = "1";
})();
"""


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def _metric_tooltip(col: Column) -> str:
    p = col.provenance
    return (f"{p['metric']} v{p['version']} ({p['lineage']}); protocol {p['protocol']}; "
            f"backbone {p['backbone']}; {col.direction} is better")


def _bare(title: str) -> str:
    """A metric key without its weights label (shown as a badge instead)."""
    return title.replace("[untrained]", "").replace("[unverified]", "")


def _th(col: Column) -> str:
    unit = f" ({col.unit})" if col.unit else ""
    if col.kind == "field":
        return (f'<th class="text" tabindex="0" data-type="text" data-key="{escape(col.key)}" '
                f'title="{escape(col.key)}">{escape(col.title)}</th>')
    if col.kind == "info":
        return (f'<th tabindex="0" data-type="num" data-key="{escape(col.key)}" data-first="asc" '
                f'title="{escape(col.title + unit)}">{escape(col.title + unit)}</th>')
    badge = ('<span class="badge">untrained</span>' if col.untrained else
             '<span class="badge">unverified</span>' if col.unverified else "")
    first = "desc" if col.direction == "higher" else "asc"
    name, at, preset = _bare(col.title).partition("@")  # two short lines, a narrow column
    return (f'<th tabindex="0" data-type="num" data-key="{escape(col.key)}" data-first="{first}" '
            f'title="{escape(_metric_tooltip(col))}">{escape(name + unit)} {escape(col.arrow)}{badge}'
            f'<span class="preset">{escape(at + preset)}</span></th>')


def _td(col: Column, row: Row) -> str:
    if col.kind == "field":
        value = row.fields[col.key]
        text = field_text(col.key, value)
        sort = "" if value is None else str(value) if not isinstance(value, tuple) else text
        return f'<td class="text" data-sort="{escape(sort)}">{escape(text)}</td>'
    v = row.values.get(col.key)
    classes = ["untrained"] if col.untrained else []
    if v is None:
        return f'<td class="{" ".join(classes)}" data-sort="">–</td>'
    classes += {1: ["best"], 2: ["second"]}.get(v.rank, [])
    text = escape(fmt_number(v.value, col.precision))
    if v.degenerate:
        text += ' <span class="ci">(degenerate)</span>'
    elif v.has_ci:
        text += (f' <span class="ci">[{escape(fmt_number(v.low, col.precision))}, '
                 f'{escape(fmt_number(v.high, col.precision))}]</span>')
    return f'<td class="{" ".join(classes)}" data-sort="{v.value!r}">{text}</td>'


def _details(table: Table, row: Row, width: int) -> str:
    items = [f"<li>cells ({row.n}): {', '.join(f'<code>{escape(c)}</code>' for c in row.cells)}</li>"]
    for c in table.checkpoints:
        if c["checkpoint"] and c["label"] == row.fields.get("label"):
            sha = f" sha256 <code>{escape(c['sha256'])}</code>" if c["sha256"] else ""
            items.append(f"<li>checkpoint <code>{escape(c['checkpoint'])}</code>{sha}</li>")
    for col in table.metric_columns:
        v = row.values.get(col.key)
        if v is None:
            continue
        interval = ""
        if v.has_ci:
            kind = {"bootstrap": "bootstrap over clips", "raters-items": "bootstrap over raters and items"}.get(
                v.interval, f"Student-t over {v.n} seeds")
            interval = f", {v.level:.0%} CI [{v.low!r}, {v.high!r}] ({kind})"
        items.append(f"<li><code>{escape(col.key)}</code> = {v.value!r}{escape(interval)}; "
                     f"{escape(_metric_tooltip(col))}</li>")
    return (f'<tr class="details" hidden><td colspan="{width}"><ul>{"".join(items)}</ul></td></tr>')


def _notes(table: Table, constants: dict) -> str:
    notes = []
    if constants:
        said = {"sample_rate": lambda v: f"{v / 1000:g} kHz sample rate", "duration_s": lambda v: f"{v:g} s clips"}
        notes.append("All rows: " + escape(", ".join(said[k](v) for k, v in constants.items())) + ".")
    for ref in table.references:
        notes.append(f"Reference set: {escape(ref['name'])} ({escape(ref['kind'])}, {ref['n_clips']} clips, "
                     f"fingerprint <code>{escape(ref['fingerprint'][:12])}</code>).")
    levels = table.ci_levels("bootstrap")
    if levels:
        notes.append(f"Brackets: {', '.join(f'{lv:.0%}' for lv in levels)} {escape(INTERVAL_NOTE)}.")
    if table.degenerate:
        notes.append(f"(degenerate): {escape(DEGENERATE_NOTE)}.")
    if table.ci_levels("raters-items"):
        notes.append("Listening tests: two-way bootstrap intervals over raters and items.")
    if table.ci_levels("seeds"):
        notes.append("Rows averaged over several cells (seeds): mean with a Student-t interval over them; the "
                     "Interval column says which rows are (N cells) and which are one cell (clips).")
    if any(v.rank for r in table.rows for v in r.values.values()):
        notes.append("Bold: best per column; underlined: second (ties share).")
    if table.untrained:
        notes.append('<span class="badge">untrained</span> backbone with seeded random weights: these '
                     "numbers show the pipeline works and are not comparable to published ones.")
    if table.unverified:
        notes.append('<span class="badge">unverified</span> local checkpoint whose sha256 does not match a '
                     "published one: not the published backbone.")
    metrics = "".join(f"<li><code>{escape(c.key)}</code>: {escape(_metric_tooltip(c))}"
                      + (f"; interval covers {escape(c.ci_covers)}" if c.ci_covers else "")
                      + (f"; noise floor {escape(c.floor_text)}" if c.floor_text else "") + "</li>"
                      for c in table.metric_columns)
    return ('<section class="notes">' + "".join(f"<p>{n}</p>" for n in notes)
            + (f"<ul>{metrics}</ul>" if metrics else "") + "</section>")


def _plots(plots) -> str:
    figures = []
    for path in plots:
        path = Path(path)
        if path.suffix.lower() != ".png":
            continue
        data = base64.b64encode(path.read_bytes()).decode()
        figures.append(f'<figure><img src="data:image/png;base64,{data}" alt="{escape(path.stem)}">'
                       f"<figcaption>{escape(path.stem)}</figcaption></figure>")
    return f'<section><h2>Plots</h2><div class="plots">{"".join(figures)}</div></section>' if figures else ""


def _clip_section(table: Table) -> str:
    """Every clip's per-clip values, sortable: the first click on a metric puts the WORST clips first."""
    if not table.clip_rows:
        return ""
    head = ('<th class="text" tabindex="0" data-type="text" data-key="label">Model</th>'
            '<th class="text" tabindex="0" data-type="text" data-key="cell">Cell</th>'
            '<th class="text" tabindex="0" data-type="text" data-key="clip">Clip</th>')
    for col in table.clip_columns:
        worst_first = "asc" if col.direction == "higher" else "desc"
        name, at, preset = _bare(col.title).partition("@")
        badge = '<span class="badge">untrained</span>' if col.untrained else ""
        head += (f'<th tabindex="0" data-type="num" data-key="{escape(col.key)}" data-first="{worst_first}" '
                 f'title="{escape(col.key)}: per-clip values; first click: worst first">{escape(name)} '
                 f'{escape(col.arrow)}{badge}<span class="preset">{escape(at + preset)}</span></th>')
    body = []
    for row in table.clip_rows:
        cells = "".join(f'<td class="text" data-sort="{escape(text)}">{escape(text)}</td>'
                        for text in (row.label, row.cell, row.clip))
        for col in table.clip_columns:
            v = row.values.get(col.key)
            cells += (f'<td data-sort="">–</td>' if v is None else
                      f'<td data-sort="{v!r}">{escape(fmt_number(v, col.precision))}</td>')
        body.append(f'<tr class="row">{cells}</tr>')
    return ('<section><h2>Per-clip values</h2><p class="notes">One row per generated clip. Click a metric to '
            "put its worst clips first (click again to reverse): the outliers to listen to. Per-clip Fréchet "
            "values are each clip's own distance to the reference distribution (fadtk <code>--indiv</code>), "
            "not comparable with the set value.</p>"
            f'<div class="scroll"><table id="clips">\n<thead><tr>{head}</tr></thead>\n<tbody>\n'
            + "\n".join(body) + "\n</tbody>\n</table></div></section>\n")


def render_table(table: Table, caption: str | None = None, plots=()) -> str:
    title = table.title or "Leaderboard"
    constants = constant_fields(table)  # said once, in the notes
    columns = [c for c in table.columns if c.key not in constants]
    width = len(columns) + 1 + (1 if table.aggregated else 0)
    head = "".join(_th(c) for c in columns)
    if table.aggregated:
        head += ('<th class="text" tabindex="0" data-type="text" data-key="interval" title="N cells: mean of N '
                 'cells (seeds) with a Student-t interval; clips: one cell, bootstrap over its clips">'
                 'Interval</th>')
    head += '<th class="nosort" title="provenance"></th>'
    body = []
    for row in table.rows:
        cells = "".join(_td(c, row) for c in columns)
        if table.aggregated:
            label = interval_label(row)
            cells += f'<td class="text" data-sort="{escape(label)}">{escape(label)}</td>'
        cells += '<td><button class="more" type="button" aria-expanded="false">details</button></td>'
        body.append(f'<tr class="row">{cells}</tr>' + _details(table, row, width))
    if not table.rows:
        body.append(f'<tr><td colspan="{width}">No results.</td></tr>')
    csp = (f"default-src 'none'; img-src data:; style-src {_csp_hash(_STYLE)}; "
           f"script-src {_csp_hash(_SCRIPT)}; base-uri 'none'; form-action 'none'")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        f"<h1>{escape(title)}</h1>\n"
        + (f'<p class="caption">{escape(caption)}</p>\n' if caption else "")
        + f'<div class="scroll"><table id="leaderboard">\n<thead><tr>{head}</tr></thead>\n<tbody>\n'
        + "\n".join(body)
        + "\n</tbody>\n</table></div>\n" + _notes(table, constants) + "\n" + _plots(plots) + "\n"
        + _clip_section(table)
        + f"\n<script>{_SCRIPT}</script>\n</body>\n</html>\n")
