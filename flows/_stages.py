"""Run stage tasks against one store and remember how each ended (computed or cached)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from tasks._store import bind
from zooflow.store import ArtifactRef


def _ref(result: Any) -> ArtifactRef:
    """The artifact a task result stands for (handles such as DatasetHandle carry one as `.index`)."""
    return result if isinstance(result, ArtifactRef) else result.index


class Stages:
    """Calls stage tasks with results persisted under the store; records each task's state name."""

    def __init__(self, store_url: str) -> None:
        self.store_url = store_url
        self.refs: dict[str, ArtifactRef] = {}
        self.states: dict[str, str] = {}

    def run(self, stage: str, task: Any, **params: Any) -> Any:
        """Run `task` for `stage`; a failed task re-raises its error (failing the flow run)."""
        state = bind(task, self.store_url)(**params, store_url=self.store_url, return_state=True)
        result = state.result()  # raises the task's exception if it failed
        self.refs[stage] = _ref(result)
        self.states[stage] = state.name
        return result

    def run_plain(self, stage: str, task: Any, **params: Any) -> Any:
        """Run a task that returns no artifact (e.g. the gate check); a failure fails the flow run."""
        state = bind(task, self.store_url)(**params, store_url=self.store_url, return_state=True)
        self.states[stage] = state.name
        return state.result()

    def map(self, stage: str, task: Any, items: list[dict[str, Any]], **common: Any) -> list[Any]:
        """Run `task` once per item, concurrently on the flow's task runner; all finish before errors surface.

        Shards that succeed are stored (and cached) even when others fail, so a rerun resumes.
        """
        bound = bind(task, self.store_url)
        futures = [bound.submit(**common, **item, store_url=self.store_url) for item in items]
        states = [f.wait() or f.state for f in futures]
        counts = Counter(s.name for s in states)
        self.states[stage] = ", ".join(f"{n} {name}" for name, n in sorted(counts.items()))
        failed = [s for s in states if not s.is_completed()]
        if failed:
            failed[0].result()  # raises the first failure's exception
        return [s.result() for s in states]

    def summary(self, **extra: Any) -> dict[str, Any]:
        """The run's result: status, then per stage the artifact and whether it was cached."""
        return {
            "status": "completed",
            **extra,
            "store": self.store_url,
            "artifacts": {
                stage: {
                    "digest": ref.digest,
                    "name": ref.name,
                    "version": ref.version,
                    "kind": ref.kind,
                    "state": self.states[stage],
                }
                for stage, ref in self.refs.items()
            },
            "stages": self.states,
        }
