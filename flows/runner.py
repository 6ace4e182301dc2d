"""Entry points the core CLI uses to run flows (registered under ``zooflow.runners``).

The core never imports Prefect; it finds this module through package metadata.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from zooflow import interrupts
from zooflow.config import ExecutionOptions
from zooflow.errors import ConfigError, ZooflowError
from zooflow.runconfig import NightlyConfig, RunConfig, SweepConfig


def _finish(state: Any) -> dict[str, Any]:
    """The flow's result, or its status and error (with the fix and the exit status), with the flow run id.

    A failed gate exits 1 (the run worked; the model misses its goal); a `ZooflowError` (bad input,
    a full disk, a failing tool) exits 2 with its fix; anything else exits 1.
    """
    from zooflow.gates import GateFailedError

    flow_run_id = str(state.state_details.flow_run_id)
    if state.is_completed():
        result = dict(state.result())
        result["flow_run_id"] = flow_run_id
        return result
    failed: dict[str, Any] = {"status": state.type.value.lower(), "flow_run_id": flow_run_id, "exit_code": 1}
    try:
        state.result()
    except GateFailedError as exc:
        failed.update(error=str(exc))
    except ZooflowError as exc:
        failed.update(error=exc.problem, fix=exc.fix, exit_code=2)
    except Exception as exc:  # noqa: BLE001 - report whatever failed the run
        failed.update(error=str(exc))
    else:
        failed.update(error=state.message or state.name)
    return failed


class _NoTracebackForZooflowErrors(logging.Filter):
    """On the console, a `ZooflowError` (it names the problem and the fix) is one line, not a traceback;
    the UI's log (the API handler, which sees the record first) keeps the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], ZooflowError):
            record.exc_info = None
            record.exc_text = None
        return True


def _quiet_console() -> None:
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _NoTracebackForZooflowErrors) for f in handler.filters):
            handler.addFilter(_NoTracebackForZooflowErrors())


# The temporary API server dies with this process. Prefect starts its own with a plain Popen:
# after a SIGKILL of `zooflow run` it kept running (and holding its ~235 MB) for good. Ours is the
# same server (uvicorn on prefect.server.api.server:create_app, UI off), started through a
# one-line launcher that asks Linux to send it SIGTERM when its parent dies (prctl
# PR_SET_PDEATHSIG, which survives the exec) and exits at once if the parent is already gone.
# It runs in its own session, so a terminal's Ctrl-C (sent to the whole foreground process group)
# reaches only `zooflow run`, which then ends itself and the server (`zooflow.interrupts`); before,
# the server died first and the run hung for minutes in retries against it.
_LAUNCHER = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)\n"
    "os.getppid() == int(sys.argv[1]) or sys.exit(0)\n"
    "os.execv(sys.executable, [sys.executable, '-m', 'uvicorn', *sys.argv[2:]])\n"
)


@contextlib.contextmanager
def temporary_api() -> Iterator[None]:
    """Prefect's API for this process: the configured one, else a temporary server tied to this process."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    _quiet_console()
    if PREFECT_API_URL.value() or not sys.platform.startswith("linux"):
        yield  # a configured server, or no prctl here: Prefect's own ephemeral mode
        return
    from prefect.logging.handlers import APILogWorker

    server = _tied_server()
    server.start()
    stopping = threading.Event()
    watchdog = threading.Thread(target=_watch_server, args=(server, stopping), name="zooflow-api-watch", daemon=True)
    watchdog.start()
    try:
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            try:
                yield
            finally:
                APILogWorker.drain_all(timeout=5)  # the run's last log lines reach the server before it stops
    finally:
        stopping.set()
        server.stop()


API_WATCH_SECONDS = 1.0  # how often the temporary API's process is checked while a run needs it


def _watch_server(server: Any, stopping: threading.Event) -> None:
    """End the run (`zooflow.interrupts.abort`) if the temporary API server dies under it: every Prefect
    call would otherwise retry for minutes and end in a traceback."""
    while not stopping.wait(API_WATCH_SECONDS):
        process = getattr(server, "server_process", None)
        code = process.poll() if process is not None else None
        if code is None or stopping.is_set():
            continue
        how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        problem = f"the run's temporary Prefect API server (pid {process.pid}, {server.api_url}) died ({how})"
        if interrupts.guarded():
            interrupts.abort("failed", problem, 1, tell_api=False, api_died=True)
        logging.getLogger("zooflow").error("%s; the run cannot report its progress any more", problem)
        return


# How long an aborting run watches for a Crashed written by Prefect's engine, to replace it. The flows
# take SIGTERM's handler back from the engine (`interrupts.own_sigterm`), so none is expected: this is
# the belt to those braces (before them, under CI load, Prefect's Crashed landed after 1.5 s and stayed).
CRASH_OVERRIDE_SECONDS = 1.0


def _mark_cancelled_on_abort() -> None:
    """If `zooflow.interrupts` ends the process, record in this run's API (the one in effect now: the
    abort runs in a thread of its own, which does not see these settings) that its flow run ended."""
    from prefect.settings import PREFECT_API_URL

    api_url = PREFECT_API_URL.value()

    def mark(reason: str) -> None:
        from prefect.client.orchestration import get_client
        from prefect.settings import temporary_settings
        from prefect.states import Cancelled

        run_id = interrupts.progress().get("flow_run_id")
        if run_id is None or not api_url:
            return
        message = f"{reason}; re-running the same command resumes from the stages that finished"
        with temporary_settings(updates={PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
            client.set_flow_run_state(run_id, Cancelled(message=message), force=True)
            # Prefect's engine, in the main thread, answers the same signal by forcing Crashed; whichever
            # write lands last stays (under load, theirs did). Wait for theirs, briefly, and write ours again.
            deadline = time.monotonic() + CRASH_OVERRIDE_SECONDS
            while time.monotonic() < deadline:
                time.sleep(0.05)
                state = client.read_flow_run(run_id).state
                if state is not None and state.type.value == "CRASHED":
                    client.set_flow_run_state(run_id, Cancelled(message=message), force=True)
                    return

    interrupts.add_on_abort(mark)


def _tied_server() -> Any:
    import subprocess

    import prefect
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import get_current_settings

    class TiedServer(SubprocessASGIServer):
        def _run_uvicorn_command(self) -> subprocess.Popen[Any]:
            args = ["--app-dir", str(prefect.__module_path__.parent), "--factory"]
            args += ["prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(self.port)]
            args += ["--log-level", "error", "--lifespan", "on"]
            env = {
                **os.environ,
                "PREFECT_UI_ENABLED": "0",
                "PREFECT__SERVER_EPHEMERAL": "1",
                "PREFECT__SERVER_FINAL": "1",
                **get_current_settings().to_environment_variables(exclude_unset=True),
            }
            launcher = [sys.executable, "-c", _LAUNCHER, str(os.getpid()), *args]
            return subprocess.Popen(launcher, env=env, start_new_session=True)

    with socket.socket() as probe:  # a free port from the OS (Prefect's own picks at random from 8000-8999)
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    return TiedServer(port)


def require_api_for(execution: ExecutionOptions | None) -> None:
    """An external Dask cluster needs a Prefect API that outlives each run: its workers keep the API
    they first talked to, and a run's temporary API is gone when the run ends (the next run's shard
    tasks then failed to take their concurrency slots, after minutes of retries)."""
    from prefect.settings import PREFECT_API_URL

    if execution is not None and execution.dask_address and not PREFECT_API_URL.value():
        raise ConfigError(
            f"--dask-address {execution.dask_address} needs a Prefect server that its workers and zooflow share; "
            "none is configured (PREFECT_API_URL is not set), and a run's temporary API ends with the run",
            "start one (`prefect server start`) and set PREFECT_API_URL for zooflow and the Dask workers "
            "(README, 'For a team'); or leave --dask-address out for a temporary local cluster",
        )


def _with_runner(flow: Any, execution: ExecutionOptions | None) -> Any:
    """The flow on the chosen task runner: threads (Prefect's default) or a Dask cluster."""
    if execution is None or execution.runner == "threads":
        return flow
    from prefect_dask import DaskTaskRunner

    # the cluster's own chatter (workers starting and retiring, a traceback logged at INFO as a temporary
    # cluster closes its connections) is not the run's news
    logging.getLogger("distributed").setLevel(logging.WARNING)
    if execution.dask_address:
        return flow.with_options(task_runner=DaskTaskRunner(address=execution.dask_address))
    # a temporary cluster is ours: its worker processes log only what is critical (as it closes, a worker's
    # last heartbeat can race the scheduler's exit and log a traceback; the tasks' own errors reach
    # Prefect and the run's summary, not these logs)
    runner = DaskTaskRunner(cluster_kwargs={"silence_logs": logging.CRITICAL})
    return flow.with_options(task_runner=runner)


def run_deploy(config: RunConfig, execution: ExecutionOptions | None = None) -> dict[str, Any]:
    """Run `deploy_classifier` in this process (Prefect's ephemeral API unless one is configured)."""
    from flows.deploy_classifier import deploy_classifier

    require_api_for(execution)
    with temporary_api():
        _mark_cancelled_on_abort()
        return _finish(_with_runner(deploy_classifier, execution)(config, return_state=True))


def run_sweep(config: SweepConfig, execution: ExecutionOptions | None = None) -> dict[str, Any]:
    """Run `quant_sweep` in this process."""
    from flows.quant_sweep import quant_sweep

    require_api_for(execution)
    with temporary_api():
        _mark_cancelled_on_abort()
        return _finish(_with_runner(quant_sweep, execution)(config, return_state=True))


def run_nightly(config: NightlyConfig) -> dict[str, Any]:
    """Run `nightly_regression` once in this process."""
    from flows.nightly_regression import nightly_regression

    with temporary_api():
        _mark_cancelled_on_abort()
        return _finish(nightly_regression(config, return_state=True))


def load_deployments(file: Path) -> list[dict[str, Any]]:
    """The deployments of a prefect.yaml, each with its flow object imported from the entrypoint."""
    import yaml

    if not file.is_file():
        raise ConfigError(f"deployments file not found: {file}", "run from the repository root or pass --file")
    doc = yaml.safe_load(file.read_text(encoding="utf-8"))
    found = []
    for spec in doc.get("deployments", []):
        module_path, _, attr = spec["entrypoint"].partition(":")
        module = importlib.import_module(module_path.removesuffix(".py").replace("/", "."))
        found.append({**spec, "flow": getattr(module, attr)})
    return found


def serve_all(file: Path, only: list[str]) -> None:
    """Serve the file's deployments (schedules, parameters, tags) from this process with `prefect.serve`."""
    from prefect import serve
    from prefect.schedules import Cron

    specs = load_deployments(file)
    unknown = sorted(set(only) - {s["name"] for s in specs})
    if unknown:
        raise ConfigError(
            f"no deployment named {', '.join(unknown)} in {file}", f"choose from {', '.join(s['name'] for s in specs)}"
        )
    deployments = []
    for spec in specs:
        if only and spec["name"] not in only:
            continue
        schedules = [
            Cron(s["cron"], timezone=s.get("timezone"), active=s.get("active", True))
            for s in spec.get("schedules") or []
        ]
        deployments.append(
            spec["flow"].to_deployment(
                name=spec["name"],
                description=spec.get("description"),
                tags=spec.get("tags"),
                parameters=spec.get("parameters") or {},
                schedules=schedules or None,
            )
        )
    with temporary_api():
        _refuse_team_deployments([(d.flow_name, d.name) for d in deployments])
        serve(*deployments)


def _refuse_team_deployments(names: list[tuple[str, str]]) -> None:
    """`serve` registers its deployments under their names and pauses them when it stops: on a team's
    server it would take over (and then stop) deployments that the team's workers run from a pool."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL

    taken = []
    with get_client(sync_client=True) as client:
        for flow_name, name in names:
            try:
                found = client.read_deployment_by_name(f"{flow_name}/{name}")
            except ObjectNotFound:
                continue
            if found.work_pool_name:
                taken.append(f"{flow_name}/{name} (work pool {found.work_pool_name})")
    if taken:
        raise ConfigError(
            f"the server at {PREFECT_API_URL.value()} already runs {', '.join(taken)} from a work pool; serving "
            "them here would take them over and pause them when this process stops",
            "`zooflow serve` is for one machine: unset PREFECT_API_URL (it then starts its own server), or "
            "start the team's runs from the UI or with `prefect deployment run`",
        )
