"""Run stage tasks against one store and remember how each ended (computed or cached)."""

from __future__ import annotations

from typing import Any

from tasks._store import bind
from zooflow.store import ArtifactRef


class Stages:
    """Calls stage tasks with results persisted under the store; records each task's state name."""

    def __init__(self, store_url: str) -> None:
        self.store_url = store_url
        self.refs: dict[str, ArtifactRef] = {}
        self.states: dict[str, str] = {}

    def run(self, stage: str, task: Any, **params: Any) -> ArtifactRef:
        """Run `task` for `stage`; a failed task re-raises its error (failing the flow run)."""
        state = bind(task, self.store_url)(**params, store_url=self.store_url, return_state=True)
        ref = state.result()  # raises the task's exception if it failed
        self.refs[stage] = ref
        self.states[stage] = state.name
        return ref

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
        }
