"""Every relative link in README.md and docs/ resolves, and nothing in the package or its docs
points outside the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
# Words that would send a reader to files this repository does not hold.
OUTSIDE = re.compile(r"\.\./shared|CONTRACT|ENGINES\.md|STYLE\.md")


def relative_links(text: str) -> list[str]:
    """The link targets of a markdown text that are paths in this repository."""
    targets = (m.group(1) for m in LINK.finditer(text))
    return [t for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:|#", t)]


def test_relative_links_finds_paths_only() -> None:
    text = "[a](docs/x.md) [b](https://e.org) [c](#top) [d](../y.png#part) ![e](img.png)"
    assert relative_links(text) == ["docs/x.md", "../y.png#part", "img.png"]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(doc: Path) -> None:
    missing = [
        target for target in relative_links(doc.read_text())
        if not (doc.parent / target.split("#")[0]).exists()
    ]
    assert missing == [], f"{doc.relative_to(ROOT)} links to missing files: {missing}"


def test_nothing_points_outside_the_repository() -> None:
    files = [*DOCS, *sorted((ROOT / "spark_jobs").rglob("*.py")), *sorted((ROOT / "conf").glob("*.yaml"))]
    hits = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in files
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if OUTSIDE.search(line)
    ]
    assert hits == []
