"""Every benchmark script runs to its verdict in a quick mode, so none can rot unnoticed (int8-mixed
crashed `benchmarks/toolchain.py` for weeks). The numbers are not checked here: benchmarks measure on
a quiet machine, never in timed tests; this checks that each script still runs and prints its lines."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# script -> (quick arguments, lines its output must hold)
QUICK: dict[str, tuple[list[str], list[str]]] = {
    "evaluate.py": (
        ["--images", "2000", "--classes", "100", "--baseline-images", "200"],
        ["speed-up, top-1/top-5 vs baseline", "target <= "],
    ),
    "flow.py": (
        ["--classes", "2", "--per-class", "1", "--smoke"],
        ["cached / cold:", "orchestration overhead (cached)"],
    ),
    "shared_store.py": (
        ["--classes", "2", "--per-class", "1", "--smoke"],
        ["s3 store, Redis lock", "remote records + Redis lock vs local records + flock", "whole run per stage"],
    ),
    "int8_weights.py": (["--smoke"], ["auto on this CPU:", "vs fp32"]),
    "preprocess.py": (
        ["--images", "12", "--repeats", "1", "--quick"],
        ["exact path vs torchvision, per core:", "npz stage memory for 10x the images:", "bytes per image"],
    ),
    "rescan.py": (["--images", "300"], ["rescan, unchanged:", "identity changed: True"]),
    "sensitivity.py": (["--images", "8"], ["sensitivity stage:", "most sensitive:"]),
    "toolchain.py": (["--smoke"], ["int8-mixed (K=2)", "identical models:", "worst at 20 images", "harness"]),
}


USE_PREFECT = {"flow.py", "shared_store.py"}
USE_REDIS = {"shared_store.py"}


def test_every_benchmark_script_has_a_quick_run() -> None:
    scripts = sorted(p.name for p in (REPO / "benchmarks").glob("*.py") if not p.name.startswith("_"))
    assert scripts == sorted(QUICK), "add the new benchmark script to QUICK with its quick arguments"


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(QUICK))
def test_benchmark_runs_in_its_quick_mode(script: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    args, expected = QUICK[script]
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(tmp_path / "results"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "TMPDIR": str(tmp_path),
    }
    env.pop("PREFECT_API_URL", None)
    if script in USE_PREFECT:  # the session's test API (as a team's server), not a temporary one per script
        request.getfixturevalue("prefect_api")
        from prefect.settings import PREFECT_API_URL

        env["PREFECT_API_URL"] = str(PREFECT_API_URL.value())
    if script in USE_REDIS and shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (Debian: apt-get install redis-server; .ci/run installs it)")
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"{script} exited {done.returncode}:\n{done.stderr[-3000:]}"
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    missing = [line for line in expected if line not in done.stdout]
    assert not missing, f"{script} did not print {missing}:\n{done.stdout[-3000:]}"
