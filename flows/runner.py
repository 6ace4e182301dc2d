"""Entry point the core CLI uses to run flows (registered under ``zooflow.runners``).

The core never imports Prefect; it finds this module through package metadata.
"""

from __future__ import annotations

from typing import Any

from zooflow.config import RunConfig


def run_deploy(config: RunConfig) -> dict[str, Any]:
    """Run `deploy_classifier` in this process (Prefect's ephemeral API unless one is configured)."""
    from flows.deploy_classifier import deploy_classifier

    state = deploy_classifier(config, return_state=True)
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
