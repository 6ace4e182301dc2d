"""Run stage tasks against one store and remember how each ended (computed or cached)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from tasks._store import bind
from zooflow.store import ArtifactRef


class StageFailedError(Exception):
    """Several tasks of one stage failed; the message lists each one's reason."""


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

    def map(
        self,
        stage: str,
        task: Any,
        items: list[dict[str, Any]],
        *,
        names: list[str] | None = None,
        plain: bool = False,
        sequential: bool = False,
        **common: Any,
    ) -> list[Any]:
        """Run `task` once per item, concurrently on the flow's task runner; all finish before errors surface.

        Shards that succeed are stored (and cached) even when others fail, so a rerun resumes.
        `names` records each item's artifact under its own stage name (e.g. one per preset);
        `plain` tasks return no artifact; `sequential` runs one task at a time (a device that
        cannot be shared). Several failures are reported together.
        """
        bound = bind(task, self.store_url)
        if sequential:
            states = [bound(**common, **item, store_url=self.store_url, return_state=True) for item in items]
        else:
            futures = [bound.submit(**common, **item, store_url=self.store_url) for item in items]
            states = [f.wait() or f.state for f in futures]
        counts = Counter(s.name for s in states)
        if names is None:
            self.states[stage] = ", ".join(f"{n} {name}" for name, n in sorted(counts.items()))
        failed = [s for s in states if not s.is_completed()]
        if len(failed) > 1:
            messages = []
            for s in failed:
                try:
                    s.result()
                except Exception as exc:  # noqa: BLE001 - collected and re-raised together below
                    messages.append(str(exc))
            raise StageFailedError(f"{len(failed)} {stage} tasks failed:\n" + "\n".join(messages))
        if failed:
            failed[0].result()  # raises the failure's own exception
        results = [s.result() for s in states]
        for i, (state, result) in enumerate(zip(states, results, strict=True)):
            if names is not None:
                self.states[names[i]] = state.name
                if not plain:
                    self.refs[names[i]] = _ref(result)
        return results

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
