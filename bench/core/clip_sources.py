"""Open a clip set from what a suite or a command line names: a manifest, a folder, or a built-in set."""
from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qsl

from bench.core.clipsets import MANIFEST_FORMATS, ClipSet, load_directory, load_manifest
from bench.core.errors import ConfigError
from bench.core.synthetic import BUILTIN_SETS, synthetic_dataset

_SPEC_KEYS = {"builtin": ("builtin", "n_clips", "sample_rate", "duration_s", "seed"),
              "manifest": ("manifest",), "directory": ("directory",)}


def open_clip_set(spec, base_dir: Path, require_audio: bool = True, where: str = "clip set") -> ClipSet:
    """Open a set from a suite spec: "builtin:synthetic", a path (folder or .jsonl/.csv manifest), or a
    table {"builtin": ..., params} | {"manifest": path} | {"directory": path}. `where` names the
    setting in error messages (e.g. "suite.toml [reference]")."""
    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
    if isinstance(spec, str):
        if spec.startswith("builtin:"):
            return _open_builtin(spec.removeprefix("builtin:"), {}, where)
        path = _resolve(spec, base_dir, where)
        if path.is_dir():
            return load_directory(path)
        if path.suffix.lower() in MANIFEST_FORMATS:
            return load_manifest(path, require_audio)
        raise ConfigError(f"{where}: {path} is neither a folder nor a manifest "
                          f"({', '.join(MANIFEST_FORMATS)})")
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: expected a path, \"builtin:synthetic\" or a table with one of "
                          f"{', '.join(_SPEC_KEYS)}; got {type(spec).__name__}")
    kinds = [k for k in _SPEC_KEYS if k in spec]
    if len(kinds) != 1:
        raise ConfigError(f"{where}: give exactly one of {', '.join(_SPEC_KEYS)}"
                          + (f" (got {', '.join(kinds)})" if kinds else f" (got keys {', '.join(spec)})"))
    kind = kinds[0]
    for key in spec:
        if key not in _SPEC_KEYS[kind]:
            raise ConfigError(f"{where}: unknown key {key!r} for a {kind} set; valid keys: "
                              f"{', '.join(_SPEC_KEYS[kind])}")
    if kind == "builtin":
        return _open_builtin(spec["builtin"], {k: v for k, v in spec.items() if k != "builtin"}, where)
    if not isinstance(spec[kind], str):
        raise ConfigError(f"{where}: {kind} must be a path string, got {spec[kind]!r}")
    path = _resolve(spec[kind], base_dir, where)
    if kind == "directory":
        return load_directory(path)
    return load_manifest(path, require_audio)


def _open_builtin(name, params: dict, where: str) -> ClipSet:
    if name not in BUILTIN_SETS:
        raise ConfigError(f"{where}: unknown built-in set {name!r}; built-in sets: {', '.join(BUILTIN_SETS)}")
    try:
        return synthetic_dataset(**params)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from e


def _resolve(value: str, base_dir: Path, where: str) -> Path:
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = Path(base_dir) / path
    if not path.exists():
        raise ConfigError(f"{where}: {value!r} does not exist (resolved to {path}; relative paths resolve "
                          f"against {base_dir})")
    return path


def open_training_set(spec, base_dir: Path):
    """A clip set from a suite spec or a CLI string; "builtin:synthetic?n_clips=140&seed=1" sets parameters."""
    if isinstance(spec, str) and spec.startswith("builtin:") and "?" in spec:
        name, _, query = spec.partition("?")
        params = {}
        for key, value in parse_qsl(query, strict_parsing=True):
            params[key] = float(value) if key == "duration_s" else int(value)
        spec = {"builtin": name.removeprefix("builtin:"), **params}
    return open_clip_set(spec, base_dir, where="training data")
