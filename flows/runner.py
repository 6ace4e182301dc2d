"""Entry points the core CLI uses to run flows (registered under ``zooflow.runners``).

The core never imports Prefect; it finds this module through package metadata.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from zooflow.config import ExecutionOptions, NightlyConfig, RunConfig, SweepConfig
from zooflow.errors import ConfigError


def _finish(state: Any) -> dict[str, Any]:
    """The flow's result, or its status and error, with the flow run id."""
    flow_run_id = str(state.state_details.flow_run_id)
    if state.is_completed():
        result = dict(state.result())
        result["flow_run_id"] = flow_run_id
        return result
    try:
        state.result()
    except Exception as exc:  # noqa: BLE001 - report whatever failed the run
        error = str(exc)
    else:
        error = state.message or state.name
    return {"status": state.type.value.lower(), "error": error, "flow_run_id": flow_run_id}


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

    return _finish(_with_runner(deploy_classifier, execution)(config, return_state=True))


def run_sweep(config: SweepConfig, execution: ExecutionOptions | None = None) -> dict[str, Any]:
    """Run `quant_sweep` in this process."""
    from flows.quant_sweep import quant_sweep

    return _finish(_with_runner(quant_sweep, execution)(config, return_state=True))


def run_nightly(config: NightlyConfig) -> dict[str, Any]:
    """Run `nightly_regression` once in this process."""
    from flows.nightly_regression import nightly_regression

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
    serve(*deployments)
