"""The documentation: the Python API page runs as written, every metric is in the metric table, the README
stays a front door, and the mkdocs site builds with --strict (broken links fail)."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.core.audio import write_audio

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def _python_blocks(page: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", page.read_text(), flags=re.S | re.M)


def test_api_page_code_blocks_run_in_order(tmp_path, monkeypatch, capsys):
    """The page's blocks, in one namespace, in a folder holding the two folders of audio it scores."""
    rng = np.random.default_rng(0)
    for folder in ("generated", "reference"):
        for name in ("dog_bark", "rain", "piano", "engine", "birds"):
            write_audio(tmp_path / folder / f"{name}.wav", (0.1 * rng.standard_normal((1, 24000))).astype(np.float32),
                        16000)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    blocks = _python_blocks(DOCS / "api.md")
    assert len(blocks) >= 5
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "docs/api.md", "exec"), namespace)  # noqa: S102 (the page's own code)
    out = capsys.readouterr().out
    assert "fad-vggish@audioldm[untrained]" in out and "| noise" in out
    assert namespace["outcome"].exit_code == 0 and len(namespace["records"]) == 2


def test_every_listed_metric_is_in_the_docs_metric_table():
    """The presets table of docs/protocols.md (tests/test_docs_protocols.py checks its sections)."""
    from metrics.registry import all_metrics

    table = (ROOT / "docs/protocols.md").read_text()
    documented = set(re.findall(r"^\| `([^`]+)` \|", table, flags=re.M))
    missing = sorted(set(all_metrics()) - documented)
    assert not missing, f"docs/protocols.md's table lacks: {missing}"


def test_readme_is_a_front_door_pointing_into_the_docs():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) < 200
    for page in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (ROOT / page).is_file(), page
    assert "../shared" not in readme  # nothing outside the repository


def test_mkdocs_builds_strict(tmp_path):
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent)) or shutil.which("mkdocs")
    if mkdocs is None:
        if os.environ.get("CI"):
            pytest.fail("mkdocs is missing in CI: pip install -e '.[docs]'")
        pytest.skip("mkdocs not installed (pip install -e '.[docs]')")
    proc = subprocess.run([mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (tmp_path / "site" / "api" / "index.html").is_file()
