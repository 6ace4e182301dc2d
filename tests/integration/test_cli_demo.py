"""End to end through the installed console script, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _zooflow(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("zooflow")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, env=env, timeout=600)


def test_demo_run_json_then_cached_rerun(tmp_path: Path) -> None:
    env = {**os.environ, "ZOOFLOW_STORE": str(tmp_path / "store"), "PREFECT_HOME": str(tmp_path / "prefect-home")}
    env.pop("PREFECT_API_URL", None)  # the CLI starts its own ephemeral API
    first = _zooflow("run", "--demo", "--json", env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    summary = json.loads(first.stdout.strip().splitlines()[-1])
    assert summary["status"] == "completed"
    assert set(summary["artifacts"]) == {
        "dataset",
        "checkpoint",
        "onnx",
        "calibration",
        "npz",
        "compiled",
        "outputs",
        "benchmark",
    }
    assert all(len(a["digest"]) == 64 and a["state"] == "Completed" for a in summary["artifacts"].values())
    digests = {stage: a["digest"] for stage, a in summary["artifacts"].items()}

    second = _zooflow("run", "--demo", "--json", env=env)
    assert second.returncode == 0, second.stderr[-3000:]
    again = json.loads(second.stdout.strip().splitlines()[-1])["artifacts"]
    assert {stage: a["digest"] for stage, a in again.items() if stage != "benchmark"} == {
        stage: d for stage, d in digests.items() if stage != "benchmark"
    }
    assert {stage: a["state"] for stage, a in again.items()} == {
        "dataset": "Completed",  # the folder is always rescanned; its index is unchanged
        "checkpoint": "Cached",
        "onnx": "Cached",
        "calibration": "Cached",
        "npz": "Cached",
        "compiled": "Cached",
        "outputs": "Cached",
        "benchmark": "Completed",  # measured again in every run
    }

    listed = _zooflow("artifacts", "list", "--json", env=env)
    listing = {(r["kind"], r["version"]) for r in json.loads(listed.stdout)}
    assert listing == {
        ("dataset-index", 1),
        ("calibration", 1),
        ("npz", 1),
        ("dataset", 1),
        ("checkpoint", 1),
        ("onnx", 1),
        ("compiled", 1),
        ("outputs", 1),
    }
