"""`--runner dask` as a user starts it: the console script in a subprocess, for `run` and `sweep`, on a
temporary local cluster and on a scheduler with two workers started here. Each command runs twice:
the second time every stage is Cached (the dataset is always rescanned and the gates always checked).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.helpers import run_env, zooflow_process

pytestmark = pytest.mark.slow

SMALL = [
    *("--demo", "--demo-classes", "4", "--demo-per-class", "1", "--allow-short", "--no-parity"),
    *("--probe-images", "0", "--sensitivity-images", "0", "--bench-batch", "1", "--runner", "dask", "--json"),
]
# by design on every run: the dataset is rescanned, the gates checked, the sweep's table drawn anew
ALWAYS_RUN = {"dataset", "gates", "sweep"}


def _summary(done: subprocess.CompletedProcess[str]) -> dict[str, object]:
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _all_cached(summary: dict[str, object]) -> None:
    stages = summary["stages"]
    assert isinstance(stages, dict)
    computed = {k: v for k, v in stages.items() if k not in ALWAYS_RUN and "Completed" in str(v)}
    assert not computed, f"computed again: {computed}"


def _twice(command: str, extra: list[str], env: dict[str, str]) -> dict[str, object]:
    """Run `zooflow COMMAND` twice; the first completes, the second is all Cached. Returns the first summary."""
    first = _summary(zooflow_process(command, *SMALL, *extra, env=env, timeout=900))
    _all_cached(_summary(zooflow_process(command, *SMALL, *extra, env=env, timeout=900)))
    return first


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def dask_cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[str, dict[str, str], list[Path]]]:
    """`dask scheduler` and two `dask worker` processes on 127.0.0.1, sharing the session's Prefect API
    with zooflow (an external cluster outlives any one run's temporary API)."""
    env = run_env(tmp_path, tmp_path / "store", request)
    dask = str(Path(sys.executable).with_name("dask"))
    address = f"tcp://127.0.0.1:{_free_port()}"
    logs = [tmp_path / f"{name}.log" for name in ("scheduler", "worker-1", "worker-2")]
    commands = [
        [dask, "scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1], "--no-dashboard"],
        *([dask, "worker", address, "--nthreads", "1", "--no-dashboard"] for _ in range(2)),
    ]
    procs = []
    try:
        for command, log in zip(commands, logs, strict=True):
            with open(log, "w") as out:  # INFO: each task run a worker executes logs a line there
                procs.append(
                    subprocess.Popen(
                        command, env={**env, "PREFECT_LOGGING_LEVEL": "INFO"}, stdout=out, stderr=subprocess.STDOUT
                    )
                )
            time.sleep(1.0 if command[1] == "scheduler" else 0)
        from distributed import Client

        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=120)
        yield address, env, logs[1:]
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_run_and_sweep_on_a_temporary_local_cluster(tmp_path: Path) -> None:
    env = run_env(tmp_path, tmp_path / "store")  # no Prefect server: each process starts its own API
    assert "PREFECT_API_URL" not in env
    run = _twice("run", [], env)
    assert run["status"] == "completed"
    sweep = _twice("sweep", ["--presets", "fp32,int8-max"], env)
    assert [row["preset"] for row in sweep["table"]] == ["fp32", "int8-max"]  # type: ignore[index]


def test_run_and_sweep_on_an_external_scheduler_with_two_workers(
    dask_cluster: tuple[str, dict[str, str], list[Path]],
) -> None:
    address, env, worker_logs = dask_cluster
    _twice("run", ["--dask-address", address], env)
    _twice("sweep", ["--presets", "fp32,int8-max", "--dask-address", address], env)
    ran = [log.read_text().count("Task run '") for log in worker_logs]
    assert all(n > 0 for n in ran), f"task runs per worker: {ran} (every shard task ran on the cluster)"


def test_an_external_scheduler_without_a_shared_prefect_api_is_refused_before_any_work(tmp_path: Path) -> None:
    env = {k: v for k, v in run_env(tmp_path, tmp_path / "store").items() if k != "PREFECT_API_URL"}
    done = zooflow_process("run", *SMALL, "--dask-address", f"tcp://127.0.0.1:{_free_port()}", env=env, timeout=300)
    assert done.returncode == 2 and "needs a Prefect server that its workers and zooflow share" in done.stderr
    assert not (tmp_path / "store" / "names").exists()
