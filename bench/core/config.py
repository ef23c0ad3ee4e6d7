"""Strict config tables: every key known, an unknown key named with the closest known one."""
from __future__ import annotations

import difflib
import types
import typing
from dataclasses import fields

from bench.core.errors import ConfigError


def where(source: str, section: str) -> str:
    return f"{source}: [{section}]" if section else source


def check_keys(table: dict, allowed: set, source: str, section: str) -> None:
    """`table` is a table whose keys are all in `allowed`; else an error naming the closest key."""
    if not isinstance(table, dict):
        raise ConfigError(f"{where(source, section)} must be a table")
    for key in table:
        if key not in allowed:
            close = difflib.get_close_matches(key, sorted(allowed), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{where(source, section)}: unknown key {key!r}{hint}; "
                              f"allowed: {', '.join(sorted(allowed))}")


def parse_table(cls, table, source: str, section: str):
    """A frozen dataclass `cls` from a config table: defaults come from `cls`, unknown keys are named with
    the closest known one, and each value is checked against its field's type (int where float is asked)."""
    table = {} if table is None else table
    check_keys(table, {f.name for f in fields(cls)}, source, section)
    hints = typing.get_type_hints(cls)
    values = {key: _checked(value, hints[key], f"{where(source, section)}: {key}") for key, value in table.items()}
    return cls(**values)


def _checked(value, expected, what: str):
    options = typing.get_args(expected) if typing.get_origin(expected) in (types.UnionType, typing.Union) else (expected,)
    for option in options:
        base = typing.get_origin(option) or option
        if option is type(None) and value is None:
            return value
        if base is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if base is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if base in (str, bool, dict, list) and isinstance(value, base):
            return value
    names = " or ".join("none" if o is type(None) else getattr(typing.get_origin(o) or o, "__name__", str(o))
                        for o in options)
    raise ConfigError(f"{what} must be {names}, got {value!r}")
