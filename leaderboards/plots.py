"""Figures for papers (PNG and PDF): metric curves with confidence bands.

- `plot_curves`: the generic one: lines with CI bands, for any x. (The sanity-check curves are drawn,
  as PNG and PDF, by bench.sanity_report, one panel per perturbation.)
- `leaderboard_plots`: from RunRecords, every metric against sampling steps, sample rate
  (SRC-gAudio Table I as a figure) and checkpoint step (training curves), wherever the records vary
  along that axis; one line per model (and per setting of any other varying field), seeds averaged
  with a t-interval band (single records: their bootstrap band). When they vary along none of these,
  `model_bars`: a bar per model with its interval, baselines (oracle, noise, silence) as reference lines.

Figures are sized for one paper column with readable fonts, use no pyplot global state, embed
TrueType fonts in PDFs (publishers reject Type 3) and carry no creation date, so reruns are identical.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.core.records import RunRecord
from leaderboards.table import FIELDS, Column, build_table, checkpoint_step, field_text

STYLE = {"font.size": 9, "axes.labelsize": 9, "axes.titlesize": 9, "legend.fontsize": 7.5,
         "xtick.labelsize": 8, "ytick.labelsize": 8, "lines.linewidth": 1.4, "lines.markersize": 3.5,
         "axes.grid": True, "grid.alpha": 0.3, "pdf.fonttype": 42, "ps.fonttype": 42}
FIGSIZE = (3.4, 2.5)  # inches: one column of a two-column paper
# Baseline generators: drawn as reference lines in the per-model bars, not as models.
BASELINES = {"reference", "noise", "silence"}
INTERVAL_NAMES = {"bootstrap": "bootstrap over clips", "seeds": "Student-t over seeds",  # Value.interval
                  "raters-items": "bootstrap over raters and items"}
_AXES = {"steps": ("steps", "sampling steps"), "sample_rate": ("rates", "sample rate (kHz)"),
         "checkpoint": ("checkpoints", "checkpoint step")}


@dataclass
class Series:
    label: str
    x: Sequence[float]
    y: Sequence[float]
    low: Sequence[float | None] | None = None  # CI band; None (or None entries): no band there
    high: Sequence[float | None] | None = None


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "metric"


def plot_curves(series: Sequence[Series], path_stem: str | Path, *, xlabel: str, ylabel: str,
                title: str | None = None, logx: bool = False, xticks: Mapping[float, str] | None = None,
                formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Draw lines with CI bands; write `path_stem.png` and `path_stem.pdf`; return the paths."""
    import matplotlib
    from matplotlib.figure import Figure

    outside = len(series) > 3  # many lines: legend under the axes, the figure grows to hold it
    size = (FIGSIZE[0], FIGSIZE[1] + (0.16 * len(series) if outside else 0))
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=size, layout="constrained")
        ax = fig.add_subplot()
        for s in series:
            points = sorted(zip(s.x, s.y, s.low or [None] * len(s.x), s.high or [None] * len(s.x)),
                            key=lambda p: p[0])
            xs = [p[0] for p in points]
            label = s.label if len(s.label) <= 48 else s.label[:47] + "…"  # long names must not eat the plot
            line, = ax.plot(xs, [p[1] for p in points], marker="o", label=label)
            band = [p for p in points if p[2] is not None and p[3] is not None]
            if band:
                ax.fill_between([p[0] for p in band], [p[2] for p in band], [p[3] for p in band],
                                color=line.get_color(), alpha=0.2, linewidth=0)
        if logx:
            ax.set_xscale("log", base=2)
        if xticks or logx:
            ticks = xticks or {x: f"{x:g}" for s in series for x in s.x}
            ax.set_xticks(list(ticks), list(ticks.values()))
            ax.minorticks_off()
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if title:
            ax.set_title(title)
        if outside:
            fig.legend(loc="outside lower center", frameon=False)
        elif len(series) > 1 or (series and series[0].label):
            ax.legend(frameon=False)
        return _save(fig, Path(path_stem), formats)


def _legend_part(name: str, value) -> str:
    text = field_text(name, value)
    return {"sample_rate": f"{text} kHz", "steps": f"{text} steps", "guidance": f"cfg {text}",
            "duration_s": f"{text} s", "seed": f"seed {text}"}.get(name, text)


def _ylabel(col: Column) -> str:
    unit = f" ({col.unit})" if col.unit else ""
    return f"{col.title}{unit} {col.arrow}".strip()


def _save(fig, stem: Path, formats: Sequence[str]) -> list[Path]:
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = stem.with_name(stem.name + f".{fmt}")
        metadata = {"CreationDate": None} if fmt == "pdf" else {"Software": None} if fmt == "png" else None
        fig.savefig(path, dpi=300 if fmt == "png" else None, metadata=metadata, bbox_inches="tight",
                    pad_inches=0.03)
        paths.append(path)
    return paths


def model_bars(records: list[RunRecord], out_dir: str | Path, metrics: list[str] | None = None,
               formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """One figure per metric: a bar per model row with its interval; baseline generators (oracle, noise,
    silence) as labelled reference lines. For records that vary along no plotted axis."""
    import matplotlib
    from matplotlib.figure import Figure

    # one bar per model: seeds averaged (Student-t interval), any other varying field kept apart
    group_by = ["label"] + [f for f in FIELDS[2:] if f != "seed" and len({repr(r.cell.get(f)) for r in records}) > 1]
    table = build_table(records, layout="models", metrics=metrics, group_by=group_by, info=[])
    generator_of = {r.cell_id: r.generator for r in records}
    shown = [f for f in table.group_by if f != "label"]
    paths: list[Path] = []
    for col in table.metric_columns:
        bars, lines = [], []
        for row in table.rows:
            v = row.values.get(col.key)
            if v is None:
                continue
            label = field_text("label", row.fields["label"])
            name = ", ".join([label if len(label) <= 20 else label[:19] + "…"]  # keep what tells rows apart
                             + [_legend_part(f, row.fields[f]) for f in shown if row.fields[f] is not None])
            baseline = {generator_of.get(c) for c in row.cells} <= BASELINES
            (lines if baseline else bars).append((name, v))
        if not bars and not lines:
            continue
        width = max(FIGSIZE[0], 0.45 * len(bars) + 1.6)
        with matplotlib.rc_context(STYLE):
            fig = Figure(figsize=(width, FIGSIZE[1] + 0.5), layout="constrained")
            ax = fig.add_subplot()
            xs = range(len(bars))
            ax.bar(xs, [v.value for _, v in bars], color="#4c72b0")
            ci = [(x, v.low, v.high) for x, (_, v) in zip(xs, bars) if v.has_ci]
            if ci:  # drawn as given: a bias-corrected interval need not contain the value
                ax.vlines([c[0] for c in ci], [c[1] for c in ci], [c[2] for c in ci], color="black", linewidth=1)
                for end in (1, 2):
                    ax.plot([c[0] for c in ci], [c[end] for c in ci], "_", color="black", markersize=6)
            ax.set_xticks(list(xs), [n for n, _ in bars], rotation=30, ha="right")
            for i, (name, v) in enumerate(lines):
                ax.axhline(v.value, color=f"C{i + 1}", linestyle="--", linewidth=1, label=f"{name}: {v.value:.3g}")
            if lines:
                ax.legend(frameon=False, loc="best")
            ax.set_ylabel(_ylabel(col))
            kinds = sorted({v.interval for _, v in bars if v.has_ci})
            if kinds:
                level = next(v.level for _, v in bars if v.has_ci)
                ax.set_title(f"bars: {level:.0%} CI ({', '.join(INTERVAL_NAMES[k] for k in kinds)})",
                             fontsize=7.5)
            paths += _save(fig, Path(out_dir) / f"{_slug(col.key)}_by_model", formats)
    return paths


def leaderboard_plots(records: list[RunRecord], out_dir: str | Path, metrics: list[str] | None = None,
                      formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Every metric against every axis the records vary along; per-model bars when they vary along none.
    Returns the files written."""
    out_dir = Path(out_dir)
    paths: list[Path] = []
    for axis, (layout, xlabel) in _AXES.items():
        per_model: dict[str, set] = {}
        for r in records:
            if r.cell.get(axis) is not None:
                per_model.setdefault(r.cell["label"], set()).add(repr(r.cell[axis]))
        if max(map(len, per_model.values()), default=0) < 2:
            continue  # no model varies along this axis: nothing to draw a curve of
        others = [f for f in FIELDS[2:] if f not in (axis, "seed")
                  and len({repr(r.cell.get(f)) for r in records}) > 1]
        table = build_table(records, layout=layout, metrics=metrics, group_by=["label", axis, *others], info=[])
        rows = [r for r in table.rows if r.fields[axis] is not None]
        xticks = None
        if axis == "checkpoint":
            steps = {r.fields[axis]: checkpoint_step(r.fields[axis]) for r in rows}
            if any(s is None for s in steps.values()):  # no step in some names: plot in name order
                names = sorted(steps)
                steps = {n: i for i, n in enumerate(names)}
                xticks = {i: field_text("checkpoint", n) for i, n in enumerate(names)}
            x_of = steps.get
        elif axis == "sample_rate":
            x_of = lambda v: v / 1000  # noqa: E731
        else:
            x_of = float
        for col in table.metric_columns:
            lines: dict[str, list] = {}
            for row in rows:
                v = row.values.get(col.key)
                if v is None:
                    continue
                name = ", ".join([row.section] + [_legend_part(f, row.fields[f]) for f in others
                                                  if row.fields[f] is not None])
                lines.setdefault(name, []).append((x_of(row.fields[axis]), v))
            series = [Series(name, [x for x, _ in pts], [v.value for _, v in pts],
                             [v.low for _, v in pts], [v.high for _, v in pts])
                      for name, pts in lines.items() if pts]
            if not any(len(s.x) > 1 for s in series):
                continue  # no model of this metric varies along the axis
            logx = axis == "sample_rate" and all(x > 0 for s in series for x in s.x)
            ticks = xticks or ({x: f"{x:g}" for s in series for x in s.x} if logx else None)
            paths += plot_curves(series, out_dir / f"{_slug(col.key)}_vs_{axis}", xlabel=xlabel,
                                 ylabel=_ylabel(col), logx=logx, xticks=ticks, formats=formats)
    return paths or model_bars(records, out_dir, metrics, formats)
