"""Optional features: each names its pip extra in one line when its package is missing."""
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from bench.cli import main
from bench.core import extras
from bench.core.errors import BenchError
from bench.core.extras import MissingExtraError
from tests.conftest import write_clips

PYPROJECT = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())["project"]


def _hide(monkeypatch, *modules):
    """Make `import module` raise ModuleNotFoundError, as if the package were not installed."""
    for name in modules:
        for loaded in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            monkeypatch.delitem(sys.modules, loaded)
        monkeypatch.setitem(sys.modules, name, None)


def test_every_extra_in_pyproject_is_known_and_all_holds_them():
    declared = set(PYPROJECT["optional-dependencies"])
    assert declared - {"all", "test", "docs"} == set(extras.EXTRAS)
    (everything,) = PYPROJECT["optional-dependencies"]["all"]
    assert everything == f"bench-harness[{','.join(extras.EXTRAS)}]"
    core = " ".join(PYPROJECT["dependencies"])
    for optional in ("laion-clap", "ray", "diffusers", "hear21passt", "pycocoevalcap", "transformers"):
        assert optional not in core
    assert "laion-clap==1.1.7" in PYPROJECT["optional-dependencies"]["test"]
    assert set(PYPROJECT["scripts"]) == {"bench", "tta-bench"}


def test_require_names_the_extra_in_one_line(monkeypatch):
    _hide(monkeypatch, "ray")
    with pytest.raises(MissingExtraError) as info:
        extras.require("ray", "ray", "executor 'ray'")
    assert str(info.value) == "executor 'ray' needs ray, which is not installed: pip install 'bench-harness[ray]'"
    assert isinstance(info.value, BenchError)
    with pytest.raises(KeyError, match="unknown extra"):
        extras.missing_extra("nope", "x", "y")


@pytest.mark.parametrize("hidden, extra, call", [
    ("hear21passt", "passt", lambda: __import__("metrics.backbones.passt", fromlist=["x"]).network_module()),
    ("transformers", "clap", lambda: __import__("metrics.backbones.clap", fromlist=["x"]).import_transformers_clap()),
    ("pycocoevalcap", "captions", lambda: __import__("metrics.coco_caption_scores", fromlist=["x"]).package_dir()),
    ("diffusers", "diffusers", lambda: __import__("generators.audioldm2_tiny", fromlist=["x"]).import_diffusers()),
    ("librosa", "generators", lambda: __import__("generators.mel_audio", fromlist=["x"]).mel_filters.__wrapped__(
        16000, 512, 64, 0.0, None)),
    ("ray", "ray", lambda: __import__("bench.executors", fromlist=["x"]).make_executor("ray", None, None).map(
        None, [])),
])
def test_each_optional_feature_names_its_extra(monkeypatch, hidden, extra, call):
    _hide(monkeypatch, hidden)
    with pytest.raises(MissingExtraError, match=rf"needs {hidden}.*pip install 'bench-harness\[{extra}\]'$"):
        result = call()
        if hasattr(result, "__next__"):
            next(result)


def test_panns_without_frechet_audio_distance_names_the_extra(monkeypatch):
    from metrics.backbones import panns

    monkeypatch.setattr(panns.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MissingExtraError, match=r"pip install 'bench-harness\[panns\]'"):
        panns.vendored_models.__wrapped__()


def test_cli_prints_one_line_naming_the_extra(tmp_path, cache_dir, monkeypatch, capsys):
    rng = np.random.default_rng(0)
    clips = {f"c{i}": ((0.1 * rng.standard_normal((1, 16000))).astype(np.float32), 16000) for i in range(3)}
    gen, ref = write_clips(tmp_path / "gen", clips), write_clips(tmp_path / "ref", clips)
    _hide(monkeypatch, "hear21passt")
    code = main(["score", "--metric", "kl-passt@audiocraft", "--generated", str(gen), "--reference", str(ref),
                 "--weights", "untrained", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().splitlines() == [
        "error: PaSST (kl-passt metrics) needs hear21passt, which is not installed: "
        "pip install 'bench-harness[passt]'"]


def test_core_install_without_torchvision_or_torchaudio_still_names_the_extra(monkeypatch):
    """A core install has neither: the compatibility shims find nothing to repair, PaSST names [passt]."""
    from bench.core import torch_compat
    from metrics.backbones import passt

    torch_compat.ensure_torchvision_importable.cache_clear()  # cached results are for the installed packages
    torch_compat.ensure_torchaudio_importable.cache_clear()
    _hide(monkeypatch, "hear21passt", "torchvision", "torchaudio", "timm")
    try:
        assert torch_compat.ensure_torchvision_importable() == "absent"
        assert torch_compat.ensure_torchaudio_importable() == "absent"
        with pytest.raises(MissingExtraError, match=r"needs hear21passt.*bench-harness\[passt\]"):
            passt.network_module()
    finally:
        torch_compat.ensure_torchvision_importable.cache_clear()
        torch_compat.ensure_torchaudio_importable.cache_clear()
