"""Fetch task: checkpoint from URL / path / local init into the store."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prefect import task

from tasks._cache import ArtifactCachePolicy, remember, resumable
from tasks.ui import publish
from zooflow import fetch
from zooflow.store import ArtifactRef, open_store, sha256_file


def _local_content(inputs: Mapping[str, Any]) -> Mapping[str, Any]:
    """A local file's identity is its content, not its path's text."""
    source = str(inputs["source"])
    if fetch.source_kind(source) == "file":
        path = fetch.local_path(source)
        return {"content_sha256": sha256_file(path) if path.is_file() else "missing"}
    return {}


FETCH_POLICY = ArtifactCachePolicy(
    stage=fetch.STAGE, stage_version=fetch.STAGE_VERSION, libraries=("torch", "mmcls", "mmcv"), extra=_local_content
)


@task(
    name="fetch-checkpoint",
    cache_policy=FETCH_POLICY,
    persist_result=True,
    result_serializer="json",
    retries=1,
    retry_delay_seconds=5,
)
@resumable
def fetch_checkpoint(
    source: str, model: str, sha256: str | None, seed: int, trust_checkpoint: bool, store_url: str
) -> ArtifactRef:
    """Download (or locally initialise), verify and load-check the checkpoint."""
    store = open_store(store_url)
    ref = fetch.fetch_checkpoint(source, store, model=model, sha256=sha256, seed=seed, trust=trust_checkpoint)
    remember(ref)  # first: a kill while publishing must not lose the record
    publish(
        ref,
        f"Checkpoint for {model}",
        {
            "source": source,
            "file sha256": f"`{ref.meta['sha256']}`",
            "verified against": ", ".join(ref.meta["verified_against"]) or "not verified (no digest known)",
        },
        warning=ref.meta.get("warning") or ref.meta.get("unverified"),
    )
    return ref
