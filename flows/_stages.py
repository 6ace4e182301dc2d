"""Run stage tasks against one store and remember how each ended (computed or cached)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from tasks._locks import describe as describe_locks
from tasks._store import bind
from zooflow import interrupts
from zooflow.datasets import DatasetHandle
from zooflow.runconfig import PipelineConfig
from zooflow.store import ArtifactRef, open_store


class StageFailedError(Exception):
    """Several tasks of one stage failed; the message lists each one's reason."""


def _ref(result: Any) -> ArtifactRef | None:
    """The artifact a task result stands for (handles such as DatasetHandle carry one as `.index`);
    None for tasks that return no artifact (e.g. the gate checks)."""
    if isinstance(result, ArtifactRef):
        return result
    index = getattr(result, "index", None)
    return index if isinstance(index, ArtifactRef) else None


def _named(task: Any, label: str | None) -> Any:
    """The task with runs named ``<task> <label>`` (braces escaped: Prefect formats the name with the parameters)."""
    if not label:
        return task
    name = f"{task.name} {label}".replace("{", "{{").replace("}", "}}")
    return task.with_options(task_run_name=name)


class Stages:
    """Calls stage tasks with results persisted under the store; records each task's state name."""

    def __init__(self, store_url: str) -> None:
        from prefect.runtime import flow_run

        self.store_url = store_url
        self.refs: dict[str, ArtifactRef] = {}
        self.states: dict[str, str] = {}
        self.flow_run_id = flow_run.id
        if interrupts.guarded():  # a signal ends the process: it says which of these stages finished
            interrupts.add_progress(self.progress)

    def progress(self) -> dict[str, Any]:
        """The stages that ended so far and how (for `zooflow.interrupts`)."""
        return {"finished": dict(self.states), "flow_run_id": self.flow_run_id}

    def run(self, stage: str, task: Any, *, label: str | None = None, **params: Any) -> Any:
        """Run `task` for `stage`; a failed task re-raises its error (failing the flow run).

        `label` names the task run in the UI (``compile int8-max``, ``compile fp32-reference``).
        """
        state = _named(bind(task, self.store_url), label)(**params, store_url=self.store_url, return_state=True)
        self.states[stage] = state.name
        result = state.result()  # raises the task's exception if it failed
        self._record(stage, result)
        return result

    def _record(self, stage: str, result: Any) -> None:
        ref = _ref(result)
        if ref is not None:
            self.refs[stage] = ref

    def map(
        self,
        stage: str,
        task: Any,
        items: list[dict[str, Any]],
        *,
        names: list[str] | None = None,
        labels: list[str] | None = None,
        sequential: bool = False,
        **common: Any,
    ) -> list[Any]:
        """Run `task` once per item, concurrently on the flow's task runner; all finish before errors surface.

        Shards that succeed are stored (and cached) even when others fail, so a rerun resumes.
        `names` records each item's artifact under its own stage name (e.g. one per preset);
        `labels` names each task run in the UI; `sequential` runs one task at a time (a device
        that cannot be shared). Several failures are reported together.
        """
        bound = bind(task, self.store_url)
        tasks = [_named(bound, lab) for lab in labels] if labels else [bound] * len(items)
        if sequential:
            states = [
                t(**common, **item, store_url=self.store_url, return_state=True)
                for t, item in zip(tasks, items, strict=True)
            ]
        else:
            futures = [
                t.submit(**common, **item, store_url=self.store_url) for t, item in zip(tasks, items, strict=True)
            ]
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
        for item_name, state, result in zip(names or [], states, results, strict=False):
            self.states[item_name] = state.name
            self._record(item_name, result)
        return results

    def summary(self, **extra: Any) -> dict[str, Any]:
        """The run's result: status, then per stage the artifact and whether it was cached."""
        return {
            "status": "completed",
            **extra,
            "store": self.store_url,
            "locks": describe_locks(open_store(self.store_url)),
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


@dataclass
class Prepared:
    """What every preset of one model and dataset shares."""

    config: PipelineConfig
    toolchain: Any
    device: dict[str, Any]
    dataset: DatasetHandle
    checkpoint: ArtifactRef
    onnx: ArtifactRef
    reference_onnx: ArtifactRef  # the embedded toolchain's export (the same artifact as `onnx` on it)
    reference_device: dict[str, Any]  # the embedded toolchain's task arguments (the fp32 reference, sensitivity)
    calibration: ArtifactRef
    shards: list[ArtifactRef]
    npz: ArtifactRef
    reference: ArtifactRef
    probe: ArtifactRef | None
    parity: ArtifactRef | None
