"""Every relative link in README.md and docs/ resolves (to a file, and to a heading when it names
one), README.md stays a front page, and nothing in the package or its docs points outside the
repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")
FENCE = re.compile(r"^(```|~~~)")
# The README is the front page: what tilewise is, two commands, an example, a map. Topics go to docs/.
README_MAX_LINES = 200
# Words that would send a reader to files this repository does not hold.
OUTSIDE = re.compile(r"\.\./shared|CONTRACT|ENGINES\.md|STYLE\.md")


def relative_links(text: str) -> list[str]:
    """The link targets of a markdown text that are paths in this repository."""
    targets = (m.group(1) for m in LINK.finditer(text))
    return [t for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:|#", t)]


def anchors(text: str) -> set[str]:
    """The anchors GitHub gives the headings of a markdown text (code blocks left out)."""
    found: set[str] = set()
    in_code = False
    for line in text.splitlines():
        if FENCE.match(line):
            in_code = not in_code
            continue
        m = None if in_code else HEADING.match(line)
        if not m:
            continue
        slug = re.sub(r"[^\w\- ]", "", m.group(1).lower()).replace(" ", "-")
        n, candidate = 0, slug
        while candidate in found:
            n += 1
            candidate = f"{slug}-{n}"
        found.add(candidate)
    return found


def test_anchors_follow_github() -> None:
    text = "# The `tilewise` command\n## Exit codes\n```\n# not a heading\n```\n## Exit codes\n### `backfill --start DATE`"
    assert anchors(text) == {"the-tilewise-command", "exit-codes", "exit-codes-1", "backfill---start-date"}


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


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_anchor_names_a_heading(doc: Path) -> None:
    text = doc.read_text()
    targets = [m.group(1) for m in LINK.finditer(text)]
    missing = []
    for target in targets:
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or "#" not in target:
            continue
        path, fragment = target.split("#", 1)
        page = doc if path == "" else doc.parent / path
        if page.suffix == ".md" and page.exists() and fragment not in anchors(page.read_text()):
            missing.append(target)
    assert missing == [], f"{doc.relative_to(ROOT)} links to headings that do not exist: {missing}"


def test_readme_is_a_front_page() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move topics to docs/"


def test_nothing_points_outside_the_repository() -> None:
    files = [*DOCS, *sorted((ROOT / "spark_jobs").rglob("*.py")), *sorted((ROOT / "conf").glob("*.yaml"))]
    hits = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in files
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if OUTSIDE.search(line)
    ]
    assert hits == []
