"""End to end through the installed console script, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.flows.test_deploy_classifier import STAGES

pytestmark = pytest.mark.slow


def _zooflow(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("zooflow")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, env=env, timeout=600)


# The README's `zooflow run --demo` generates 1000 classes x 2 images; 100 classes x 1 image keep
# every stage (and the calibration's allow-short path); one benchmark batch size. Measured: 158 s -> 115 s.
DEMO = (
    "run",
    "--demo",
    "--demo-classes",
    "100",
    "--demo-per-class",
    "1",
    "--allow-short",
    "--bench-batch",
    "1",
    "--json",
)


def test_demo_run_json_then_cached_rerun(tmp_path: Path) -> None:
    env = {**os.environ, "ZOOFLOW_STORE": str(tmp_path / "store"), "PREFECT_HOME": str(tmp_path / "prefect-home")}
    env.pop("PREFECT_API_URL", None)  # the CLI starts its own ephemeral API
    first = _zooflow(*DEMO, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    summary = json.loads(first.stdout.strip().splitlines()[-1])
    assert summary["status"] == "completed"
    assert set(summary["artifacts"]) == STAGES
    # the fp32 reference is built first; this fp32 run's own compile and outputs are the same tasks,
    # and the reference's export and npz are the run's: Cached within the same run
    within_run = {"reference-onnx", "reference-npz", "compiled", "outputs"}
    assert {stage: a["state"] for stage, a in summary["artifacts"].items()} == {
        stage: "Cached" if stage in within_run else "Completed" for stage in STAGES
    }
    assert all(len(a["digest"]) == 64 for a in summary["artifacts"].values())
    assert summary["verdict"]["passed"] and summary["metrics"]["agreement"] == 100.0  # fp32 vs itself
    assert "report: zooflow report shufflenet-v1-1x_16xb64_in1k/onnxruntime/fp32/report" in first.stderr
    digests = {stage: a["digest"] for stage, a in summary["artifacts"].items()}

    second = _zooflow(*DEMO, env=env)
    assert second.returncode == 0, second.stderr[-3000:]
    again = json.loads(second.stdout.strip().splitlines()[-1])["artifacts"]
    assert {stage: a["digest"] for stage, a in again.items()} == digests
    # the folder is always rescanned (same index); the benchmark is reused on this host
    assert {stage: a["state"] for stage, a in again.items()} == {
        stage: "Completed" if stage == "dataset" else "Cached" for stage in STAGES
    }

    listed = _zooflow("artifacts", "list", "--json", env=env)
    listing = {(r["kind"], r["version"]) for r in json.loads(listed.stdout)}
    assert listing == {
        ("dataset-index", 1),
        ("calibration", 1),
        ("npz", 1),  # model format and the DSP parity's format: two names, version 1 each
        ("dataset", 1),
        ("checkpoint", 1),
        ("onnx", 1),
        ("compiled", 1),
        ("outputs", 1),
        ("probe", 1),
        ("parity", 1),
        ("evaluation", 1),
        ("report", 1),
    }
