"""deploy_classifier under a real Prefect API: caching, verify-on-hit, results in the store."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import MODEL
from tests.support.http import FileServer
from zooflow.config import RunConfig
from zooflow.store import Store

pytestmark = pytest.mark.usefixtures("prefect_api")


def _run(config: RunConfig) -> tuple[Any, dict[str, str]]:
    """Run the flow; return its final state and {task name prefix: state name}."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from flows.deploy_classifier import deploy_classifier

    state = deploy_classifier(config, return_state=True)
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
        )
    return state, {r.name.rsplit("-", 1)[0]: r.state.name for r in runs if r.state is not None}


def _snapshot(root: Path) -> dict[str, float]:
    """Every file under objects/ and names/ with its modification time."""
    return {
        str(p): p.stat().st_mtime_ns for sub in ("objects", "names") for p in (root / sub).rglob("*") if p.is_file()
    }


def test_second_run_is_cached_and_a_corrupted_onnx_recomputes_export_only(
    tmp_path: Path, default_results_dir: Path
) -> None:
    root = tmp_path / "store"
    config = RunConfig(demo=True, store=str(root))

    first, tasks = _run(config)
    assert first.is_completed(), first.message
    assert tasks == {"fetch-checkpoint": "Completed", "export-onnx": "Completed"}
    result = first.result()
    assert result["status"] == "completed"
    onnx_digest = result["artifacts"]["onnx"]["digest"]
    snapshot = _snapshot(root)

    second, tasks = _run(config)
    assert tasks == {"fetch-checkpoint": "Cached", "export-onnx": "Cached"}
    assert {k: v["digest"] for k, v in second.result()["artifacts"].items()} == {
        k: v["digest"] for k, v in result["artifacts"].items()
    }
    assert {v["state"] for v in second.result()["artifacts"].values()} == {"Cached"}
    assert _snapshot(root) == snapshot, "a cached run must not write artifacts"

    store = Store(root)
    onnx_file = store.path(onnx_digest)
    os.chmod(onnx_file, 0o644)
    with open(onnx_file, "r+b") as fh:  # flip bytes in the middle of the stored ONNX
        fh.seek(onnx_file.stat().st_size // 2)
        fh.write(b"\x00corrupt\x00")
    assert store.verify(onnx_digest)

    third, tasks = _run(config)
    assert tasks == {"fetch-checkpoint": "Cached", "export-onnx": "Completed"}
    assert third.result()["artifacts"]["onnx"]["digest"] == onnx_digest  # deterministic export, repaired object
    assert store.verify(onnx_digest) == []

    # Prefect's results for these tasks live under the store, not in the default location.
    assert any((root / "prefect").iterdir())
    assert not any(default_results_dir.rglob("*"))


def test_changed_export_options_miss_the_cache_but_reuse_the_checkpoint(tmp_path: Path) -> None:
    root = tmp_path / "store"
    first, _ = _run(RunConfig(demo=True, store=str(root)))
    assert first.is_completed()
    second, tasks = _run(RunConfig(demo=True, store=str(root), export={"logits": True}))
    assert tasks == {"fetch-checkpoint": "Cached", "export-onnx": "Completed"}
    assert second.result()["artifacts"]["onnx"]["digest"] != first.result()["artifacts"]["onnx"]["digest"]
    assert [v.version for v in Store(root).versions(f"{MODEL}/onnx")] == [1, 2]


def test_cache_follows_content_across_stores_and_urls(tmp_path: Path, checkpoint_file: Path) -> None:
    """An http(s) source is fetched, verified by its name suffix, and cached on its identity."""
    data = checkpoint_file.read_bytes()
    name = f"/shufflenet_v1_local-{hashlib.sha256(data).hexdigest()[:8]}.pth"
    with FileServer({name: data}) as srv:
        config = RunConfig(checkpoint=srv.url(name), store=str(tmp_path / "store"))
        first, tasks = _run(config)
        assert first.is_completed(), first.message
        assert tasks == {"fetch-checkpoint": "Completed", "export-onnx": "Completed"}
        _second, tasks = _run(config)
        assert tasks == {"fetch-checkpoint": "Cached", "export-onnx": "Cached"}
        assert len(srv.behaviour.requests) == 1, "the cached run must not download again"


def test_library_upgrade_changes_the_cache_key(monkeypatch: pytest.MonkeyPatch) -> None:
    import tasks._cache as cache
    from tasks.export import EXPORT_POLICY

    inputs = {"model": MODEL, "options": {"opset": 11}, "store_url": "/a"}
    key = EXPORT_POLICY.base_key("export-onnx", inputs)
    assert EXPORT_POLICY.base_key("export-onnx", {**inputs, "store_url": "/elsewhere"}) == key
    assert EXPORT_POLICY.base_key("other-task", inputs) != key
    real = cache.library_versions
    monkeypatch.setattr(cache, "library_versions", lambda *names: {**real(*names), "onnx": "99.0"})
    assert EXPORT_POLICY.base_key("export-onnx", inputs) != key


def test_failing_stage_fails_the_run_and_keeps_earlier_artifacts(tmp_path: Path) -> None:
    root = tmp_path / "store"
    state, tasks = _run(RunConfig(demo=True, store=str(root), export={"opset": 10}))
    assert state.is_failed()
    assert tasks == {"fetch-checkpoint": "Completed", "export-onnx": "Failed"}
    with pytest.raises(Exception, match="opset 10 cannot express this model"):
        state.result()
    assert [r.kind for r in (Store(root).ref(d) for d in Store(root).digests())] == ["checkpoint"]


def test_unwritable_store_fails_before_any_task(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    state, tasks = _run(RunConfig(demo=True, store=str(blocker / "store")))
    assert state.is_failed()
    assert tasks == {}
    with pytest.raises(Exception, match="is not writable"):
        state.result()
