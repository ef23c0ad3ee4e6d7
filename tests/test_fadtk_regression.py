"""The fadtk acceptance check (bench/benchmarks/fadtk_regression.py): opt-in against fadtk's published per-song
values once real weights are present; here also its behaviour without them."""
from __future__ import annotations

import importlib.util
import os

import pytest

from bench.benchmarks import fadtk_regression
from bench.core import weights
from bench.core.errors import BenchError


# fadtk's package files (samples, statistics, published scores); its __init__ needs torchaudio, so not imported
needs_fadtk = pytest.mark.skipif(importlib.util.find_spec("fadtk") is None, reason=fadtk_regression.INSTALL_HINT)


@pytest.fixture
def empty_offline_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants as hub

    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv(weights.OFFLINE_ENV, "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    return tmp_path


@needs_fadtk
def test_without_weights_every_preset_is_skipped_naming_what_to_download(empty_offline_cache, capsys):
    code = fadtk_regression.main(["--models", "encodec-emb", "dac-44kHz", "MERT-v1-95M"])
    out = capsys.readouterr().out
    assert code == 3 and "nothing checked" in out
    assert "encodec_24khz-d7cc33bc.th" in out and "dl.fbaipublicfiles.com/encodec/v0/" in out
    assert "dac_weights_44khz_8kbps_0.0.1.pth" in out and "hf download m-a-p/MERT-v1-95M" in out


@needs_fadtk
def test_published_table_has_every_preset_column():
    files = fadtk_regression.FadtkFiles.find(None)
    assert len(files.samples) == 23
    for model in fadtk_regression.PRESETS:
        published = files.published(model)
        assert len(published) == 24 and published["samples/all"] > 0


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("BENCH_FADTK_REGRESSION") != "1",
                    reason="opt-in: BENCH_FADTK_REGRESSION=1 with the real weights cached (bench weights fetch "
                           "clap-630k-audioset clap-music-audioset encodec-24khz encodec-48khz dac-44khz; "
                           "hf download m-a-p/MERT-v1-95M)")
@needs_fadtk
def test_fadtk_presets_reproduce_fadtks_published_per_song_values():
    files = fadtk_regression.FadtkFiles.find(None)
    checked, missing = [], []
    for model in fadtk_regression.PRESETS:
        try:
            result = fadtk_regression.check_model(model, files, weights_choice())
        except BenchError as exc:  # a missing checkpoint or tokenizer, named; numeric failures are not BenchErrors
            missing.append(f"{model}: {exc}")
            continue
        checked.append(model)
        assert result["pass"], result
    if not checked:
        pytest.skip("no fadtk model's weights are cached:\n" + "\n".join(missing))


def weights_choice():
    from metrics.backbones.base import WeightsChoice

    return WeightsChoice(allow_download=False)
