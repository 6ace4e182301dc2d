"""The fault catalogue: one parametrised case per fault (see `catalogue.py`), and its document."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.catalogue import cases, render

CASES = cases()


@pytest.mark.parametrize("fault", [pytest.param(c, id=c.id, marks=[pytest.mark.slow] if c.slow else []) for c in CASES])
def test_fault(fault, request: pytest.FixtureRequest) -> None:  # type: ignore[no-untyped-def]
    fault.check(request)


def test_the_catalogue_covers_every_kind_of_fault() -> None:
    assert len(CASES) >= 88  # issue 29: a case for each fault of the second catalogue
    assert {c.area for c in CASES} >= {
        "security",
        "bad input",
        "corrupt store",
        "crash",
        "disk full",
        "http",
        "concurrency",
    }


def test_the_document_is_the_catalogue() -> None:
    doc = Path(__file__).parents[2] / "docs" / "reliability.md"
    assert doc.read_text(encoding="utf-8") == render(), (
        "docs/reliability.md differs from the catalogue: `uv run python -m tests.reliability.catalogue > docs/reliability.md`"
    )
