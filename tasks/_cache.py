"""Cache keys from artifact digests, verified on every hit.

Prefect's own policies do not fit: the default key includes the run id, and INPUTS hashes a
path as its text, not its content. `ArtifactCachePolicy` hashes the task's name, the stage and
its version, the versions of the libraries the stage depends on, the digests of its input
artifacts and its other parameters (never the store location).

Verification: Prefect treats "a result exists under the key" as a hit and never calls back, so
the check happens while the key is computed. The store keeps a record per base key with an
epoch and the digest the stage produced; if that artifact is missing or fails `Store.verify`,
the policy starts a new epoch, the key changes, and the stage recomputes.
"""

from __future__ import annotations

import functools
import hashlib
import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ParamSpec

from prefect.cache_policies import CachePolicy
from prefect.context import TaskRunContext
from prefect.logging import get_logger
from pydantic import BaseModel

from zooflow.provenance import library_versions
from zooflow.store import ArtifactRef, CacheRecord, open_store

STORE_PARAM = "store_url"
FULL_VERIFY_TAG = "zooflow-full-verify"  # runs under `tags(FULL_VERIFY_TAG)` re-hash every cache hit in full
logger = get_logger("zooflow.cache")


def full_verify(ctx: TaskRunContext | None = None) -> bool:
    """Whether the running task's cache hits must be re-hashed byte for byte (nightly runs)."""
    ctx = ctx or TaskRunContext.get()
    return ctx is not None and FULL_VERIFY_TAG in (ctx.task_run.tags or [])


def _describe(value: Any) -> Any:
    """A JSON-able identity for one task input: artifacts by digest, models by their fields."""
    if isinstance(value, ArtifactRef):
        return {"artifact": value.kind, "digest": value.digest}
    if hasattr(value, "cache_identity"):  # e.g. DatasetHandle: its index digest, not its path
        return value.cache_identity()
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, Mapping):
        return {str(k): _describe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_describe(v) for v in value]
    return value


@dataclass
class ArtifactCachePolicy(CachePolicy):
    """Key = task name + stage version + library versions + input digests + parameters."""

    stage: str = ""
    stage_version: str = ""
    libraries: tuple[str, ...] = ()
    extra: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = field(default=None, compare=False)
    relevant: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = field(default=None, compare=False)
    # measurements: when true (or true of the inputs), cached within a flow run only (a retry
    # resumes), measured again by the next run
    per_run: bool | Callable[[Mapping[str, Any]], bool] = field(default=False, compare=False)

    def base_key(self, task_name: str, inputs: Mapping[str, Any], run_id: str | None = None) -> str:
        """The epoch-free part of the key (stable across runs and machines, unless `per_run`)."""
        if self.relevant is not None:
            inputs = self.relevant(inputs)
        payload = {
            "task": task_name,
            "stage": self.stage,
            "stage_version": self.stage_version,
            "libraries": library_versions(*self.libraries),
            "inputs": {k: _describe(v) for k, v in sorted(inputs.items()) if k != STORE_PARAM},
            "extra": _describe(dict(self.extra(inputs))) if self.extra else None,
            "run": run_id if (self.per_run(inputs) if callable(self.per_run) else self.per_run) else None,
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        store = open_store(inputs[STORE_PARAM])
        base = self.base_key(task_ctx.task.name, inputs, str(task_ctx.task_run.flow_run_id))
        record = store.cache_record(base)
        if record is not None and record.digest is None:
            epoch = record.epoch  # an earlier attempt did not finish: nothing cached under it yet
        elif record is not None and record.digest is not None:
            problems = store.verify(record.digest, full=full_verify(task_ctx))
            if not problems:
                epoch = record.epoch
            else:
                epoch = uuid.uuid4().hex[:12]
                logger.warning(
                    "cached %s artifact %s failed verification (%s); recomputing",
                    self.stage,
                    record.digest[:12],
                    "; ".join(problems[:3]),
                )
                store.write_cache_record(CacheRecord(key=base, epoch=epoch))
        else:
            epoch = uuid.uuid4().hex[:12]  # never seen (or record lost): nothing to trust
            if not store.write_cache_record(CacheRecord(key=base, epoch=epoch), exclusive=True):
                # a concurrent run created it first: share its epoch, so both wait on one key's lock
                raced = store.cache_record(base)
                if raced is not None:
                    epoch = raced.epoch
                else:  # the record there is damaged: replace it
                    store.write_cache_record(CacheRecord(key=base, epoch=epoch))
        return f"{self.stage}-{base[:40]}-{epoch}"


def _current() -> tuple[Any, str] | None:
    """The running task's store and base key, when it uses `ArtifactCachePolicy`."""
    ctx = TaskRunContext.get()
    if ctx is None or not isinstance(ctx.task.cache_policy, ArtifactCachePolicy):
        return None
    store = open_store(ctx.parameters[STORE_PARAM])
    return store, ctx.task.cache_policy.base_key(ctx.task.name, ctx.parameters, str(ctx.task_run.flow_run_id))


def remember(ref: ArtifactRef) -> ArtifactRef:
    """Record, for the running task's cache key, the artifact it produced; returns `ref`."""
    current = _current()
    if current is None:
        return ref
    store, base = current
    record = store.cache_record(base)
    epoch = record.epoch if record is not None else uuid.uuid4().hex[:12]
    store.write_cache_record(CacheRecord(key=base, epoch=epoch, digest=ref.digest, name=ref.name, version=ref.version))
    return ref


P = ParamSpec("P")


def resumable(fn: Callable[P, ArtifactRef]) -> Callable[P, ArtifactRef]:
    """Skip the work when an interrupted run already committed this key's artifact.

    A process killed after a stage committed its artifact (and `remember`ed it) but before
    Prefect persisted the task's result misses Prefect's cache on the rerun; the store's record
    still names the verified artifact, so the stage returns it instead of computing it again.
    """

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> ArtifactRef:
        current = _current()
        if current is not None:
            store, base = current
            ref = store.cached(base, full=full_verify())
            if ref is not None:
                logger.info(
                    "resumed: %s artifact %s was committed by an interrupted run; not recomputed",
                    ref.kind,
                    ref.short,
                )
                return ref
        return fn(*args, **kwargs)

    return wrapper
