"""`bench run --check-determinism`: a deterministic cell passes; one that is not is caught, field by field."""
import json

import numpy as np

from bench.cli import main
from bench.determinism import diff
from generators.base import GENERATORS, GeneratedAudio, register_generator

SUITE = """
name = "det"
metrics = ["fad-vggish@audioldm"]
[reference]
builtin = "synthetic"
n_clips = 4
duration_s = 1.0
[generation]
duration_s = 1.0
[[generators]]
name = "{generator}"
[weights]
mode = "untrained"
[scoring]
bootstrap = 5
batch_size = 4
"""


class _Drifting:
    """Breaks the rules on purpose: its output depends on how often it was called (hidden state)."""

    name, version, native_sample_rates, max_duration_s, uses_steps, uses_guidance = "drift", "1", None, None, False, False
    calls = 0

    def generate(self, request):
        _Drifting.calls += 1
        n = int(request.duration_s * request.sample_rate)
        rng = np.random.default_rng(_Drifting.calls)
        return [GeneratedAudio(p.id, 0, (0.1 * rng.standard_normal((1, n))).astype(np.float32),
                               request.sample_rate, {}) for p in request.prompts]


if "test-drift" not in GENERATORS.load():
    register_generator("test-drift", "test only: not deterministic")(lambda checkpoint, context: _Drifting())


def _run(tmp_path, generator):
    suite = tmp_path / "suite.toml"
    suite.write_text(SUITE.format(generator=generator))
    return main(["run", str(suite), "--out", str(tmp_path / "out"), "--quiet", "--no-tracking", "--check-determinism"])


def test_deterministic_cell_passes(tmp_path, cache_dir, capsys):
    assert _run(tmp_path, "noise") == 0
    assert "records identical" in capsys.readouterr().out
    report = json.loads((tmp_path / "out" / "determinism.json").read_text())
    assert report["identical"] is True and len(report["cells"]) == 1
    assert not any(p.name.startswith("determinism-") for p in (tmp_path / "out").iterdir())  # scratch removed


def test_nondeterministic_cell_exits_4_listing_fields(tmp_path, cache_dir, capsys):
    assert _run(tmp_path, "test-drift") == 4
    err = capsys.readouterr().err
    assert "NOT DETERMINISTIC" in err and "metrics[0].value:" in err
    assert "generation.n_clips" not in err  # only fields that really differ are listed
    report = json.loads((tmp_path / "out" / "determinism.json").read_text())
    assert report["identical"] is False
    assert any(line.startswith("metrics[0].generated.fingerprint:") for line in next(iter(report["differences"].values())))


def test_diff_names_paths():
    a = {"x": [1, {"y": 2.0}], "z": "same", "only_a": 1}
    b = {"x": [1, {"y": 2.5}], "z": "same"}
    assert diff(a, b) == ["only_a: 1 != missing", "x[1].y: 2.0 != 2.5"]
    assert diff({"v": 1}, {"v": 1.0}) == ["v: 1 != 1.0"]  # a type change is a difference too
