"""Entry points the core CLI uses to run flows (registered under ``zooflow.runners``).

The core never imports Prefect; it finds this module through package metadata.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
    try:
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            try:
                yield
            finally:
                APILogWorker.drain_all(timeout=5)  # the run's last log lines reach the server before it stops
    finally:
        server.stop()


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
            return subprocess.Popen([sys.executable, "-c", _LAUNCHER, str(os.getpid()), *args], env=env)

    with socket.socket() as probe:  # a free port from the OS (Prefect's own picks at random from 8000-8999)
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    return TiedServer(port)


def _with_runner(flow: Any, execution: ExecutionOptions | None) -> Any:
    """The flow on the chosen task runner: threads (Prefect's default) or a Dask cluster."""
    if execution is None or execution.runner == "threads":
        return flow
    from prefect_dask import DaskTaskRunner

    runner = DaskTaskRunner(address=execution.dask_address) if execution.dask_address else DaskTaskRunner()
    return flow.with_options(task_runner=runner)


def run_deploy(config: RunConfig, execution: ExecutionOptions | None = None) -> dict[str, Any]:
    """Run `deploy_classifier` in this process (Prefect's ephemeral API unless one is configured)."""
    from flows.deploy_classifier import deploy_classifier

    with temporary_api():
        return _finish(_with_runner(deploy_classifier, execution)(config, return_state=True))


def run_sweep(config: SweepConfig, execution: ExecutionOptions | None = None) -> dict[str, Any]:
    """Run `quant_sweep` in this process."""
    from flows.quant_sweep import quant_sweep

    with temporary_api():
        return _finish(_with_runner(quant_sweep, execution)(config, return_state=True))


def run_nightly(config: NightlyConfig) -> dict[str, Any]:
    """Run `nightly_regression` once in this process."""
    from flows.nightly_regression import nightly_regression

    with temporary_api():
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
        serve(*deployments)
