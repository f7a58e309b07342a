"""The README and docs say what the code does: the configuration table is `Settings`, and every
relative link resolves inside the repository (a clone has nothing outside it)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from streams.settings import ENV_VARS

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "examples").glob("*/README.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_readme_configuration_table_is_settings():
    text = (ROOT / "README.md").read_text()
    table = text[text.index("| variable | default | meaning |"):]
    rows = re.findall(r"^\| `(RILLET_[A-Z_]+)` \| (?:`([^`]*)`|\(empty\)) \|", table, re.MULTILINE)
    assert [(name, default) for name, default in rows] == [(name, default) for name, default, _ in ENV_VARS]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve_inside_the_repository(doc):
    assert "../shared" not in doc.read_text(), f"{doc.name} points outside the repository"
    for target in LINK.findall(doc.read_text()):
        if "://" in target or target.startswith(("#", "mailto:")):
            continue
        path = (doc.parent / target.split("#")[0]).resolve()
        assert path.is_relative_to(ROOT), f"{doc.name}: {target} leaves the repository"
        assert path.exists(), f"{doc.name}: {target} does not exist"


def test_the_docs_exist_and_readme_links_them():
    text = (ROOT / "README.md").read_text()
    for name in ("docs/semantics.md", "docs/local-broker.md", "docs/operations.md"):
        assert (ROOT / name).is_file() and f"]({name})" in text
