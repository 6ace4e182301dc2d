"""The fault catalogue: every case a user can hit, what they see, and what is kept.

Each case is a function in one of the ``cases_*`` modules, registered with `case(...)`; the
registration holds the row of ``docs/reliability.md`` and the function asserts it (the clear
error, and that nothing earlier was lost or corrupted). `test_catalogue.py` runs every case and
checks that the document is exactly what `render()` makes of the registrations, so the table
cannot drift from the tests.

Regenerate the document: ``uv run python -m tests.reliability.catalogue > docs/reliability.md``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

AREAS = (
    "security",
    "output folders",
    "bad input",
    "corrupt store",
    "stale data",
    "crash",
    "disk full",
    "http",
    "concurrency",
    "reproducibility",
)
MODULES = ("security", "outputs", "inputs", "store", "data", "crash", "disk", "http", "concurrency")


@dataclass(frozen=True)
class Case:
    """One row of the catalogue and the check that proves it."""

    id: str
    area: str
    fault: str
    sees: str
    kept: str
    fixed_in: str  # "issue 10 #N" for what this issue fixed, "" for what already behaved well
    slow: bool
    check: Callable[..., Any]


_CASES: dict[str, Case] = {}


def case(
    id: str,  # noqa: A002 - the catalogue's column name
    *,
    area: str,
    fault: str,
    sees: str,
    kept: str,
    fixed_in: str = "",
    slow: bool = False,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a check as a catalogue case."""
    if area not in AREAS:
        raise ValueError(f"unknown area {area!r}")

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        if id in _CASES:
            raise ValueError(f"duplicate case {id!r}")
        _CASES[id] = Case(id, area, fault, sees, kept, fixed_in, slow, fn)
        return fn

    return register


def cases() -> list[Case]:
    """Every registered case, in area order, then registration order."""
    for module in MODULES:
        importlib.import_module(f"tests.reliability.cases_{module}")
    order = {area: n for n, area in enumerate(AREAS)}
    return sorted(_CASES.values(), key=lambda c: order[c.area])


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render() -> str:
    """docs/reliability.md, made from the registered cases."""
    all_cases = cases()
    by_issue: dict[str, int] = {}
    for c in all_cases:
        if c.fixed_in:
            issue = c.fixed_in.split("#")[0].strip()
            by_issue[issue] = by_issue.get(issue, 0) + 1
    fixed = ", ".join(
        f"{n} fixed by {issue}" for issue, n in sorted(by_issue.items(), key=lambda i: int(i[0].split()[-1]))
    )
    kept = len(all_cases) - sum(by_issue.values())
    lines = [
        "# Reliability: the fault catalogue",
        "",
        "Every row is a test: `tests/reliability/` runs the fault for real (real files, real",
        "processes, real HTTP servers on 127.0.0.1, a real full disk on a small tmpfs) and asserts what",
        "the user sees and that nothing produced earlier was lost or corrupted. This page is generated",
        "from those tests (`uv run python -m tests.reliability.catalogue > docs/reliability.md`), and a",
        "test fails if it differs, so it cannot drift.",
        "",
        f"**{len(all_cases)} cases**: {fixed}, {kept} that already behaved well and are kept that way.",
        "",
        "| area | cases |",
        "|---|---|",
    ]
    for area in AREAS:
        count = sum(1 for c in all_cases if c.area == area)
        if count:
            lines.append(f"| {area} | {count} |")
    for area in AREAS:
        rows = [c for c in all_cases if c.area == area]
        if not rows:
            continue
        lines += [
            "",
            f"## {area.capitalize()}",
            "",
            "| case | fault | what the user sees | what is kept | fixed |",
            "|---|---|---|---|---|",
        ]
        for c in rows:
            lines.append(
                f"| `{c.id}` | {_cell(c.fault)} | {_cell(c.sees)} | {_cell(c.kept)} | {c.fixed_in or 'worked before'} |"
            )
    lines += [
        "",
        "## What a cache hit checks, and when everything is re-hashed",
        "",
        "- A cache hit checks that the artifact's manifest reads and matches its digest, that no file is",
        "  missing or extra, and re-hashes every file whose stat stamp (size, mtime, ctime, inode) changed",
        "  since its last clean re-hash, or that was written within a second of it (git's rule for racy",
        "  entries). Tools can set mtime but not ctime, so an edit through the file system is always seen.",
        "- A change that bypasses the file system (bit rot, a raw write to the block device) keeps the",
        "  stamp; only a full re-hash sees it: `zooflow artifacts verify --full`, `zooflow artifacts gc",
        "  --full`, `--rehash` for dataset images, and every nightly regression run (all its cache hits and",
        "  images are re-hashed in full).",
        "- Committing content that is already stored re-hashes the stored copy in full and replaces it if",
        "  it is damaged.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    from tests.reliability import catalogue  # the cases register with the imported module, not __main__

    print(catalogue.render(), end="")
