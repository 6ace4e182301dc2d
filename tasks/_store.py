"""Point Prefect's result persistence at the artifact store instead of ``~/.prefect``, and make
concurrent runs of the same work compute it once (SERIALIZABLE isolation on the lock manager that
``ZOOFLOW_LOCKS`` chooses: ``flock`` on one host, Redis across hosts; see `tasks._locks`)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from zooflow.store import open_store


def result_storage(store_url: str) -> Path | str:
    """``<store>/prefect`` as Prefect result storage.

    A local store is passed as a Path (Prefect wraps it in an unsaved LocalFileSystem); a remote
    one needs a saved block, so a RemoteFileSystem block named after the store is saved once.
    """
    store = open_store(store_url)
    if store.is_local:
        return Path(store.prefect_dir)
    from prefect.filesystems import RemoteFileSystem
    from prefect.settings import PREFECT_API_URL

    name = "zooflow-" + hashlib.sha256(store.url.encode()).hexdigest()[:16]
    saved = (name, str(PREFECT_API_URL.value()))
    if saved not in _SAVED:  # once per process and API: saving it for every stage cost 0.15 s a stage
        RemoteFileSystem(basepath=store.fs.unstrip_protocol(store.prefect_dir)).save(name, overwrite=True)
        _SAVED.add(saved)
    return f"remote-file-system/{name}"


_SAVED: set[tuple[str, str]] = set()  # (block name, API) of the result storage blocks this process saved


def bind(task: Any, store_url: str) -> Any:
    """The task with its results (and cache records) persisted under the store; each cache key is
    computed by one run at a time (a second run waits and ends Cached)."""
    from tasks._cache import ArtifactCachePolicy
    from tasks._locks import for_store

    options: dict[str, Any] = {"result_storage": result_storage(store_url)}
    if isinstance(task.cache_policy, ArtifactCachePolicy):
        options["cache_policy"] = task.cache_policy.configure(
            lock_manager=for_store(open_store(store_url)), isolation_level="SERIALIZABLE"
        )
    return task.with_options(**options)
