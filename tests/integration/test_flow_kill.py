"""Crash-resume: SIGKILL the whole `zooflow run` mid-shard and at a stage boundary; reruns redo only unfinished work."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ARGS = [
    "run",
    "--demo",
    "--demo-classes",
    "30",
    "--demo-per-class",
    "4",
    "--allow-short",
    "--shard-size",
    "12",
    "--quant",
    "int8-max",
    "--no-parity",
    "--probe-images",
    "0",
    "--bench-batch",
    "1",
    "--json",
]


def _kinds(store: Path) -> list[str]:
    """Kinds of the committed artifacts (a manifest is written last, so these are complete)."""
    kinds = []
    for manifest in (store / "objects").glob("*/*/manifest.json"):
        try:
            kinds.append(json.loads(manifest.read_text())["kind"])
        except (OSError, ValueError):
            continue
    return kinds


def _run_until(env: dict[str, str], ready: Callable[[], bool], what: str) -> None:
    """Start a run and SIGKILL its whole process group as soon as `ready()` holds."""
    exe = Path(sys.executable).with_name("zooflow")
    proc = subprocess.Popen(
        [str(exe), *ARGS], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 400
    try:
        while not ready():
            assert proc.poll() is None, f"the run ended before {what}"
            assert time.monotonic() < deadline, f"no {what} in time"
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _counts(state: str) -> dict[str, int]:
    """'3 Cached, 7 Completed' -> {'Cached': 3, 'Completed': 7}."""
    return {name: int(n) for n, name in (part.split(" ", 1) for part in state.split(", "))}


def test_killed_runs_resume_where_they_stopped(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    from tests.reliability.helpers import run_env

    store = tmp_path / "store"
    # the session's Prefect API, as a team's server: a killed client leaves it running (and saves
    # each of the three processes starting its own; tests/reliability covers a killed temporary API)
    env = run_env(tmp_path, store, request)
    shards = 10  # 120 images in shards of 12

    def writing_npz() -> bool:  # an npz file staged but its shard not committed: mid-shard
        try:
            return any((store / "tmp").rglob("*.npz")) if (store / "tmp").is_dir() else False
        except FileNotFoundError:  # a staging folder committed (moved away) while it was being listed
            return False

    _run_until(env, writing_npz, "an npz shard being written")
    done = _kinds(store).count("npz-shard")
    assert done < shards, "killed mid-stage: some shards unfinished"
    # past a stage boundary: the int8 model compiled (its outputs have begun), evaluation not reached
    _run_until(env, lambda: _kinds(store).count("outputs-shard") > shards, "the int8 model's first outputs")
    kinds = _kinds(store)
    assert kinds.count("npz-shard") == shards and kinds.count("compiled") == 2 and "evaluation" not in kinds

    exe = Path(sys.executable).with_name("zooflow")
    final = subprocess.run([str(exe), *ARGS], env=env, capture_output=True, text=True, timeout=600)
    assert final.returncode == 0, final.stderr[-3000:]
    summary = json.loads(final.stdout.strip().splitlines()[-1])
    stages = summary["stages"]
    assert _counts(stages["npz-shards"]) == {"Cached": shards}  # nothing finished is redone
    assert stages["checkpoint"] == stages["onnx"] == stages["calibration"] == stages["compiled"] == "Cached"
    assert sum(_counts(stages["outputs-shards"]).values()) == shards
    assert stages["evaluation"] == stages["report"] == "Completed"  # the unfinished work, done now
    assert summary["verdict"]["passed"]
    # the resumed run produced what an uninterrupted one does: the same artifacts, once each
    kinds = _kinds(store)
    assert kinds.count("evaluation") == 1 and kinds.count("compiled") == 2  # int8 + the fp32 reference
