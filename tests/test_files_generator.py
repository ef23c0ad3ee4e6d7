"""The `files` generator: audio generated elsewhere as suite cells, taken at its own rate and channels."""
import json

import numpy as np
import pytest

from bench.core.audio import write_audio
from bench.core.errors import ConfigError
from generators.base import GenerationRequest, GeneratorContext, PreflightQuery, Prompt, build_generator
from generators.files import fingerprint, preflight

RATE = 44100


def _stereo(seed: int, seconds: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(RATE * seconds)
    t = np.arange(n) / RATE
    tone = np.sin(2 * np.pi * rng.uniform(200, 2000) * t)
    return (0.3 * np.stack([tone, np.roll(tone, 7)]) + 0.01 * rng.standard_normal((2, n))).astype(np.float32)


def _prompts(ids):
    return tuple(Prompt(pid, f"caption of {pid}", i) for i, pid in enumerate(ids))


def _request(prompts, **kw):
    return GenerationRequest(prompts=prompts, seed=kw.pop("seed", None), duration_s=None,
                             sample_rate=kw.pop("sample_rate", None), **kw)


def test_folder_is_read_at_its_own_rate_and_channels(tmp_path):
    folder = tmp_path / "step-100"
    waves = {"a": _stereo(0), "b": _stereo(1)}
    for pid, wave in waves.items():
        write_audio(folder / f"{pid}.wav", wave, RATE)
    gen = build_generator("files", str(folder), GeneratorContext())
    out = {a.prompt_id: a for a in gen.generate(_request(_prompts(["a", "b"])))}
    for pid, wave in waves.items():
        assert out[pid].sample_rate == RATE and out[pid].waveform.shape == (2, RATE)
        np.testing.assert_array_equal(out[pid].waveform, wave)
        assert out[pid].metadata["native_sample_rate"] == RATE and out[pid].metadata["resampler"] is None
    # resampling happens only when a rate is asked for, and is recorded
    down = gen.generate(_request(_prompts(["a"]), sample_rate=16000))[0]
    assert down.sample_rate == 16000 and down.waveform.shape == (2, 16000)
    assert down.metadata["resampler"] == "soxr-vhq"


def test_missing_prompts_are_one_error_listing_all_or_skipped_by_policy(tmp_path):
    folder = tmp_path / "ckpt"
    write_audio(folder / "a.wav", _stereo(0), RATE)
    write_audio(folder / "stray.wav", _stereo(2), RATE)
    gen = build_generator("files", str(folder), GeneratorContext())
    prompts = _prompts(["a", "b", "c"])
    with pytest.raises(ConfigError, match=r"2 prompt file\(s\) missing .*b, c.*missing = \"skip\""):
        gen.generate(_request(prompts))
    kept = gen.generate(_request(prompts, options={"missing": "skip"}))
    assert [a.prompt_id for a in kept] == ["a"]
    problems, warnings = preflight(PreflightQuery(str(folder), {}, prompts, (None,), 1))
    assert len(problems) == 1 and "b, c" in problems[0]
    assert any("stray" in w and "match no prompt" in w for w in warnings)
    problems, warnings = preflight(PreflightQuery(str(folder), {"missing": "skip"}, prompts, (None,), 1))
    assert not problems and any("skipped" in w for w in warnings)


def test_pattern_with_sample_and_seed_fields(tmp_path):
    folder = tmp_path / "ckpt"
    for seed in (0, 1):
        for k in (0, 1):
            write_audio(folder / f"seed{seed}" / f"a_{k}.wav", _stereo(10 * seed + k), RATE)
    gen = build_generator("files", str(folder), GeneratorContext())
    options = {"pattern": "seed{seed}/{prompt_id}_{sample}.wav"}
    out = gen.generate(_request(_prompts(["a"]), seed=1, samples_per_prompt=2, options=options))
    assert [(a.prompt_id, a.sample_index) for a in out] == [("a", 0), ("a", 1)]
    np.testing.assert_array_equal(out[1].waveform, _stereo(11))
    with pytest.raises(ConfigError, match=r"samples_per_prompt = 2 needs \{sample\}"):
        gen.generate(_request(_prompts(["a"]), samples_per_prompt=2))
    with pytest.raises(ConfigError, match=r"uses \{seed\}: give `seeds"):
        gen.generate(_request(_prompts(["a"]), samples_per_prompt=2, options=options))
    with pytest.raises(ConfigError, match=r"unknown options \[.patern.\]"):
        gen.generate(_request(_prompts(["a"]), options={"patern": "{prompt_id}"}))


def test_manifest_checkpoint_and_content_identity(tmp_path):
    write_audio(tmp_path / "x.wav", _stereo(0), RATE)
    manifest = tmp_path / "outputs.jsonl"
    manifest.write_text(json.dumps({"id": "a", "path": "x.wav"}) + "\n")
    gen = build_generator("files", str(manifest), GeneratorContext())
    assert gen.generate(_request(_prompts(["a"])))[0].metadata["source_file"].endswith("x.wav")
    before = fingerprint(str(manifest))
    assert gen.checkpoint_sha256 == before
    write_audio(tmp_path / "x.wav", _stereo(5), RATE)  # regenerated under the same name: a new identity
    assert fingerprint(str(manifest)) != before


SUITE = """
name = "byo"
metrics = ["fad-vggish@audioldm"]
reference = "ref.jsonl"
[generation]
duration_s = 1.0
[[generators]]
name = "reference"
[[generators]]
name = "files"
label = "my-model"
checkpoints = ["outputs/step-*"]
[weights]
mode = "untrained"
[scoring]
bootstrap = 10
[[gates]]
check = "fad-vggish@audioldm <= 0.0"
generator = "reference"
[[gates]]
check = "fad-vggish@audioldm <= 1000000"
label = "my-model"
"""


def _byo_project(tmp_path, ids=("a", "b", "c", "d")):
    rows = []
    for i, pid in enumerate(ids):
        write_audio(tmp_path / "ref" / f"{pid}.wav", _stereo(i), RATE)
        rows.append(json.dumps({"id": pid, "path": f"ref/{pid}.wav", "caption": f"sound {pid}"}))
        for step, noise in ((100, 0.3), (2000, 0.05)):
            wave = _stereo(i) + noise * np.random.default_rng(step + i).standard_normal((2, RATE)).astype(np.float32)
            write_audio(tmp_path / "outputs" / f"step-{step}" / f"{pid}.wav", wave, RATE)
    (tmp_path / "ref.jsonl").write_text("\n".join(rows) + "\n")
    (tmp_path / "suite.toml").write_text(SUITE)
    return tmp_path / "suite.toml"


def test_suite_with_two_checkpoint_folders_of_44k_stereo_audio(tmp_path, cache_dir, capsys):
    from bench.cli import main
    from leaderboards.sources import load_records

    suite = _byo_project(tmp_path)
    out = tmp_path / "results"
    assert main(["run", str(suite), "--out", str(out), "--quiet"]) == 0
    records = load_records(out)
    assert len(records) == 3
    oracle = next(r for r in records if r.generator == "reference")
    assert oracle.metrics[0]["value"] == 0.0  # exact: the reference at its own 44.1 kHz stereo
    mine = sorted((r for r in records if r.label == "my-model"), key=lambda r: r.cell["checkpoint"])
    assert [r.cell["checkpoint"].rsplit("/", 1)[1] for r in mine] == ["step-100", "step-2000"]
    for r in mine:
        assert r.generation["output_sample_rates"] == [RATE] and r.generation["channels"] == [2]
        assert r.cell["sample_rate"] is None and r.timing["real_time_factor"] is None
    assert mine[0].metrics[0]["value"] > mine[1].metrics[0]["value"] > 0  # noisier checkpoint is worse
    gates = capsys.readouterr().out
    assert "PASS  fad-vggish@audioldm <= 1e+06 [label=my-model]" in gates and gates.count("[label=my-model]") == 2

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    assert len(client.search_runs([client.get_experiment_by_name("byo").experiment_id])) == 3

    board = tmp_path / "board.md"
    assert main(["leaderboard", "--records", str(out), "--layout", "checkpoints", "--out", str(board)]) == 0
    text = board.read_text()
    assert "## my-model" in text and text.index("step-100") < text.index("step-2000")
    assert "| my-model | step-100 |" in (out / "leaderboard.md").read_text()

    # A regenerated folder is a new checkpoint: its record is recomputed, the other cells are reused.
    write_audio(tmp_path / "outputs" / "step-2000" / "a.wav", _stereo(0), RATE)
    def records():
        return {p.name: p.stat().st_mtime_ns for p in (out / "records").glob("*.json")
                if not p.name.endswith(".tracking.json")}

    before = records()
    assert main(["run", str(suite), "--out", str(out), "--quiet"]) == 0
    changed = [name for name, mtime in records().items() if mtime != before.get(name)]
    assert len(changed) == 1 and "step-2000" in changed[0]
