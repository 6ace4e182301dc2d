"""Prefect UI artifacts for stage results (small markdown tables with digests and lineage)."""

from __future__ import annotations

import re
from typing import Any

from prefect.artifacts import create_markdown_artifact

from zooflow.store import ArtifactRef


def artifact_key(*parts: str) -> str:
    """A Prefect artifact key: lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9]+", "-", "-".join(parts).lower()).strip("-")[:120]


def publish(ref: ArtifactRef, title: str, rows: dict[str, Any], warning: str | None = None) -> None:
    """A markdown table of a stage's artifact for the run's Artifacts tab."""
    lines = [f"### {title}", ""]
    if warning:
        lines += [f"> **Warning:** {warning}", ""]
    lines += [
        "| field | value |",
        "|---|---|",
        f"| artifact | `{ref.name}` v{ref.version} |",
        f"| digest | `{ref.digest}` |",
    ]
    lines += [f"| {k} | {v} |" for k, v in rows.items()]
    create_markdown_artifact("\n".join(lines), key=artifact_key(ref.kind, ref.name or ref.kind), description=title)
