"""Fuzzing what users hand us: manifest bytes, suite tables and TOML text, mutated audio headers.

The only acceptable outcomes are success or a BenchError (whose message the CLI prints); never another
exception, never a hang. Example counts are bounded so the module runs in seconds.
"""
import io
import signal
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.core.audio import audio_info, read_audio, read_blocks
from bench.core.clipsets import MANIFEST_COLUMNS, load_directory, load_manifest
from bench.core.errors import BenchError
from bench.suite import _TOP_KEYS, _parse_toml, parse_suite

# Registries import scipy, torch models and plugins on first use: do it once here, outside the hang guard.
from generators.base import GENERATORS  # noqa: E402
from metrics.backbones.base import BACKBONES  # noqa: E402
from metrics.registry import all_metrics  # noqa: E402

GENERATORS.load(), BACKBONES.load(), all_metrics()

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@contextmanager
def no_hang(seconds=20):
    def fail(*_):
        raise AssertionError(f"no answer within {seconds} s")

    old = signal.signal(signal.SIGALRM, fail)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _bench_error_or_success(fn, *args, **kwargs):
    with no_hang():
        try:
            return fn(*args, **kwargs)
        except BenchError as exc:
            assert str(exc)  # a message the user can act on
            return None


# ------------------------------------------------------------------ manifests

@FUZZ
@given(data=st.binary(max_size=300), suffix=st.sampled_from([".jsonl", ".csv"]),
       require_audio=st.booleans())
def test_manifest_bytes(data, suffix, require_audio):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"m{suffix}"
        path.write_bytes(data)
        _bench_error_or_success(load_manifest, path, require_audio)


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                           | st.text(max_size=8), lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=6)
columns = st.sampled_from([*MANIFEST_COLUMNS, "captoin", "pth", "label", "extra"]) | st.text(max_size=6)


@FUZZ
@given(rows=st.lists(st.dictionaries(columns, json_values, max_size=5), min_size=1, max_size=4))
def test_manifest_rows(rows):
    import json

    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "a.wav").write_bytes(b"")
        path = Path(d) / "m.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        for require_audio in (True, False):
            _bench_error_or_success(load_manifest, path, require_audio)


# ------------------------------------------------------------------ suites

toml_scalars = st.booleans() | st.integers(-10, 10 ** 6) | st.floats(allow_nan=True) | st.text(max_size=10) | \
    st.sampled_from(["noise", "reference", "fad-vggish@audioldm", "builtin:synthetic", "soxr-vhq", "vggish"])
toml_values = st.recursive(toml_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.sampled_from(["name", "steps", "seeds", "checkpoints", "mode", "check", "builtin", "uri", "limit",
                     "duration_s", "sample_rates", "guidance", "batch_size", "vggish", "x"]), inner, max_size=4),
    max_leaves=8)


@FUZZ
@given(raw=st.dictionaries(st.sampled_from(sorted(_TOP_KEYS)) | st.text(max_size=5), toml_values, max_size=6))
def test_suite_tables(raw):
    with tempfile.TemporaryDirectory() as d:
        _bench_error_or_success(parse_suite, raw, "fuzz.toml", Path(d))


VALID = {"metrics": ["fad-vggish@audioldm"], "reference": "builtin:synthetic", "generators": [{"name": "noise"}]}


@FUZZ
@given(section=st.sampled_from(["generation", "weights", "scoring", "tracking", "prompts"]),
       table=st.dictionaries(st.sampled_from(["steps", "seeds", "duration_s", "sample_rates", "samples_per_prompt",
                                              "resampler", "guidance", "batch_size", "checkpoints", "mode", "seed",
                                              "limit", "manifest", "enabled", "uri"]), toml_values, max_size=4),
       generator=st.dictionaries(st.sampled_from(["steps", "seeds", "label", "checkpoints", "guidance",
                                                  "sample_rates", "duration_s"]), toml_values, max_size=3))
def test_suite_sections_near_valid(section, table, generator):
    raw = {**VALID, section: table, "generators": [{"name": "noise", **generator}]}
    with tempfile.TemporaryDirectory() as d:
        _bench_error_or_success(parse_suite, raw, "fuzz.toml", Path(d))


@FUZZ
@given(text=st.text(max_size=200))
def test_suite_toml_text(text):
    def load():
        return parse_suite(_parse_toml(text, "fuzz.toml"), "fuzz.toml", Path(tempfile.gettempdir()))

    _bench_error_or_success(load)


# ------------------------------------------------------------------ audio headers

def _encoded(fmt: str) -> bytes:
    t = np.arange(1600) / 16000
    x = np.stack([0.3 * np.sin(2 * np.pi * 440 * t)] * 2, axis=1).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, x, 16000, format=fmt, **({"subtype": "PCM_16"} if fmt == "WAV" else {}))
    return buf.getvalue()


ENCODED = {fmt: _encoded(fmt) for fmt in ("WAV", "FLAC", "OGG")}
SUFFIX = {"WAV": ".wav", "FLAC": ".flac", "OGG": ".ogg"}


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fmt=st.sampled_from(sorted(ENCODED)),
       flips=st.lists(st.tuples(st.integers(0, 79), st.integers(0, 255)), min_size=1, max_size=6),
       cut=st.none() | st.integers(0, 4000))
def test_mutated_audio_headers(fmt, flips, cut):
    data = bytearray(ENCODED[fmt])
    for position, value in flips:
        data[position % len(data)] = value
    if cut is not None:
        data = data[:cut]
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"clip{SUFFIX[fmt]}"
        path.write_bytes(bytes(data))
        waveform = _bench_error_or_success(read_audio, path)
        if waveform is not None:
            assert np.isfinite(waveform[0]).all() and waveform[0].shape[1] > 0
        _bench_error_or_success(audio_info, path)
        _bench_error_or_success(lambda: [b.shape for b in read_blocks(path, 500)])
        _bench_error_or_success(lambda: load_directory(d).fingerprint())


@pytest.mark.parametrize("fmt", sorted(ENCODED))
def test_unmutated_audio_reads(fmt):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"clip{SUFFIX[fmt]}"
        path.write_bytes(ENCODED[fmt])
        waveform, rate = read_audio(path)
        assert rate == 16000 and waveform.shape[0] == 2
        assert np.array_equal(np.concatenate(list(read_blocks(path, 500)), axis=1), waveform)
