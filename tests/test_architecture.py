"""Imports point one way and form no cycles (import-linter contracts in pyproject.toml)."""
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "3 kept, 0 broken" in done.stdout


def test_every_orchestration_module_is_in_a_layer():
    # A bench module missing from the layers contract would escape the layering check.
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    layers = next(c for c in config["contracts"] if c["type"] == "layers")["layers"]
    listed = {m.strip() for layer in layers for m in layer.replace("|", ":").split(":")}
    modules = set()
    for path in (ROOT / "bench").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            continue
        name = ".".join(parts)
        if not any(name == m or name.startswith(m + ".") for m in listed):
            modules.add(name)
    assert not modules, f"add these modules to a layer in pyproject.toml: {sorted(modules)}"
