"""Suite parsing: strict keys with suggestions, grid expansion, gates."""
import pytest

from bench.core.errors import ConfigError
from bench.suite import load_suite, parse_gate

BASE = """
name = "t"
metrics = ["fad-vggish@audioldm"]
[reference]
builtin = "synthetic"
n_clips = 4
[[generators]]
name = "noise"
"""


def _write(tmp_path, text):
    path = tmp_path / "suite.toml"
    path.write_text(text)
    return path


def test_quickstart_is_valid_and_offline():
    suite = load_suite(None)
    assert suite.name == "quickstart"
    assert suite.weights.mode == "untrained"  # runs with no download
    assert {c.generator for c in suite.cells} == {"reference", "noise", "silence", "archisound"}
    # two checkpoints of one generator the suite trains itself (bench.training.suite_runs)
    assert [c.checkpoint for c in suite.cells if c.generator == "archisound"] == [
        "training:archisound-tiny/step-000100.pt", "training:archisound-tiny/step-000200.pt"]
    assert suite.gates


def test_unknown_top_level_key_names_file_and_suggests(tmp_path):
    path = _write(tmp_path, 'metrix = ["x"]\n' + BASE)
    with pytest.raises(ConfigError, match=r"suite.toml.*unknown key 'metrix'.*did you mean 'metrics'"):
        load_suite(path)


def test_unknown_generator_key_names_section(tmp_path):
    path = _write(tmp_path, BASE + "seedz = [1]\n")
    with pytest.raises(ConfigError, match=r"\[generators\]\[0\].*'seedz'.*did you mean 'seeds'"):
        load_suite(path)


@pytest.mark.parametrize("old, new, message", [
    ("fad-vggish@audioldm", "fad-vggish@audiold", "did you mean 'fad-vggish@audioldm'"),
    ("fad-vggish@audioldm", "fad-vggish", "fad-vggish@audioldm, fad-vggish@google"),
    ('name = "noise"', 'name = "silense"', "did you mean 'silence'"),
])
def test_unknown_names_suggest_the_closest(tmp_path, old, new, message):
    with pytest.raises(ConfigError, match=message):
        load_suite(_write(tmp_path, BASE.replace(old, new)))


def test_invalid_toml_names_file(tmp_path):
    path = _write(tmp_path, "name = \n")
    with pytest.raises(ConfigError, match="suite.toml: invalid TOML"):
        load_suite(path)


def test_grid_expansion(tmp_path):
    (tmp_path / "ckpt").mkdir()
    for step in (100, 200):
        (tmp_path / "ckpt" / f"step-{step}.pt").write_bytes(b"x")
    text = BASE + """seeds = [0, 1]
sample_rates = [16000, 32000]
[[generators]]
name = "silence"
label = "silence-ckpts"
"""
    suite = load_suite(_write(tmp_path, text))
    assert len(suite.cells) == 2 * 2 + 1
    assert len({c.id for c in suite.cells}) == len(suite.cells)


def test_checkpoint_glob_expands_and_empty_glob_fails(tmp_path):
    (tmp_path / "ck").mkdir()
    for step in (1, 2, 3):
        (tmp_path / "ck" / f"s{step}.pt").write_bytes(b"x")
    suite = load_suite(_write(tmp_path, BASE + 'checkpoints = ["ck/s*.pt"]\n'))
    assert [c.checkpoint.split("/")[-1] for c in suite.cells] == ["s1.pt", "s2.pt", "s3.pt"]
    with pytest.raises(ConfigError, match="matches no file"):
        load_suite(_write(tmp_path, BASE + 'checkpoints = ["nothing/*.pt"]\n'))


def test_duplicate_cells_need_labels(tmp_path):
    with pytest.raises(ConfigError, match="duplicate cells"):
        load_suite(_write(tmp_path, BASE + '[[generators]]\nname = "noise"\n'))


def test_wrong_value_type(tmp_path):
    with pytest.raises(ConfigError, match="seeds must hold int"):
        load_suite(_write(tmp_path, BASE + 'seeds = ["zero"]\n'))


def test_gates_parse_and_validate(tmp_path):
    gate = parse_gate({"check": "fad-vggish@audioldm <= 3.0", "generator": "noise"}, "s")
    assert (gate.metric, gate.op, gate.threshold, gate.generator) == ("fad-vggish@audioldm", "<=", 3.0, "noise")
    assert gate.passes(3.0) and not gate.passes(3.1)
    with pytest.raises(ConfigError, match="not of the form"):
        parse_gate("fad-vggish@audioldm == 3", "s")
    with pytest.raises(ConfigError, match="does not compute"):
        load_suite(_write(tmp_path, BASE + '[[gates]]\ncheck = "fad-vggish@google < 1"\n'))
    with pytest.raises(ConfigError, match="not in the suite"):
        load_suite(_write(tmp_path, BASE + '[[gates]]\ncheck = "fad-vggish@audioldm < 1"\ngenerator = "x"\n'))


def test_missing_suite_file():
    with pytest.raises(ConfigError, match="does not exist"):
        load_suite("/nonexistent/suite.toml")


def test_section_values_are_typed_and_defaults_come_from_the_code(tmp_path):
    from metrics.inputs import ScoreOptions

    path = tmp_path / "s.toml"
    base = ('metrics = ["fad-vggish@audioldm"]\n[reference]\nbuiltin = "synthetic"\n'
            '[[generators]]\nname = "noise"\n')
    path.write_text(base + "[scoring]\nci_level = 1\n")
    suite = load_suite(path)
    assert suite.scoring.ci_level == 1.0 and isinstance(suite.scoring.ci_level, float)
    assert suite.scoring.bootstrap == ScoreOptions().bootstrap and suite.tracking.enabled is True
    path.write_text(base + '[scoring]\nbootstrap = "many"\n')
    with pytest.raises(ConfigError, match=r"\[scoring\]: bootstrap must be int, got 'many'"):
        load_suite(path)
    path.write_text(base + "[tracking]\nenabled = 1\n")
    with pytest.raises(ConfigError, match=r"\[tracking\]: enabled must be bool, got 1"):
        load_suite(path)
    path.write_text(base + "[weights]\nmdoe = \"untrained\"\n")
    with pytest.raises(ConfigError, match=r"unknown key 'mdoe' \(did you mean 'mode'\?\)"):
        load_suite(path)
