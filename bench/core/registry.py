"""The one registry mechanism for generators, metrics, backbones and weights.

A registry is a dict of name -> entry filled by `register` (decorator) or `add`. Built-in entries come
from importing the project's own modules; third-party plugins are packages that declare an entry point
in the registry's group (e.g. `[project.entry-points."bench.generators"] mygen = "mypkg.gen"`): the
module named is imported and registers itself like the built-ins do.
"""
from __future__ import annotations

import difflib
import importlib
from importlib import metadata

from bench.core.errors import ConfigError


def unknown_name_message(kind: str, name: str, known) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else "."
    return f"unknown {kind} {name!r}{hint} Known: {', '.join(sorted(known))}"


class Registry(dict):
    def __init__(self, kind: str, builtin_modules: tuple[str, ...] = (), entry_point_group: str | None = None):
        super().__init__()
        self.kind = kind
        self._modules = builtin_modules
        self._group = entry_point_group
        self._loaded = False

    def add(self, name: str, entry):
        if name in self:
            raise ValueError(f"{self.kind} {name!r} registered twice")
        self[name] = entry
        return entry

    def register(self, name: str):
        """Decorator: `@REGISTRY.register("name")` adds the decorated object under `name`."""

        def wrap(entry):
            self.add(name, entry)
            return entry

        return wrap

    def load(self) -> "Registry":
        """Import built-in modules and installed plugins (once); return the filled registry."""
        if not self._loaded:
            self._loaded = True
            for module in self._modules:
                importlib.import_module(module)
            if self._group:
                for ep in metadata.entry_points(group=self._group):
                    try:
                        importlib.import_module(ep.value.split(":")[0])
                    except Exception as exc:  # a broken plugin must say which one it is
                        raise ConfigError(f"plugin {ep.name!r} ({ep.value}) in entry-point group "
                                          f"{self._group!r} failed to load: {exc}") from exc
        return self

    def lookup(self, name: str):
        self.load()
        if name not in self:
            raise ConfigError(unknown_name_message(self.kind, name, self))
        return self[name]
