"""`bench leaderboard`: one table model from RunRecords, rendered as Markdown, LaTeX, HTML or CSV."""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from leaderboards.table import FIELDS, INFO_COLUMNS, LAYOUTS

FORMATS = ("md", "latex", "html", "csv")
EXAMPLES = """examples:
  bench leaderboard --records bench-results/quickstart
  bench leaderboard --experiment quickstart --format html --out board.html
  bench leaderboard --records results/ --format latex --group-by label,steps --ci sub --out table.tex
  bench leaderboard --records results/ --layout rates --metrics fad-vggish@audioldm --plots figures/
  bench leaderboard --records results/ study/records      (FAD & co. with MOS OVL/REL from `bench listen`)

rows: by default one per suite cell (the label and every field that varies). Fields left out of
--group-by are averaged over: e.g. `--group-by label,steps` shows the mean over seeds, n, and a
Student-t interval over the seeds; a row of one cell keeps its bootstrap interval."""


def _list(values: list[str] | None) -> list[str] | None:
    """Accept both `--metrics a b` and `--metrics a,b`."""
    if values is None:
        return None
    return [v for item in values for v in item.split(",") if v]


def cmd_leaderboard(args) -> int:
    from leaderboards import csv_table, html, latex, markdown
    from leaderboards.plots import leaderboard_plots
    from leaderboards.sources import load_mlflow_records, load_records
    from leaderboards.table import build_table

    if args.records:
        records = [r for path in args.records for r in load_records(path)]
        default_title = f"{records[0].suite['name']} leaderboard"
    else:
        records = load_mlflow_records(args.experiment, args.tracking_uri)
        default_title = f"{args.experiment} leaderboard"
    info = _list(args.info)
    if info == ["none"]:
        info = []
    metrics = _list(args.metrics)
    table = build_table(records, layout=args.layout, metrics=metrics, group_by=_list(args.group_by),
                        info=info, title=args.title or default_title)

    plots: list[Path] = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.plots or (args.format == "html" and not args.no_plots):
            plots = leaderboard_plots(records, Path(args.plots or tmp), metrics)
        if args.format == "md":
            text = markdown.render_table(table)
        elif args.format == "latex":
            text = latex.render_table(table, ci=args.ci, caption=args.caption)
        elif args.format == "csv":
            text = csv_table.render_table(table)
        else:
            text = html.render_table(table, caption=args.caption, plots=plots)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        print(f"leaderboard: {out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    if args.plots:
        print(f"plots: {len(plots)} files in {args.plots}", file=sys.stderr)
    return 0


def add_parser(sub) -> argparse.ArgumentParser:
    lb = sub.add_parser("leaderboard", help="tables (md, latex, html, csv) and plots from recorded runs",
                        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = lb.add_mutually_exclusive_group(required=True)
    source.add_argument("--records", nargs="+", metavar="PATH",
                        help="results directories of `bench run`, records/ folders or record files (several: "
                        "e.g. a suite's results and its listening study's records, `bench listen score`)")
    source.add_argument("--experiment", help="MLflow experiment name (records read from its runs' record.json)")
    lb.add_argument("--tracking-uri", help="MLflow tracking URI for --experiment (default: $MLFLOW_TRACKING_URI, "
                    "else bench-results/EXPERIMENT/mlflow.db)")
    lb.add_argument("--format", choices=FORMATS, default="md")
    lb.add_argument("--layout", choices=tuple(LAYOUTS), default="models",
                    help="models x metrics (default); rates, steps or checkpoints x metrics, "
                    "one section per model")
    lb.add_argument("--metrics", nargs="+", metavar="METRIC",
                    help="metric ids or keys to show, in this order (default: all)")
    lb.add_argument("--group-by", nargs="+", metavar="FIELD",
                    help=f"fields that make a row ({', '.join(FIELDS)}); the others are averaged over")
    lb.add_argument("--info", nargs="+", metavar="COLUMN",
                    help=f"info columns ({', '.join(INFO_COLUMNS)}, or none); default for the models layout: "
                    "sample_rate duration_s time")
    lb.add_argument("--ci", choices=("pm", "sub", "none"), default="pm",
                    help="LaTeX intervals: mean ± half-width (pm), interval as a subscript (sub), or none")
    lb.add_argument("--title", help="table title (default: from the suite or experiment name)")
    lb.add_argument("--caption", help="caption text, put before the generated provenance (LaTeX, HTML)")
    lb.add_argument("--plots", metavar="DIR", help="also write PNG and PDF plots into DIR")
    lb.add_argument("--no-plots", action="store_true", help="HTML: do not embed plots")
    lb.add_argument("--out", help="output file (default: stdout)")
    lb.set_defaults(func=cmd_leaderboard)
    return lb
