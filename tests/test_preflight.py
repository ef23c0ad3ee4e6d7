"""Preflight: every problem a suite has is reported at once, before anything is generated."""
import json

import numpy as np
import pytest

from bench.core.audio import write_audio
from bench.preflight import PreflightError


def _clip(seed):
    return (0.1 * np.random.default_rng(seed).standard_normal((1, 16000))).astype(np.float32)


SUITE = """
name = "broken"
metrics = ["fad-vggish@audioldm", "fd-panns@audioldm", "kl-panns@audioldm", "clap@general"]
reference = "ref.jsonl"
[prompts]
manifest = "prompts.jsonl"
[[generators]]
name = "noise"
[[generators]]
name = "files"
label = "mine"
checkpoints = ["outputs/step-100", "outputs/step-200", "outputs/gone"]
[[generators]]
name = "audioldm2"
checkpoints = ["hf://cvssp/audioldm2"]
[[generators]]
factory = "no_such_module_xyz:make"
label = "plugin"
"""


def test_every_problem_in_one_message_and_nothing_generated(tmp_path, cache_dir, monkeypatch):
    from bench.cli import main

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty Hugging Face cache
    rows = [json.dumps({"id": pid, "path": f"ref/{pid}.wav", "caption": pid}) for pid in ("a", "b", "c")]
    for pid in ("a", "b", "c"):
        write_audio(tmp_path / "ref" / f"{pid}.wav", _clip(0), 16000)
    (tmp_path / "ref.jsonl").write_text("\n".join(rows) + "\n")
    # prompts a, b, x: x has no reference clip, so the paired KL cannot pair
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps({"id": p, "caption": p}) + "\n" for p in "abx"))
    write_audio(tmp_path / "outputs" / "step-100" / "a.wav", _clip(1), 16000)  # b and x missing
    for pid in "abx":
        write_audio(tmp_path / "outputs" / "step-200" / f"{pid}.wav", _clip(2), 16000)
    (tmp_path / "suite.toml").write_text(SUITE)
    (tmp_path / "outputs" / "gone").mkdir()
    (tmp_path / "outputs" / "gone").rmdir()

    from bench.runner import RunOptions, run_suite
    from bench.suite import load_suite

    suite = load_suite(tmp_path / "suite.toml")
    with pytest.raises(PreflightError) as info:
        run_suite(suite, RunOptions(results_dir=tmp_path / "out", progress=False, tracking=False),
                  log=lambda *a: None)
    message = str(info.value)
    for expected in ("vggish-10086976.pth", "Cnn14_16k_mAP=0.438.pth", "630k-audioset-best.pt",
                     "vocab.json of the Hugging Face repo roberta-base", "merges.txt",
                     "outputs/step-100: 2 prompt file(s) missing", "b, x", "outputs/gone does not exist",
                     "hf://cvssp/audioldm2 is not in the local HF cache", "no_such_module_xyz",
                     "kl-panns@audioldm", "ids do not pair up"):
        assert expected in message, expected
    assert "step-200" not in message
    assert not (tmp_path / "out" / "cells").exists()  # nothing generated
    # the CLI prints the same one message and exits 2
    assert main(["run", str(tmp_path / "suite.toml"), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    assert not (tmp_path / "out" / "cells").exists()
