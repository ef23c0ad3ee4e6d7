"""Strict config tables: every key known, an unknown key named with the closest known one."""
from __future__ import annotations

import difflib

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
