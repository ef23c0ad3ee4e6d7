"""The one table model behind every leaderboard format (Markdown, LaTeX, HTML, CSV) and the plots.

`build_table(records, ...)` turns RunRecords into rows (configurations) and columns (fields, info,
metrics). Renderers only format what it decided:

- Rows. A row is the group of records that share the values of the `group_by` fields. The default is
  the model label plus every configuration field that varies across the records, seed included, so
  by default each row is one suite cell. Fields left out of `group_by` are averaged over (typically
  `--group-by label,steps` to average seeds): the row shows the mean of its records' values and `n`,
  and its interval is a Student-t interval over those values at the records' CI level. A row of a
  single record keeps that record's bootstrap interval.
- Layouts. `models`: one row per configuration (DiscoDiff Table 1), with sample rate, duration and
  generation time per clip as info columns. `rates`, `steps`, `checkpoints`: one section per model,
  rows ordered by that axis (SRC-gAudio Table I, Diffsound Table V, training curves).
- Columns. Metric direction, unit and precision come from the records (each MetricDef writes them), so a
  new metric needs no leaderboard edit. Every value of a column is printed with the same decimals.
- Marks. Per metric column (and per section), the best value gets rank 1 and the second rank 2,
  compared at the printed precision so that ties share a rank.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from bench.core.errors import BenchError
from bench.core.records import RunRecord

FIELDS = ("label", "generator", "checkpoint", "seed", "steps", "guidance", "sample_rate", "duration_s")
FIELD_TITLES = {"label": "Model", "generator": "Generator", "checkpoint": "Checkpoint", "seed": "Seed",
                "steps": "Steps", "guidance": "CFG", "sample_rate": "SR (kHz)", "duration_s": "Dur. (s)"}
# layout -> the field its rows are ordered by within one section per model (None: no sections)
LAYOUTS = {"models": None, "rates": "sample_rate", "steps": "steps", "checkpoints": "checkpoint"}
INFO_COLUMNS = ("sample_rate", "duration_s", "time", "rtf")
DEFAULT_INFO = {"models": ("sample_rate", "duration_s", "time")}
DEFAULT_PRECISION = 3
ARROWS = {"lower": "↓", "higher": "↑"}


@dataclass(frozen=True)
class Column:
    key: str  # field name, info name or metric key (e.g. "fad-vggish@audioldm[untrained]")
    kind: str  # "field" | "info" | "metric"
    title: str
    direction: str | None = None  # "lower" | "higher" for metrics
    unit: str = ""
    precision: int = DEFAULT_PRECISION
    untrained: bool = False
    unverified: bool = False  # a local checkpoint not matching the published sha256
    provenance: dict = field(default_factory=dict)  # metric columns: id, version, lineage, protocol, backbone
    ci_covers: str | None = None  # what the column's bootstrap intervals are meant to contain
    floor: dict | None = None  # noise floor on the reference set: mean, std, splits, set_sizes

    @property
    def floor_text(self) -> str | None:
        f = self.floor
        if not f or f.get("mean") is None:
            return None
        p = self.precision
        return (f"{fmt_number(f['mean'], p)} ± {fmt_number(f['std'], p)} (reference half vs half, "
                f"{f['set_sizes'][0]} vs {f['set_sizes'][1]} clips, {f['splits']} splits)")

    @property
    def arrow(self) -> str:
        return ARROWS.get(self.direction, "")


@dataclass(frozen=True)
class Value:
    value: float
    low: float | None = None
    high: float | None = None
    level: float | None = None
    n: int = 1  # records averaged into this value
    # "bootstrap" (one record's CI over clips) | "raters-items" (one listening record's CI over raters and
    # items) | "seeds" (t-interval over n records)
    interval: str | None = None
    rank: int | None = None  # 1: best of its column (and section), 2: second
    degenerate: bool = False  # the generated set is the reference set itself (0 by construction)

    @property
    def has_ci(self) -> bool:
        return self.low is not None and self.high is not None


@dataclass
class Row:
    section: str | None
    fields: dict  # field -> value; a tuple when the row's records disagree (a field averaged over)
    values: dict[str, Value]  # column key -> value; absent: no result for this row
    cells: list[str]  # cell ids of the records in this row
    n: int


@dataclass
class ClipRow:
    """One generated clip of one cell: its per-clip value under each metric that has them."""

    label: str
    cell: str
    clip: str
    values: dict[str, float]  # metric column key -> the clip's value (absent: none for this clip)


@dataclass
class Table:
    title: str | None
    layout: str
    group_by: tuple[str, ...]
    columns: list[Column]
    rows: list[Row]
    references: list[dict]
    checkpoints: list[dict]  # label, checkpoint, sha256: what produced each model's numbers
    section_field: str | None = None
    # Per-clip values (a metric result's `per_clip` table: KL per pair, CLAP per clip, each clip's own FD...),
    # for finding outliers: the metric columns that have them, and one row per (cell, clip).
    clip_columns: list[Column] = field(default_factory=list)
    clip_rows: list[ClipRow] = field(default_factory=list)

    @property
    def metric_columns(self) -> list[Column]:
        return [c for c in self.columns if c.kind == "metric"]

    @property
    def sections(self) -> list[str]:
        return list(dict.fromkeys(r.section for r in self.rows if r.section is not None))

    @property
    def untrained(self) -> bool:
        return any(c.untrained for c in self.columns)

    @property
    def unverified(self) -> bool:
        return any(c.unverified for c in self.columns)

    @property
    def degenerate(self) -> bool:
        return any(v.degenerate for r in self.rows for v in r.values.values())

    @property
    def aggregated(self) -> bool:
        return any(r.n > 1 for r in self.rows)

    def ci_levels(self, interval: str) -> list[float]:
        return sorted({v.level for r in self.rows for v in r.values.values()
                       if v.interval == interval and v.level is not None})


# ------------------------------------------------------------------------------------ formatting

def fmt_number(x: float, precision: int) -> str:
    """Fixed decimals; adding 0.0 turns a rounded -0.0 into 0.0 so no column shows '-0.000'."""
    return f"{round(x, precision) + 0.0:.{precision}f}"


def checkpoint_step(checkpoint: str | None) -> int | None:
    """The training step in a checkpoint's file name: its last run of digits (step-1000.pt -> 1000)."""
    if not checkpoint:
        return None
    digits = re.findall(r"\d+", Path(checkpoint).stem)
    return int(digits[-1]) if digits else None


def field_text(name: str, value, raw: bool = False) -> str:
    """A field value for display: rates in kHz and checkpoints by file name unless `raw`."""
    if isinstance(value, tuple):
        return "/".join(field_text(name, v, raw) for v in value)
    if value is None:
        return "–"
    if name == "checkpoint":
        return Path(value).name
    if raw:
        return str(value)
    if name == "sample_rate":
        return f"{value / 1000:g}"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _cell_value(record: RunRecord, field: str):
    """A configuration field of a record; a generator with seeded random weights is labelled untrained."""
    value = record.cell.get(field)
    if field == "label" and record.generator_untrained:
        return f"{value} (untrained)"
    if field == "sample_rate" and value is None:  # audio taken at its own rate: show it when it is one rate
        rates = record.generation.get("output_sample_rates") or []
        return rates[0] if len(rates) == 1 else None
    return value


def backbone_text(result: dict) -> str:
    b = result.get("backbone") or {}
    name = b.get("backbone", "?")
    if result.get("untrained"):
        return f"UNTRAINED {name} (seeded random weights, seed {b.get('seed')})"
    sha = b.get("sha256") or "unknown"
    if b.get("weights") == "human":  # a listening test (bench listen): the study stands for the checkpoint
        return f"{name}, listening study {sha[:16]}"
    trained = " (trained here)" if b.get("weights") == "trained" else ""  # bench train-evaluator
    unverified = " (LOCAL UNVERIFIED checkpoint: its sha256 does not match a published one)" if result.get(
        "unverified") else ""
    return f"{name} {b.get('file') or '?'} sha256 {sha[:16]}{trained}{unverified}"


INTERVAL_NOTE = ("basic (bias-corrected) bootstrap over clips: it covers the population value (e.g. the distance "
                 "between the distributions), not the score of another draw of this size")
DEGENERATE_NOTE = ("the generated set is the reference set itself: 0 by construction, no interval; a perfect "
                   "generator scores the column's noise floor")


CONSTANT_CANDIDATES = ("sample_rate", "duration_s")


def constant_fields(table: Table) -> dict[str, object]:
    """Columns among SR and duration with one value in every row: a renderer says them once (caption)."""
    out = {}
    for col in table.columns:
        if col.kind == "field" and col.key in CONSTANT_CANDIDATES and table.rows:
            values = {repr(r.fields.get(col.key)) for r in table.rows}
            value = table.rows[0].fields.get(col.key)
            if len(values) == 1 and value is not None and not isinstance(value, tuple):
                out[col.key] = value
    return out


def interval_label(row: Row) -> str:
    """Where a row's intervals come from: "clips" (one cell: bootstrap over its clips), "raters x items" (a
    listening test), "N cells" (mean of N cells, e.g. seeds: Student-t over them), "–" (no interval)."""
    if row.n > 1:
        return f"{row.n} cells"
    kinds = {v.interval for v in row.values.values()}
    return ", ".join([name for kind, name in (("bootstrap", "clips"), ("raters-items", "raters x items"))
                      if kind in kinds]) or "–"


# ------------------------------------------------------------------------------------ building

def metric_display(result: dict) -> tuple[str, int]:
    """(unit, precision) of a metric, as its definition wrote them into the record."""
    precision = result.get("precision")
    return result.get("unit") or "", DEFAULT_PRECISION if precision is None else int(precision)


def metric_identity(result: dict) -> tuple:
    """What must agree for two values to share a column: metric, protocol and backbone versions."""
    b = result.get("backbone") or {}
    p = result.get("protocol") or {}
    return (result.get("metric_version"), p.get("id"), p.get("version"), b.get("backbone"),
            (b.get("init"), b.get("seed")) if result.get("untrained") else b.get("sha256"))


def _metric_columns(records: list[RunRecord], wanted: list[str] | None) -> list[Column]:
    first: dict[str, dict] = {}
    identity: dict[str, tuple[tuple, str]] = {}
    for record in records:
        for result in record.metrics:
            key = result["key"]
            first.setdefault(key, result)
            ident = metric_identity(result)
            seen = identity.setdefault(key, (ident, record.cell_id))
            if seen[0] != ident:
                raise BenchError(
                    f"metric {key!r} was computed differently in cell {seen[1]} and cell "
                    f"{record.cell_id} (metric/protocol/backbone version {seen[0]} vs {ident}); "
                    "their values cannot share a column: pass records of one protocol version")
    keys = list(first)
    if wanted:
        chosen = []
        for want in wanted:
            match = [k for k in keys if want in (k, first[k]["metric"])]
            if not match:
                raise BenchError(f"--metrics {want!r}: no record has this metric; available: "
                                 f"{', '.join(keys) or 'none'}")
            chosen += [k for k in match if k not in chosen]
        keys = chosen
    columns = []
    for key in keys:
        r = first[key]
        unit, precision = metric_display(r)
        protocol = r.get("protocol") or {}
        direction = r.get("direction")
        floor = next((res.get("noise_floor") for rec in records for res in rec.metrics
                      if res["key"] == key and (res.get("noise_floor") or {}).get("mean") is not None), None)
        covers = next((res["ci"].get("covers") for rec in records for res in rec.metrics
                       if res["key"] == key and res.get("ci") and res["ci"].get("covers")), None)
        columns.append(Column(
            key=key, kind="metric", title=key, direction=direction, unit=unit, precision=precision,
            untrained=bool(r.get("untrained")), unverified=bool(r.get("unverified")), ci_covers=covers, floor=floor,
            provenance={"metric": r["metric"], "version": r.get("metric_version"), "lineage": r.get("lineage", ""),
                        "protocol": f"{protocol.get('id', '?')} v{protocol.get('version', '?')}",
                        "backbone": backbone_text(r), "backbone_card": dict(r.get("backbone") or {})}))
    return columns


def _info_column(name: str) -> Column:
    if name == "time":
        return Column("time", "info", "Time/clip", unit="s", precision=3)
    if name == "rtf":
        return Column("rtf", "info", "RTF", precision=4)
    return Column(name, "field", FIELD_TITLES[name])


def _aggregate(values: list[float], results: list[dict] | None = None) -> Value:
    """One record: its value and bootstrap CI. Several: mean and a t-interval over them."""
    if len(values) == 1:
        if results and results[0].get("degenerate"):
            return Value(values[0], degenerate=True)
        ci = (results[0].get("ci") if results else None) or {}
        kind = "raters-items" if ci.get("over") == "raters and items" else "bootstrap"
        return Value(values[0], ci.get("low"), ci.get("high"), ci.get("level"), 1, kind if ci else None)
    from scipy import stats

    n = len(values)
    mean = math.fsum(values) / n
    if results is None:  # info columns: the mean is enough
        return Value(mean, n=n)
    if all(r.get("degenerate") for r in results):
        return Value(mean, n=n, degenerate=True)
    level = next((r["ci"]["level"] for r in results if r.get("ci")), 0.95)
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(stats.t.ppf((1 + level) / 2, n - 1)) * sd / math.sqrt(n)
    return Value(mean, mean - half, mean + half, level, n, "seeds")


def _info_value(name: str, records: list[RunRecord]) -> Value | None:
    """Generation time per clip (or real-time factor), from records whose samples were generated
    fresh in that run: a cached cell took no time and must not pull the mean down."""
    values = []
    for record in records:
        timing = record.timing
        if name == "time" and timing.get("fresh_samples") and timing.get("generation_seconds") is not None:
            values.append(timing["generation_seconds"] / timing["fresh_samples"])
        elif name == "rtf" and timing.get("real_time_factor") is not None:
            values.append(timing["real_time_factor"])
    return _aggregate(values) if values else None


def _varying(records: list[RunRecord], name: str) -> bool:
    return len({repr(r.cell.get(name)) for r in records}) > 1


def _sort_key(name: str, value):
    if name == "checkpoint":
        step = checkpoint_step(value)
        return (value is not None, step if step is not None else math.inf, str(value))
    return (value is not None, value if isinstance(value, (int, float)) else 0, str(value))


def _rank(rows: list[Row], column: Column) -> None:
    """Rank 1 for the best printed value of the column, 2 for the next distinct one (ties share)."""
    # A degenerate value (a set against itself) is no competitor: it is 0 by construction.
    scored = [(r, round(r.values[column.key].value, column.precision) + 0.0)
              for r in rows if column.key in r.values and not r.values[column.key].degenerate]
    if len(scored) < 2 or column.direction not in ARROWS:
        return
    distinct = sorted({v for _, v in scored}, reverse=column.direction == "higher")
    for row, v in scored:
        rank = distinct.index(v) + 1
        if rank <= 2:
            row.values[column.key] = replace(row.values[column.key], rank=rank)


def build_table(records: list[RunRecord], layout: str = "models", metrics: list[str] | None = None,
                group_by: list[str] | None = None, info: list[str] | None = None,
                title: str | None = None) -> Table:
    if layout not in LAYOUTS:
        raise BenchError(f"unknown layout {layout!r}; one of {', '.join(LAYOUTS)}")
    axis = LAYOUTS[layout]
    for name in group_by or []:
        if name not in FIELDS:
            raise BenchError(f"--group-by {name!r} is not a configuration field; one of {', '.join(FIELDS)}")
    for name in info or []:
        if name not in INFO_COLUMNS:
            raise BenchError(f"--info {name!r} is not an info column; one of {', '.join(INFO_COLUMNS)}")
    if group_by:
        groups = ["label"] + [g for g in group_by if g != "label"]
    else:  # one row per cell: the label and every field that varies
        groups = ["label"] + [f for f in FIELDS[2:] if _varying(records, f)]
    if axis and axis not in groups:
        groups.append(axis)  # a layout's axis always separates rows
    groups = [f for f in FIELDS if f in groups]
    info = list(DEFAULT_INFO.get(layout, ()) if info is None else info)

    references = list({r.reference["fingerprint"]: r.reference for r in records}.values())
    if len(references) > 1:
        raise BenchError("the records were scored against different reference sets ("
                         + ", ".join(f"{r['name']} {r['fingerprint'][:12]}" for r in references)
                         + "): their numbers are not comparable in one table; pass the records of one set")

    metric_cols = _metric_columns(records, metrics) if records else []
    columns = [Column(f, "field", FIELD_TITLES[f]) for f in groups]
    columns += [_info_column(i) for i in info if i not in groups]
    columns += metric_cols

    grouped: dict[tuple, list[RunRecord]] = {}
    for record in records:
        grouped.setdefault(tuple(repr(_cell_value(record, f)) for f in groups), []).append(record)
    rows = []
    for members in grouped.values():
        fields = {}
        for col in columns:
            if col.kind == "field":
                distinct = list(dict.fromkeys(_cell_value(m, col.key) for m in members))
                fields[col.key] = distinct[0] if len(distinct) == 1 else tuple(distinct)
        values: dict[str, Value] = {}
        for col in columns:
            if col.kind == "info":
                v = _info_value(col.key, members)
            elif col.kind == "metric":
                results = [res for m in members for res in m.metrics if res["key"] == col.key]
                v = _aggregate([res["value"] for res in results], results) if results else None
            else:
                continue
            if v is not None:
                values[col.key] = v
        # A listening record (bench listen) rates one suite cell: it adds columns to that cell, not a cell.
        cells = list(dict.fromkeys(m.scored_cell for m in members))
        rows.append(Row(section=_cell_value(members[0], "label") if axis else None, fields=fields, values=values,
                        cells=cells, n=len(cells)))

    if axis:
        order = list(dict.fromkeys(r.section for r in rows))
        rows.sort(key=lambda r: (order.index(r.section), _sort_key(axis, r.fields[axis])))
    for section in dict.fromkeys(r.section for r in rows):
        for col in metric_cols:
            _rank([r for r in rows if r.section == section], col)

    checkpoints = list({(r.label, r.cell.get("checkpoint")):
                        {"label": _cell_value(r, "label"), "checkpoint": r.cell.get("checkpoint"),
                         "sha256": r.generation.get("checkpoint_sha256")}
                        for r in records}.values())
    clip_columns, clip_rows = _clip_values(records, metric_cols)
    return Table(title=title, layout=layout, group_by=tuple(groups), columns=columns, rows=rows,
                 references=references, checkpoints=checkpoints, section_field="label" if axis else None,
                 clip_columns=clip_columns, clip_rows=clip_rows)


def _clip_values(records: list[RunRecord], metric_cols: list[Column]) -> tuple[list[Column], list[ClipRow]]:
    """The per-clip tables of the shown metrics, joined by (cell, clip id)."""
    rows: dict[tuple[str, str], ClipRow] = {}
    used = set()
    for record in records:
        for res in record.metrics:
            if not res.get("per_clip") or res["key"] not in {c.key for c in metric_cols}:
                continue
            used.add(res["key"])
            for clip in res["per_clip"]:
                key = (record.cell_id, clip["id"])
                if key not in rows:
                    rows[key] = ClipRow(str(_cell_value(record, "label")), record.cell_id, clip["id"], {})
                rows[key].values[res["key"]] = clip["value"]
    return [c for c in metric_cols if c.key in used], list(rows.values())
