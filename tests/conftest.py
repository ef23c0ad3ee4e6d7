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


LISTENING_SUITE = """
name = "tiny-listen"
metrics = ["fad-vggish@audioldm"]
[reference]
builtin = "synthetic"
n_clips = 4
duration_s = 1.0
[generation]
duration_s = 1.0
[[generators]]
name = "reference"
[[generators]]
name = "noise"
[[generators]]
name = "silence"
[weights]
mode = "untrained"
[scoring]
bootstrap = 10
"""


@pytest.fixture(scope="session")
def listening_results(tmp_path_factory):
    """A finished tiny suite (reference, noise, silence on 4 synthetic 1 s clips) for listening studies."""
    from bench.cli import main

    root = tmp_path_factory.mktemp("listening-suite")
    (root / "suite.toml").write_text(LISTENING_SUITE)
    old = os.environ.get("BENCH_CACHE_DIR")
    os.environ["BENCH_CACHE_DIR"] = str(root / "cache")
    try:
        assert main(["run", str(root / "suite.toml"), "--out", str(root / "results"), "--quiet",
                     "--no-tracking"]) == 0
    finally:
        if old is None:
            os.environ.pop("BENCH_CACHE_DIR")
        else:
            os.environ["BENCH_CACHE_DIR"] = old
    return root / "results"
