"""CSV leaderboard: the table model flat, at full precision, for spreadsheets and scripts.

One line per row with every configuration field (raw: rates in Hz, checkpoints as recorded), the
number of records averaged (`n`), the cell ids it came from, and per metric its value, interval bounds,
a degenerate mark (a set scored against itself) and the noise floor. Numbers are written with Python's
shortest round-trip repr, not rounded for display.
Text that a spreadsheet would run as a formula (leading = + - @) is prefixed with a quote.
"""
from __future__ import annotations

import csv
import io

from leaderboards.table import Table

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _text(value) -> str:
    if isinstance(value, tuple):
        value = "/".join("" if v is None else str(v) for v in value)
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def _number(x) -> str:
    return "" if x is None else repr(float(x))


def render_table(table: Table) -> str:
    fields = [c for c in table.columns if c.kind == "field"]
    numeric = [c for c in table.columns if c.kind != "field"]
    header = [c.key for c in fields] + ["n", "cells"]
    for c in numeric:
        header += [c.key] + ([f"{c.key}:ci_low", f"{c.key}:ci_high", f"{c.key}:ci_level", f"{c.key}:degenerate",
                              f"{c.key}:noise_floor", f"{c.key}:noise_floor_std"] if c.kind == "metric" else [])
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for row in table.rows:
        line = [_text(row.fields[c.key]) for c in fields] + [str(row.n), _text(";".join(row.cells))]
        for c in numeric:
            v = row.values.get(c.key)
            line.append(_number(v.value) if v else "")
            if c.kind == "metric":
                line += ([_number(v.low), _number(v.high), _number(v.level), "yes" if v.degenerate else ""]
                         if v else ["", "", "", ""])
                floor = c.floor or {}
                line += [_number(floor.get("mean")), _number(floor.get("std"))]
        writer.writerow(line)
    return out.getvalue()
