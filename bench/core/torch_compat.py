"""Make `import torchvision` work on CPU-only torch installs where its compiled extension cannot load.

The registry's torchvision wheels are CUDA builds. Next to a CPU torch, their extension fails to load
and `import torchvision` then dies registering `torchvision::nms` ("operator ... does not exist"),
which breaks timm (needed by hear21passt) and transformers' CLAP imports. Defining the two operator
schemas first lets torchvision's pure-Python parts import; nms itself stays unusable (nothing here
calls it). This is the project's only workaround for it, and it does nothing where torchvision
imports on its own (CUDA machines, or a matching CPU build).

torchaudio has the same problem (hear21passt's mel frontend imports it): its extension loader raises
OSError (`libc10_cuda.so` not found) instead of reporting the extension as missing. torchaudio itself
handles a missing extension (it sets `_IS_TORCHAUDIO_EXT_AVAILABLE = False` and its pure-Python parts,
such as compliance.kaldi and functional.resample, work), so `ensure_torchaudio_importable` makes its
loader report "not available" when loading fails, and nothing else.
"""
from __future__ import annotations

import functools

_SCHEMA = "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"


def _installed(package: str) -> bool:
    import importlib.util
    import sys

    if package in sys.modules:  # imported already (or blocked: None)
        return sys.modules[package] is not None
    try:
        return importlib.util.find_spec(package) is not None
    except (ValueError, AttributeError):
        return False


@functools.lru_cache(maxsize=1)
def ensure_torchvision_importable() -> str:
    """Import torchvision, defining its missing op schemas only if the plain import fails.

    Returns "native", "schema-shim" (recorded by backbones that depend on it) or "absent" (not installed:
    nothing to repair; whatever needs it names its extra when it imports it)."""
    import importlib
    import sys

    if not _installed("torchvision"):
        return "absent"

    try:
        importlib.import_module("torchvision")
        return "native"
    except (RuntimeError, OSError, ImportError):
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]  # drop the half-imported package before retrying
    import torch

    lib = torch.library.Library("torchvision", "DEF")  # noqa: F841 (kept alive by the lru_cache)
    lib.define(f"nms{_SCHEMA}")
    lib.define(f"qnms{_SCHEMA}")
    ensure_torchvision_importable._library = lib
    importlib.import_module("torchvision")
    return "schema-shim"


def _drop_modules(package: str) -> None:
    import sys

    for name in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
        del sys.modules[name]


@functools.lru_cache(maxsize=1)
def ensure_torchaudio_importable() -> str:
    """Import torchaudio; if its compiled extension cannot load, import it without the extension.

    Returns "native", "extension-disabled" (recorded by backbones that depend on it) or "absent"."""
    import importlib
    import importlib.util
    import sys
    from pathlib import Path

    if not _installed("torchaudio"):
        return "absent"

    try:
        importlib.import_module("torchaudio")
        return "native"
    except OSError:  # the extension's shared library (or one it links) failed to load
        _drop_modules("torchaudio")
    # Load torchaudio's own extension helper module first, with its library loader wrapped so that a
    # library that fails to load counts as absent; the package then imports it from sys.modules.
    package_dir = Path(importlib.util.find_spec("torchaudio").origin).parent
    name = "torchaudio._extension.utils"
    spec = importlib.util.spec_from_file_location(name, package_dir / "_extension" / "utils.py")
    utils = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(utils)
    load_lib = utils._load_lib

    def load_lib_or_report_missing(lib: str) -> bool:
        try:
            return load_lib(lib)
        except OSError:
            return False

    utils._load_lib = load_lib_or_report_missing
    sys.modules[name] = utils
    try:
        importlib.import_module("torchaudio")
    except BaseException:
        _drop_modules("torchaudio")
        raise
    sys.modules["torchaudio._extension"].utils = utils  # as a regular submodule import would bind it
    return "extension-disabled"
