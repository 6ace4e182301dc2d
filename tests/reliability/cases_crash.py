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
        # the checkpoint's staging: copied, then loaded and checked before it is committed (a second, not ms)
        while not (store / "tmp").is_dir() or not any((store / "tmp").glob("stage-*/*.pth")):
            assert proc.poll() is None, "the run ended before it staged an artifact"
            assert time.monotonic() < deadline, "nothing staged in time"
            time.sleep(0.02)
        family = psutil.Process(proc.pid).children(recursive=True)
        assert any("uvicorn" in _command(p) for p in family), "the run's API server was not found"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        _, alive = psutil.wait_procs(family, timeout=10)
        assert alive == [], f"still running 10 s after the kill: {[_command(p)[:200] for p in alive]}"
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


HUNG_RUN = [
    *("run", "--demo", "--demo-classes", "4", "--demo-per-class", "1", "--allow-short"),
    *("--toolchain", "vastai", "--quant", "fp16", "--no-parity", "--probe-images", "0", "--json"),
]


def _start_hung_run(request: pytest.FixtureRequest, env: dict[str, str]) -> tuple[subprocess.Popen[str], list[int]]:
    """Start `zooflow run` on the vastai emulators with vamc hanging (VASTAI_EMULATOR_FAULT=hang); return
    the process once vamc hangs, with the pids of its whole family then."""
    import psutil

    request.getfixturevalue("emulators")
    exe = Path(sys.executable).with_name("zooflow")
    env = {**env, "PATH": os.environ["PATH"], "VASTAI_EMULATOR_FAULT": "hang"}
    proc = subprocess.Popen(
        [str(exe), *HUNG_RUN],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    try:
        while True:
            assert proc.poll() is None, f"the run ended before vamc started: {proc.communicate()[1][-2000:]}"
            assert time.monotonic() < deadline, "vamc did not start in time"
            family = psutil.Process(proc.pid).children(recursive=True)
            if any("vamc" in _command(p) for p in family):
                return proc, [p.pid for p in family]
            time.sleep(0.1)
    except BaseException:  # the test failed here: leave no run (and no hung vamc) behind
        for child in psutil.Process(proc.pid).children(recursive=True) if proc.poll() is None else []:
            with contextlib.suppress(psutil.Error):
                child.kill()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        raise


def _command(process: object) -> str:
    """A process's command line ('' once it has exited: a finished `vamc --version` probe is a zombie
    until its parent reaps it, and psutil will not read a zombie's command line)."""
    import psutil

    try:
        return " ".join(process.cmdline())  # type: ignore[attr-defined]
    except psutil.Error:
        return ""


def _ended(proc: subprocess.Popen[str], family: list[int], limit: float, bin_dir: Path) -> tuple[float, str, str]:
    """Wait for the run to exit (at most `limit` seconds); (seconds it took, stdout, stderr); no process of
    its family, and no emulator from `bin_dir`, may be left."""
    import psutil

    start = time.monotonic()
    try:
        out, err = proc.communicate(timeout=limit)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    took = time.monotonic() - start
    time.sleep(0.5)
    left = [p for p in psutil.Process().children(recursive=True) if p.pid in family and _command(p)]
    assert not left, f"left running: {[_command(p)[:200] for p in left]}"
    tools = [  # this test's emulators, whoever started them (a retry may start a new vamc)
        p
        for p in psutil.process_iter(["cmdline", "status"])
        if p.info["status"] != "zombie" and str(bin_dir) in " ".join(p.info["cmdline"] or [])
    ]
    assert not tools, f"a tool outlived the run: {[p.info['cmdline'][:3] for p in tools]}"
    return took, out, err


def _summary(out: str) -> dict[str, object]:
    import json

    return json.loads(out.strip().splitlines()[-1])


@case(
    "ctrl-c-during-run",
    area="crash",
    fault="Ctrl-C (SIGINT to the whole process group, its temporary Prefect API included) while `zooflow run` "
    "waits for a hung vamc",
    sees="exit 130 within 10 s (it took 231 s, exit 1, six tracebacks): one line naming the signal and the "
    "stages that finished, the fix (run it again), and the --json line with status interrupted; no traceback",
    kept="every finished stage: the same command again reuses them (Cached); no process of the run is left",
    fixed_in="issue 29 #2",
    slow=True,
)
def ctrl_c_run(request: pytest.FixtureRequest) -> None:
    tmp: Path = request.getfixturevalue("tmp_path")
    env = run_env(tmp, tmp / "store")
    proc, family = _start_hung_run(request, env)
    os.killpg(proc.pid, signal.SIGINT)
    took, out, err = _ended(proc, family, 30, request.getfixturevalue("emulators"))
    assert proc.returncode == 130 and took < 10, (proc.returncode, took, err[-2000:])
    assert "Traceback" not in err, err[-3000:]
    summary = _summary(out)
    assert summary["status"] == "interrupted" and summary["signal"] == "SIGINT" and summary["exit_code"] == 130
    finished = summary["finished"]
    assert isinstance(finished, dict) and {"checkpoint", "onnx", "npz"} <= set(finished)
    assert "zooflow run interrupted: stopped by SIGINT" in err and "run the same command again" in err
    proc, family = _start_hung_run(request, env)  # the same command again: what finished is reused
    os.killpg(proc.pid, signal.SIGINT)
    _, out, _ = _ended(proc, family, 30, request.getfixturevalue("emulators"))
    again = _summary(out)["finished"]
    assert isinstance(again, dict) and all(again[s] == "Cached" for s in ("checkpoint", "onnx", "npz")), again


@case(
    "sigterm-during-run",
    area="crash",
    fault="SIGTERM to `zooflow run` alone (as systemd, docker stop or a CI timeout send it) while vamc hangs, "
    "on a team's Prefect API",
    sees="exit 143 within 10 s (Prefect's own SIGTERM handling waited for the hung task for ever), the same "
    "line and --json status interrupted; the flow run reads Cancelled in the API, with the reason",
    kept="every finished stage; vamc and every other child process are stopped",
    fixed_in="issue 29 #2",
    slow=True,
)
def sigterm_run(request: pytest.FixtureRequest) -> None:
    from prefect.client.orchestration import get_client

    tmp: Path = request.getfixturevalue("tmp_path")
    proc, family = _start_hung_run(request, run_env(tmp, tmp / "store", request))
    os.kill(proc.pid, signal.SIGTERM)
    took, out, err = _ended(proc, family, 30, request.getfixturevalue("emulators"))
    assert proc.returncode == 143 and took < 10, (proc.returncode, took, err[-2000:])
    assert "Traceback" not in err, err[-3000:]
    summary = _summary(out)
    assert summary["status"] == "interrupted" and summary["signal"] == "SIGTERM"
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(str(summary["flow_run_id"])).state
    assert state is not None and state.name == "Cancelled" and "SIGTERM" in (state.message or ""), state


@case(
    "temporary-api-dies-during-run",
    area="crash",
    fault="the run's temporary Prefect API server is killed (SIGKILL) while vamc hangs",
    sees="within 30 s (it took about 2.5 min and six tracebacks): exit 1, a line saying the run's temporary "
    "Prefect API server died (its pid, address and signal), the stages that finished, and the fix; --json "
    "status failed with api_died",
    kept="every finished stage; no process of the run is left",
    fixed_in="issue 29 #2",
    slow=True,
)
def api_dies(request: pytest.FixtureRequest) -> None:
    import psutil

    tmp: Path = request.getfixturevalue("tmp_path")
    proc, family = _start_hung_run(request, run_env(tmp, tmp / "store"))
    (api,) = [p for p in psutil.Process(proc.pid).children(recursive=True) if "uvicorn" in _command(p)]
    api.kill()
    took, out, err = _ended(proc, family, 60, request.getfixturevalue("emulators"))
    assert proc.returncode == 1 and took < 30, (proc.returncode, took, err[-2000:])
    assert "Traceback" not in err, err[-3000:]
    assert f"temporary Prefect API server (pid {api.pid}" in err and "SIGKILL" in err
    summary = _summary(out)
    assert summary["status"] == "failed" and summary["api_died"] is True
