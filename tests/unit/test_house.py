"""The house rules a reader relies on: a README that is a front door whose links all lead somewhere,
docs whose links resolve, and modules small enough to read in one sitting."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
MAX_LINES = 600


def _broken_links(doc: Path) -> list[str]:
    """Relative links of a markdown file that name no file (or folder) of the repository."""
    broken = []
    for target in LINK.findall(doc.read_text(encoding="utf-8")):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue  # a web address or an anchor in the same page
        path = (doc.parent / target.split("#", 1)[0]).resolve()
        if not path.exists() or REPO not in path.parents:
            broken.append(target)
    return broken


def test_the_readme_is_a_front_door_whose_links_resolve() -> None:
    readme = REPO / "README.md"
    lines = readme.read_text(encoding="utf-8").splitlines()
    assert 100 <= len(lines) <= 220, f"README.md has {len(lines)} lines: keep it a front door, details in docs/"
    assert "uv run pytest" in readme.read_text() and "uv run zooflow run --demo" in readme.read_text()
    links = LINK.findall(readme.read_text(encoding="utf-8"))
    assert sum(t.startswith("docs/") for t in links) >= 7, links
    assert _broken_links(readme) == []


def test_every_doc_links_to_files_that_exist() -> None:
    docs = [
        *sorted((REPO / "docs").glob("*.md")),
        REPO / "deployments" / "README.md",
        REPO / "benchmarks" / "README.md",
    ]
    assert {d.name for d in docs} >= {"usage.md", "int8.md", "vastai.md", "team.md", "development.md", "reliability.md"}
    assert {str(d.relative_to(REPO)): _broken_links(d) for d in docs if _broken_links(d)} == {}


def test_no_module_is_over_600_lines() -> None:
    sources = [p for top in ("src", "tasks", "flows") for p in (REPO / top).rglob("*.py")]
    assert len(sources) > 50
    long = {
        str(p.relative_to(REPO)): n
        for p in sources
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}, f"split these modules (at most {MAX_LINES} lines each): {long}"
