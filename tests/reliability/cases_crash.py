"""Crashes: a killed run leaves no process behind, and its staging is cleaned at the next start."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.reliability.catalogue import case
from tests.reliability.helpers import run_env, small_run
from zooflow import storecheck
from zooflow.store import Store


@case(
    "sigkill-run-leaves-no-process",
    area="crash",
    fault="SIGKILL of `zooflow run` (the main process only, as the OOM killer does) while a stage is writing its artifact",
    sees="within 10 s no process of the run is left: its temporary Prefect API server gets SIGTERM from the kernel (PR_SET_PDEATHSIG) and exits",
    kept="every artifact committed before the kill; its staging folder is removed at the next start",
    fixed_in="issue 10 #8",
    slow=True,
)
def sigkill_no_orphans(request: pytest.FixtureRequest) -> None:
    import psutil

    tmp: Path = request.getfixturevalue("tmp_path")
    store = tmp / "store"
    args = small_run(request, 2)
    exe = Path(sys.executable).with_name("zooflow")
    proc = subprocess.Popen(
        [str(exe), *args],
        env=run_env(tmp, store),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not (store / "tmp").is_dir() or not any((store / "tmp").glob("stage-*/*")):
            assert proc.poll() is None, "the run ended before it staged an artifact"
            assert time.monotonic() < deadline, "nothing staged in time"
            time.sleep(0.02)
        family = psutil.Process(proc.pid).children(recursive=True)
        assert any("uvicorn" in " ".join(p.cmdline()) for p in family), "the run's API server was not found"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        _, alive = psutil.wait_procs(family, timeout=10)
        assert alive == [], f"still running 10 s after the kill: {[p.cmdline()[:4] for p in alive]}"
    finally:
        with contextlib.suppress(ProcessLookupError):  # whatever is left of the run's process group
            os.killpg(proc.pid, signal.SIGKILL)
    left = [p for p in (store / "tmp").glob("stage-*") if p.is_dir()]
    assert left, "the kill left no staging folder to clean (the test lost its point)"
    cleaned = storecheck.clean_staging(Store(store))
    assert {a.target for a in cleaned if a.kind == "staging" and a.done} >= {str(p) for p in left}
    assert not [p for p in (store / "tmp").glob("stage-*") if p.is_dir()]


@case(
    "staging-of-a-dead-process",
    area="crash",
    fault="a process killed while it staged an artifact (a worker, a CLI command)",
    sees="`artifacts gc` lists its staging folder; the next run's start removes it; a live process's staging is never touched",
    kept="the store's artifacts; the live process's staging",
    fixed_in="issue 10 #8",
)
def dead_staging(request: pytest.FixtureRequest) -> None:
    tmp: Path = request.getfixturevalue("tmp_path")
    store = Store(tmp / "s")
    script = textwrap.dedent(
        f"""
        import os, signal
        from zooflow.store import Store
        store = Store({str(tmp / "s")!r})
        with store.staging("npz") as staged:
            (staged / "half.npz").write_bytes(b"x" * 1000)
            print(staged, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    dead = Path(done.stdout.strip())
    assert done.returncode == -signal.SIGKILL and dead.is_dir()
    with store.staging("test") as mine:
        (mine / "live.bin").write_bytes(b"live")
        planned = storecheck.stale_staging(store)
        assert [a.target for a in planned if a.kind == "staging"] == [str(dead)]
        storecheck.clean_staging(store)
        assert not dead.exists() and (mine / "live.bin").read_bytes() == b"live"
