"""Optional features and the pip extras that install them.

The core install scores the default metrics; each optional feature names its extra in pyproject.toml.
A feature whose package is missing stops with one line naming the extra to install (MissingExtraError).
"""
from __future__ import annotations

import importlib
from types import ModuleType

from bench.core.errors import BenchError

DISTRIBUTION = "bench-harness"

# extra -> what it enables (the extras themselves are declared in pyproject.toml; a test keeps both in step)
EXTRAS = {
    "clap": "CLAP score metrics (clap@*)",
    "passt": "PaSST KL metrics (kl-passt@*)",
    "panns": "PANNs metrics (fd/is/kl-panns*, kad-panns*)",
    "fadtk": "fadtk's embedding models as FAD metrics (fad-*@fadtk: CLAP, EnCodec, DAC, MERT)",
    "aesthetics": "Audiobox Aesthetics ratings (aesthetics-{ce,cu,pc,pq}@audiobox)",
    "openl3": "OpenL3 metrics (fd-openl3*@stableaudio); then pip install --no-deps torchopenl3==1.0.1",
    "captions": "caption metrics (caption-*) and the Whisper captioners",
    "ray": "the Ray executor (--executor ray)",
    "diffusers": "the AudioLDM 2 generator (diffusers)",
    "generators": "the mel-vocoder generators (diffsound, srcgaudio) and DAC (dac-resynthesis, discodiff)",
    "ui": "the MLflow UI and tracking server (mlflow ui, mlflow server)",
    "listen": "listening tests (bench listen serve)",
}


class MissingExtraError(BenchError):
    """An optional feature was used without the extra that installs its packages."""


def install_hint(extra: str) -> str:
    return f"pip install '{DISTRIBUTION}[{extra}]'"


def missing_extra(extra: str, feature: str, package: str) -> MissingExtraError:
    if extra not in EXTRAS:
        raise KeyError(f"unknown extra {extra!r}; known: {', '.join(EXTRAS)}")
    return MissingExtraError(f"{feature} needs {package}, which is not installed: {install_hint(extra)}")


def require(module: str, extra: str, feature: str) -> ModuleType:
    """Import `module`, or stop with one line naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        raise missing_extra(extra, feature, (exc.name or module).split(".")[0]) from None
