"""Make `import torchvision` work on CPU-only torch installs where its compiled extension cannot load.

The registry's torchvision wheels are CUDA builds. Next to a CPU torch, their extension fails to load
and `import torchvision` then dies registering `torchvision::nms` ("operator ... does not exist"),
which breaks timm (needed by hear21passt) and transformers' CLAP imports. Defining the two operator
schemas first lets torchvision's pure-Python parts import; nms itself stays unusable (nothing here
calls it). This is the project's only workaround for it, and it does nothing where torchvision
imports on its own (CUDA machines, or a matching CPU build).
"""
from __future__ import annotations

import functools

_SCHEMA = "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"


@functools.lru_cache(maxsize=1)
def ensure_torchvision_importable() -> str:
    """Import torchvision, defining its missing op schemas only if the plain import fails.

    Returns "native" or "schema-shim" (recorded by backbones that depend on it)."""
    import importlib
    import sys

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
