"""Shared fixtures. Tests never use the network: weights are seeded or written by the test itself."""
import os

import pytest

# No test may reach a hub or a weights server; a missing checkpoint must fail, not download.
os.environ["BENCH_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# `bench run` appends to a CI job summary when this is set; tests must not write into the real one.
os.environ.pop("GITHUB_STEP_SUMMARY", None)


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("BENCH_CACHE_DIR", str(root))
    return root


def write_clips(directory, clips):
    """Write {id: (waveform [C, n], rate)} as WAV files; return the directory."""
    from bench.core.audio import write_audio

    directory.mkdir(parents=True, exist_ok=True)
    for clip_id, (wave, rate) in clips.items():
        write_audio(directory / f"{clip_id}.wav", wave, rate)
    return directory
