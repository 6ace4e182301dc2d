"""Prefect UI artifacts for stage results (small markdown tables with digests and lineage)."""

from __future__ import annotations

import base64
import re
from typing import Any

from prefect.artifacts import create_markdown_artifact

from zooflow.store import ArtifactRef, Store


def artifact_key(*parts: str) -> str:
    """A Prefect artifact key: lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9]+", "-", "-".join(parts).lower()).strip("-")[:120]


def rounded(value: Any, digits: int = 2) -> Any:
    """A number as people read it (``0.35``, not ``0.35000000000000003``); anything else unchanged."""
    if isinstance(value, float):
        return round(value, digits)
    return value


def publish(
    ref: ArtifactRef, title: str, rows: dict[str, Any], warning: str | None = None, *, name: str | None = None
) -> None:
    """A markdown table of a stage's artifact for the run's Artifacts tab.

    `name` keys an unnamed artifact (a benchmark) by what it measured, so its history is one setting's.
    """
    shown = ref.name or name
    lines = [f"### {title}", ""]
    if warning:
        lines += [f"> **Warning:** {warning}", ""]
    lines += [
        "| field | value |",
        "|---|---|",
        f"| artifact | `{shown}`" + (f" v{ref.version}" if ref.version is not None else "") + " |",
        f"| digest | `{ref.digest}` |",
    ]
    lines += [f"| {k} | {rounded(v)} |" for k, v in rows.items()]
    create_markdown_artifact("\n".join(lines), key=artifact_key(ref.kind, shown or ref.kind), description=title)


def publish_document(store: Store, ref: ArtifactRef, document: str, key: str, description: str, footer: str) -> None:
    """A stored markdown document (report, sweep, trend) as a Prefect markdown artifact, plots included.

    The document's PNGs are files in the store, which the browser showing the UI cannot reach, so each
    ``![...](plot.png)`` line is inlined as a data: URI (Prefect's markdown renders it); `footer` says
    where the HTML version is.
    """
    text = store.path(ref, document).read_text(encoding="utf-8")

    def inline(match: re.Match[str]) -> str:
        plot = store.path(ref, match.group(2))
        if "/" in match.group(2) or not plot.is_file():
            return ""
        data = base64.b64encode(plot.read_bytes()).decode("ascii")
        return f"![{match.group(1)}](data:image/png;base64,{data})"

    text = re.sub(r"(?m)^!\[([^\]]*)\]\(([^)]*\.png)\)$", inline, text)
    create_markdown_artifact(f"{text}\n\n{footer}", key=key, description=description)
