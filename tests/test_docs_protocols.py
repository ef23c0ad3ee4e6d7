"""docs/protocols.md documents every registered metric preset, and nothing in the repository cites a
protocols document outside it (or a section of it that does not exist)."""
from __future__ import annotations

import itertools
import re
from pathlib import Path

from metrics.registry import all_metrics

ROOT = Path(__file__).resolve().parents[1]
DOC_REF = "docs/protocols.md"
DOC = ROOT / DOC_REF
# Not part of the repository's own text: tool state, environments, build and result outputs.
SKIP_DIRS = {"__pycache__", "node_modules", "build", "dist", "site", "bench-results"}
MAX_BYTES = 5_000_000
# A protocols document named anywhere (any case, with the path before it), with an optional #anchor.
REFERENCE = re.compile(r"[\w./~-]*protocols\.md(#[\w-]*)?", re.IGNORECASE)
TABLE_ROW = re.compile(r"^\| `([^`]+)` \|.*\]\(#([a-z0-9-]+)\) \|$")


def slug(heading: str) -> str:
    """The anchor GitHub and mkdocs both give a heading of letters, digits, hyphens and single spaces."""
    return heading.strip().lower().replace(" ", "-")


def sections() -> dict[str, str]:
    """Anchor -> text of each `## ` section of the document."""
    parts = re.split(r"^## (.+)$", DOC.read_text(encoding="utf-8"), flags=re.MULTILINE)
    return {slug(heading): body for heading, body in zip(parts[1::2], parts[2::2])}


def named_ids(text: str) -> set[str]:
    """Every `code` span of the text, with `{a,b}` groups expanded (`x-{a,b}@p` names x-a@p and x-b@p)."""
    names = set()
    for span in re.findall(r"`([^`]+)`", text):
        pieces = re.split(r"\{([^}]*)\}", span)
        choices = [[p] if i % 2 == 0 else p.split(",") for i, p in enumerate(pieces)]
        names.update("".join(c) for c in itertools.product(*choices))
    return names


def repository_texts():
    """(relative path, text) of every readable text file of the repository, hidden folders excluded."""
    for path in sorted(ROOT.rglob("*")):
        rel = path.relative_to(ROOT)
        if any(p.startswith(".") or p in SKIP_DIRS or p.endswith(".egg-info") for p in rel.parts[:-1]):
            continue
        if not path.is_file() or path.stat().st_size > MAX_BYTES:
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue
        try:
            yield rel.as_posix(), data.decode("utf-8")
        except UnicodeDecodeError:
            continue


def test_section_headings_give_the_same_anchor_everywhere():
    headings = re.findall(r"^## (.+)$", DOC.read_text(encoding="utf-8"), flags=re.MULTILINE)
    assert headings
    for heading in headings:
        # ASCII letters, digits, hyphens and single spaces: GitHub's and mkdocs' slugs then agree.
        assert re.fullmatch(r"[A-Za-z0-9-]+( [A-Za-z0-9-]+)*", heading), heading


def test_every_registered_metric_has_a_row_and_a_section():
    by_anchor = sections()
    rows = [TABLE_ROW.match(line) for line in by_anchor["presets"].splitlines()]
    rows = {m.group(1): m.group(2) for m in rows if m}
    registered = set(all_metrics())
    assert registered - set(rows) == set(), "metrics missing from the presets table"
    assert set(rows) - registered == set(), "table rows for metrics that are not registered"
    for metric_id, anchor in rows.items():
        assert anchor in by_anchor, f"{metric_id}: no section #{anchor}"
        assert metric_id in named_ids(by_anchor[anchor]), f"section #{anchor} does not name {metric_id}"


def test_no_file_cites_a_protocols_document_outside_the_repository():
    anchors = set(sections())
    checked = 0
    for rel, text in repository_texts():
        for match in REFERENCE.finditer(text):
            path, _, anchor = match.group(0).partition("#")
            # pages in docs/ and mkdocs.yml's nav (paths relative to docs/) name it as a sibling
            inside_docs = (rel.startswith("docs/") or rel == "mkdocs.yml") and path == DOC.name
            assert path == DOC_REF or inside_docs, f"{rel}: cites {match.group(0)!r}; cite {DOC_REF}"
            assert not anchor or anchor in anchors, f"{rel}: {match.group(0)!r} names no section of {DOC_REF}"
            checked += 1
    assert checked > 0  # the docstrings do point at the document


def test_every_project_file_the_document_names_exists():
    project_file = r"`((?:bench|metrics|generators|leaderboards|tests)/[\w/]+\.py)`"
    named = re.findall(project_file, DOC.read_text(encoding="utf-8"))
    assert named
    assert [p for p in named if not (ROOT / p).is_file()] == []


def test_named_ids_expands_brace_groups():
    assert named_ids("`caption-{a,b}@{x,y}` and `kad`") == {"caption-a@x", "caption-a@y", "caption-b@x",
                                                          "caption-b@y", "kad"}
