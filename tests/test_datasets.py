import hashlib
import json
import re

import numpy as np
import pytest
import soundfile as sf

from bench.core.clipsets import ClipRef, load_directory, load_manifest
from bench.core.synthetic import SYNTHETIC_CLASSES, synthetic_dataset
from bench.core.clip_sources import open_clip_set
from bench.core.errors import AudioError, ConfigError, ManifestError


def _wav(path, seed=0, frames=800, rate=16000):
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.random.default_rng(seed).uniform(-0.5, 0.5, frames).astype(np.float32)
    sf.write(str(path), data, rate, subtype="FLOAT" if path.suffix.lower() == ".wav" else None)
    return data


@pytest.fixture
def audio_dir(tmp_path):
    _wav(tmp_path / "audio" / "a.wav", seed=1)
    _wav(tmp_path / "audio" / "b.wav", seed=2)
    return tmp_path


def _jsonl(path, rows):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


# ------------------------------------------------------------------------------------ manifests

def test_jsonl_manifest_happy_path(audio_dir):
    manifest = _jsonl(audio_dir / "refs.jsonl", [
        {"id": "a", "path": "audio/a.wav", "caption": "a dog barks", "labels": ["dog", "bark"], "split": "test"},
        "",
        {"id": "b", "path": str(audio_dir / "audio" / "b.wav"), "meta": {"x": [1, 2]}},
    ])
    clips = load_manifest(manifest)
    assert (clips.name, clips.kind, clips.source, len(clips)) == ("refs", "manifest", str(manifest), 2)
    a, b = clips.clips
    assert a == ClipRef("a", "a dog barks", ("dog", "bark"), audio_dir / "audio" / "a.wav",
                        f"{manifest} row 1", (("split", "test"),))
    assert b.caption is None and b.labels == () and b.origin == f"{manifest} row 3"
    assert dict(b.extra) == {"meta": (("x", (1, 2)),)}
    hash(b)  # nested JSON values are frozen, so ClipRefs stay hashable
    wave, rate = clips.load(a)
    assert rate == 16000 and wave.shape == (1, 800)
    assert np.array_equal(clips.load("b")[0][0], sf.read(str(audio_dir / "audio" / "b.wav"), dtype="float32")[0])
    assert set(clips.by_id()) == {"a", "b"}


def test_csv_manifest_happy_path(audio_dir):
    manifest = audio_dir / "refs.csv"
    manifest.write_text("id, path ,caption,labels,split\n"
                        "a,audio/a.wav,\"a dog barks, twice\",dog; bark,test\n"
                        "\n"
                        "b,audio/b.wav,,,train\n")
    a, b = load_manifest(manifest).clips
    assert a == ClipRef("a", "a dog barks, twice", ("dog", "bark"), audio_dir / "audio" / "a.wav",
                        f"{manifest} row 2", (("split", "test"),))
    assert b.caption is None and b.labels == () and b.origin == f"{manifest} row 4"


def test_prompt_manifest_without_audio(tmp_path):
    manifest = _jsonl(tmp_path / "prompts.jsonl", [{"id": "p1", "caption": "rain"}, {"id": "p2", "caption": "wind"}])
    prompts = load_manifest(manifest, require_audio=False)
    assert [c.path for c in prompts.clips] == [None, None]
    with pytest.raises(AudioError, match="no audio"):
        prompts.load("p1")
    before = prompts.fingerprint()  # text-only clips hash their caption and labels
    _jsonl(manifest, [{"id": "p1", "caption": "rain"}, {"id": "p2", "caption": "storm"}])
    assert load_manifest(manifest, require_audio=False).fingerprint() != before


JSONL_ERRORS = [
    (['{"id": "a", "path": "audio/a.wav"}', '{"id": "b", "path": '], r"row 2: invalid JSON"),
    ([{"id": "a", "path": "audio/a.wav"}, ["b"]], r"row 2: expected a JSON object"),
    ([{"id": "a", "path": "audio/a.wav"}, {"path": "audio/b.wav"}], r"row 2: field 'id' is missing"),
    ([{"id": " ", "path": "audio/a.wav"}], r"row 1: field 'id' is empty"),
    ([{"id": 7, "path": "audio/a.wav"}], r"row 1: field 'id' must be a string"),
    ([{"id": "a", "path": "audio/a.wav"}, {"id": "b", "path": "audio/b.wav"}, {"id": "a", "path": "audio/b.wav"}],
     r"duplicate id 'a' in rows 1 and 3"),
    ([{"id": "a", "path": "audio/a.wav"}, {"id": "b", "path": "audio/zzz.wav"}],
     r"row 2: field 'path' 'audio/zzz.wav' does not exist \(resolved to .*zzz\.wav"),
    ([{"id": "a", "path": "audio"}], r"row 1: field 'path' 'audio' is a folder"),
    ([{"id": "a"}], r"row 1: field 'path' is missing"),
    ([{"id": "a", "path": 3}], r"row 1: field 'path' must be a string"),
    ([{"id": "a", "path": "audio/a.wav", "labels": "dog"}], r"row 1: field 'labels' must be a list of strings"),
    ([{"id": "a", "path": "audio/a.wav", "caption": ["x"]}], r"row 1: field 'caption' must be a string"),
    (["", "  "], r"manifest has no rows"),
]


@pytest.mark.parametrize("rows, pattern", JSONL_ERRORS)
def test_jsonl_manifest_errors(audio_dir, rows, pattern):
    manifest = _jsonl(audio_dir / "bad.jsonl", rows)
    with pytest.raises(ManifestError) as info:
        load_manifest(manifest)
    assert str(manifest) in str(info.value)
    assert re.search(pattern, str(info.value)), str(info.value)


CSV_ERRORS = [
    ("path,caption\naudio/a.wav,x\n", r"row 1 \(header\): no 'id' column"),
    ("id,path,id\na,audio/a.wav,b\n", r"row 1 \(header\): column 'id' appears twice"),
    ("id,path\na,audio/a.wav\nb,audio/b.wav\na,audio/b.wav\n",
     r"duplicate id 'a' in rows 2 and 4 \(header = row 1\)"),
    ("id,path\na,audio/a.wav\nb,audio/nope.wav\n",
     r"row 3 \(header = row 1\): field 'path' 'audio/nope.wav' does not"),
    ("id,path\na,audio/a.wav\n,audio/b.wav\n", r"row 3 \(header = row 1\): field 'id' is empty"),
    ("id,path\na,audio/a.wav,extra\n", r"row 2 \(header = row 1\): 3 fields but the header has 2"),
    ("id,path\nb,\n", r"row 2 \(header = row 1\): field 'path' is missing"),
    ("id,path\n", r"manifest has no rows"),
    ("", r"manifest is empty"),
]


@pytest.mark.parametrize("text, pattern", CSV_ERRORS)
def test_csv_manifest_errors(audio_dir, text, pattern):
    manifest = audio_dir / "bad.csv"
    manifest.write_text(text)
    with pytest.raises(ManifestError) as info:
        load_manifest(manifest)
    assert str(manifest) in str(info.value)
    assert re.search(pattern, str(info.value)), str(info.value)


def test_manifest_file_errors(tmp_path):
    with pytest.raises(ManifestError, match=r"refs\.txt.*\.jsonl"):
        load_manifest(tmp_path / "refs.txt")
    with pytest.raises(ManifestError, match=r"missing\.jsonl: manifest not found"):
        load_manifest(tmp_path / "missing.jsonl")


# ------------------------------------------------------------------------------------ folders

def test_directory_loading(tmp_path):
    _wav(tmp_path / "set" / "zeta.WAV", seed=1)
    _wav(tmp_path / "set" / "sub" / "b.flac", seed=2)
    _wav(tmp_path / "set" / "a.wav", seed=3)
    (tmp_path / "set" / "notes.txt").write_text("not audio")
    clips = load_directory(tmp_path / "set")
    assert (clips.name, clips.kind, len(clips)) == ("set", "directory", 3)
    assert [c.id for c in clips.clips] == ["a", "sub/b", "zeta"]
    assert clips.clips[1].path == tmp_path / "set" / "sub" / "b.flac"
    assert clips.load("sub/b")[0].shape == (1, 800)


def test_directory_errors(tmp_path):
    with pytest.raises(ManifestError, match=r"nowhere: audio folder not found"):
        load_directory(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.md").write_text("x")
    with pytest.raises(ManifestError, match=r"empty: no audio files"):
        load_directory(tmp_path / "empty")
    _wav(tmp_path / "dup" / "a.wav")
    _wav(tmp_path / "dup" / "a.flac")
    with pytest.raises(ManifestError, match=r"a\.flac and .*a\.wav both give clip id 'a'"):
        load_directory(tmp_path / "dup")


def test_fingerprint_tracks_audio_content_not_container_bytes(tmp_path):
    _wav(tmp_path / "set" / "a.wav", seed=1)
    _wav(tmp_path / "set" / "b.wav", seed=2)
    first = load_directory(tmp_path / "set")
    clip = first.by_id()["a"]
    wave, rate = first.load(clip)
    expected = hashlib.sha256(f"sample_rate={rate};shape={wave.shape[0]}x{wave.shape[1]};".encode()
                              + wave.astype("<f4").tobytes()).hexdigest()
    assert first.clip_hash(clip) == expected
    # The same audio in another container (16-bit WAV and FLAC) has the same identity.
    import soundfile as sf
    ints = (np.random.default_rng(4).uniform(-0.5, 0.5, 800) * 32767).astype(np.int16)
    for folder, name in (("pcm", "a.wav"), ("flac", "a.flac")):
        (tmp_path / folder).mkdir()
        sf.write(tmp_path / folder / name, ints, 16000, subtype="PCM_16")
    assert (load_directory(tmp_path / "pcm").clip_hash("a") == load_directory(tmp_path / "flac").clip_hash("a"))
    assert load_directory(tmp_path / "set").fingerprint() == first.fingerprint()
    described = first.describe()
    assert described == {"name": "set", "kind": "directory", "source": str(tmp_path / "set"), "n_clips": 2,
                         "fingerprint": first.fingerprint()}
    _wav(tmp_path / "set" / "b.wav", seed=3)
    assert load_directory(tmp_path / "set").fingerprint() != first.fingerprint()


# ------------------------------------------------------------------------------------ synthetic

def _dominant_hz(wave, rate):
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return np.fft.rfftfreq(len(wave), 1 / rate)[np.argmax(spectrum)]


def test_synthetic_is_deterministic():
    one, two = synthetic_dataset(9, 8000, 0.5, seed=3), synthetic_dataset(9, 8000, 0.5, seed=3)
    assert [c.caption for c in one.clips] == [c.caption for c in two.clips]
    for c in one.clips:
        assert np.array_equal(one.load(c)[0], two.load(c.id)[0])
    assert one.fingerprint() == two.fingerprint()
    other = synthetic_dataset(9, 8000, 0.5, seed=4)
    assert [c.caption for c in other.clips] != [c.caption for c in one.clips]
    assert other.fingerprint() != one.fingerprint()
    # clip i depends on (seed, i) only, not on how many clips the set has
    bigger = synthetic_dataset(12, 8000, 0.5, seed=3)
    assert bigger.clips[5].caption == one.clips[5].caption
    assert np.array_equal(bigger.load("synthetic-0005")[0], one.load("synthetic-0005")[0])


def test_synthetic_classes_and_captions():
    clips = synthetic_dataset(len(SYNTHETIC_CLASSES), 16000, 1.0).clips
    assert [c.id for c in clips][:2] == ["synthetic-0000", "synthetic-0001"]
    assert {c.labels[0] for c in clips} == set(SYNTHETIC_CLASSES) >= {"tone", "chord", "noise-burst", "chirp",
                                                                       "clicks", "am-tone", "plucks"}
    assert all(len(c.labels) == 2 and c.labels[1] for c in clips)
    assert len({c.caption for c in clips}) == len(clips)


@pytest.mark.parametrize("rate", [16000, 22050, 44100, 48000])
def test_synthetic_audio_at_common_rates(rate):
    clips = synthetic_dataset(len(SYNTHETIC_CLASSES), rate, 1.0, seed=rate)
    assert clips.kind == "synthetic" and clips.describe()["n_clips"] == len(SYNTHETIC_CLASSES)
    for clip in clips.clips:
        wave, got_rate = clips.load(clip)
        assert got_rate == rate and wave.shape == (1, rate) and wave.dtype == np.float32
        assert np.isfinite(wave).all() and 0.35 <= np.abs(wave).max() <= 0.65, clip.caption
        spectrum = np.abs(np.fft.rfft(wave[0].astype(np.float64)))
        above = spectrum[np.fft.rfftfreq(rate, 1 / rate) > 0.45 * rate]
        assert above.max() < 1e-4 * spectrum.max(), f"{clip.caption}: energy above 0.45 * sample rate"


def test_synthetic_tone_and_chirp_match_their_captions():
    clips = synthetic_dataset(7 * 4, 16000, 2.0, seed=11)
    tones = [c for c in clips.clips if c.labels[0] == "tone"]
    assert len(tones) == 4 and len({c.caption for c in tones}) == 4  # each clip draws its own parameters
    for clip in tones:
        stated = float(re.search(r"(\d+) Hz", clip.caption).group(1))
        assert abs(_dominant_hz(clips.load(clip)[0][0], 16000) - stated) <= 2, clip.caption
    for clip in (c for c in clips.clips if c.labels[0] == "chirp"):
        start, end = (float(f) for f in re.findall(r"(\d+) Hz", clip.caption))
        wave = clips.load(clip)[0][0]
        head, tail = _dominant_hz(wave[:1600], 16000), _dominant_hz(wave[-1600:], 16000)
        assert abs(head - start) < 0.1 * start and abs(tail - end) < 0.1 * end, clip.caption
        assert (tail > head) == (clip.labels[1] == "rising")


@pytest.mark.parametrize("kwargs, name", [({"n_clips": 0}, "n_clips"), ({"sample_rate": 7999}, "sample_rate"),
                                          ({"duration_s": 0}, "duration_s"),
                                          ({"duration_s": float("nan")}, "duration_s"),
                                          ({"seed": -1}, "seed"), ({"n_clips": 2.5}, "n_clips")])
def test_synthetic_argument_errors(kwargs, name):
    with pytest.raises(ConfigError, match=name):
        synthetic_dataset(**kwargs)


def test_synthetic_clip_hash_covers_samples():
    clips = synthetic_dataset(2, 8000, 0.25)
    wave, rate = clips.load("synthetic-0001")
    expected = hashlib.sha256(f"sample_rate={rate};shape=1x{wave.shape[1]};".encode() + wave.tobytes())
    assert clips.clip_hash("synthetic-0001") == expected.hexdigest()


# ------------------------------------------------------------------------------------ specs

def test_open_clip_set_specs(audio_dir):
    _jsonl(audio_dir / "refs.jsonl", [{"id": "a", "path": "audio/a.wav"}])
    (audio_dir / "refs.csv").write_text("id,path\na,audio/a.wav\n")
    assert len(open_clip_set("builtin:synthetic", audio_dir)) == 40
    small = open_clip_set({"builtin": "synthetic", "n_clips": 3, "sample_rate": 8000, "duration_s": 1, "seed": 2},
                          audio_dir)
    assert len(small) == 3 and small.load("synthetic-0002")[0].shape == (1, 8000)
    assert open_clip_set({"manifest": "refs.jsonl"}, audio_dir).kind == "manifest"
    assert open_clip_set("refs.csv", audio_dir).clips[0].path == audio_dir / "audio" / "a.wav"
    assert open_clip_set(str(audio_dir / "audio"), audio_dir).kind == "directory"
    assert [c.id for c in open_clip_set({"directory": "audio"}, audio_dir).clips] == ["a", "b"]


@pytest.mark.parametrize("spec, pattern", [
    ({"builtin": "synthetic", "clips": 3}, r"unknown key 'clips'.*n_clips, sample_rate, duration_s, seed"),
    ({"manifest": "refs.jsonl", "seed": 1}, r"unknown key 'seed'.*valid keys: manifest"),
    ({"builtin": "audiocaps"}, r"unknown built-in set 'audiocaps'.*synthetic"),
    ("builtin:nope", r"unknown built-in set 'nope'"),
    ({"manifest": "a.jsonl", "directory": "audio"}, r"exactly one of builtin, manifest, directory"),
    ({"path": "audio"}, r"exactly one of"),
    ({"manifest": "missing.jsonl"}, r"'missing.jsonl' does not exist"),
    ("nowhere/refs.csv", r"'nowhere/refs.csv' does not exist"),
    ({"builtin": "synthetic", "n_clips": 0}, r"n_clips"),
])
def test_open_clip_set_errors(audio_dir, spec, pattern):
    with pytest.raises(ConfigError, match=pattern) as info:
        open_clip_set(spec, audio_dir, where="suite.toml [reference]")
    assert str(info.value).startswith("suite.toml [reference]: ")
