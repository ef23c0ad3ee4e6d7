"""The user's own inference command and Python factory as suite cells."""
import re
import sys
from pathlib import Path

from leaderboards.sources import load_records

INFER = '''
import argparse, json, pathlib, sys
import numpy as np, soundfile as sf
ap = argparse.ArgumentParser()
ap.add_argument("--ckpt"); ap.add_argument("--prompts"); ap.add_argument("--out"); ap.add_argument("--seed", type=int)
ap.add_argument("--steps", type=int); ap.add_argument("--sample-rate", type=int); ap.add_argument("--duration", type=float)
a = ap.parse_args()
with open(pathlib.Path(a.ckpt).parent / "calls.txt", "a") as f:
    f.write("call\\n")
scale = float(pathlib.Path(a.ckpt).read_text())
rate = 22050  # its own rate, whatever was asked: the harness resamples
for row in map(json.loads, open(a.prompts)):
    rng = np.random.default_rng(row["sample_seeds"][0])
    wave = scale * rng.standard_normal(int(rate * a.duration))
    sf.write(pathlib.Path(a.out) / (row["id"] + ".wav"), wave.astype(np.float32), rate, subtype="FLOAT")
print("wrote", a.out, "steps", a.steps)
'''

SUITE = """
name = "cmd"
metrics = ["fad-vggish@audioldm"]
[reference]
builtin = "synthetic"
n_clips = 4
duration_s = 1.0
[generation]
duration_s = 1.0
[[generators]]
name = "command"
label = "mine"
checkpoints = ["model.txt"]
steps = [3]
options.command = "{python} infer.py --ckpt {{checkpoint}} --prompts {{prompts_jsonl}} --out {{out_dir}} --seed {{seed}} --steps {{steps}} --sample-rate {{sample_rate}} --duration {{duration_s}}"
[[generators]]
name = "command"
label = "broken"
options.command = "{python} fail.py {{out_dir}}"
[[generators]]
factory = "mygen:make_generator"
label = "tone"
[weights]
mode = "untrained"
[scoring]
bootstrap = 10
"""


def _readme_example() -> str:
    readme = (Path(__file__).resolve().parents[1] / "docs" / "generators.md").read_text()  # the plugin how-to
    return re.search(r"```python\n(# mygen\.py.*?)```", readme, re.S).group(1)


def test_command_and_factory_cells(tmp_path, cache_dir, monkeypatch, capsys):
    from bench.cli import main

    (tmp_path / "infer.py").write_text(INFER)
    (tmp_path / "fail.py").write_text('import sys\nprint("loading model")\nprint("boom: no GPU", file=sys.stderr)\nsys.exit(3)\n')
    (tmp_path / "model.txt").write_text("0.1")
    (tmp_path / "mygen.py").write_text(_readme_example())
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "suite.toml").write_text(SUITE.format(python=sys.executable))
    out = tmp_path / "out"
    assert main(["run", str(tmp_path / "suite.toml"), "--out", str(out), "--quiet", "--no-tracking"]) == 2
    err = capsys.readouterr().err
    assert "broken" in err and "exited with status 3" in err and "boom: no GPU" in err  # its stderr, quoted
    records = {r.label: r for r in load_records(out)}
    assert set(records) == {"mine", "tone"}  # the failing cell did not stop the others
    mine = records["mine"]
    assert mine.generation["native_sample_rates"] == [22050] and mine.generation["resampled_with"] == ["soxr-vhq"]
    assert mine.cell["options"]["command"].startswith(sys.executable)
    logs = list((out / "cells").glob("mine_*/logs/batch-000000.stdout.log"))
    assert len(logs) == 1 and "steps 3" in logs[0].read_text()
    assert records["tone"].generation["n_clips"] == 4 and records["tone"].metrics[0]["value"] > 0
    assert (tmp_path / "calls.txt").read_text().count("call") == 1

    # A rerun (even --force) takes the command's outputs from the cache: it is not run again.
    assert main(["run", str(tmp_path / "suite.toml"), "--out", str(out), "--quiet", "--no-tracking", "--force"]) == 2
    assert (tmp_path / "calls.txt").read_text().count("call") == 1
    # A changed checkpoint is a new identity: the command runs again.
    (tmp_path / "model.txt").write_text("0.2")
    assert main(["run", str(tmp_path / "suite.toml"), "--out", str(out), "--quiet", "--no-tracking"]) == 2
    assert (tmp_path / "calls.txt").read_text().count("call") == 2


def test_command_preflight_and_placeholders(tmp_path):
    from generators.base import PreflightQuery
    from generators.command import preflight

    query = PreflightQuery(None, {"command": "no-such-program-xyz --out {out_dir} --ckpt {checkpoint}"}, (), (0,), 1)
    problems, _ = preflight(query)
    assert any("no-such-program-xyz" in p for p in problems) and any("{checkpoint}" in p for p in problems)
    problems, _ = preflight(PreflightQuery(None, {"command": "python x.py {out} {out_dir}"}, (), (0,), 1))
    assert problems and "unknown placeholder" in problems[0] and "'out'" in problems[0]
    problems, _ = preflight(PreflightQuery(None, {"command": "python x.py"}, (), (0,), 1))
    assert "{out_dir}" in problems[0]
