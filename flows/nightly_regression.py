"""nightly_regression: every model x preset of a regression matrix, tonight's results appended to the
history in the store, a trend report, and a failed run on any failed goal.

On a regression the error and the trend report name the first bad night and which inputs changed
since the last good one (checkpoint, calibration set, ONNX, data, toolchain fingerprint, code).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from prefect import flow, get_run_logger, tags

from flows._pipeline import deploy_presets, prepare
from flows._stages import Stages
from flows._summary import completed, nightly_name
from flows.team import refuse_repeated_rerun
from tasks._cache import FULL_VERIFY_TAG
from tasks.compare import append_history, publish_night, regression_gates
from zooflow import interrupts
from zooflow.config import default_store_url
from zooflow.runconfig import NightlyConfig, NightlyParameter, RegressionMatrix
from zooflow.store import open_store
from zooflow.storecheck import clean_staging


@flow(name="nightly-regression", flow_run_name=nightly_name, log_prints=True)
def nightly_regression(config: NightlyParameter = NightlyConfig()) -> Any:  # noqa: B008 - immutable default
    """Run the matrix for one night; fail if any model/preset misses its goals."""
    refuse_repeated_rerun()  # a run crashed and re-run before is not re-run automatically again
    interrupts.own_sigterm()  # `zooflow run`'s SIGTERM ends the run Cancelled, not Crashed by Prefect's handler
    matrix = RegressionMatrix.load(config.matrix)  # a bad matrix fails before any work
    matrix.check_data(config.matrix)  # and so does one whose data is not on this host
    night = config.night or dt.datetime.now(dt.UTC).date().isoformat()
    store_url = config.store or matrix.defaults.get("store") or default_store_url()
    clean_staging(open_store(store_url))  # staging left by killed runs goes first
    runs = [(entry, sweep) for entry, sweep in matrix.configs(store=store_url)]
    entries: list[dict[str, Any]] = []
    per_model: dict[str, Any] = {}
    # a nightly run trusts no stat stamp: every image and every cache hit is re-hashed in full
    with tags(FULL_VERIFY_TAG):
        for entry, sweep in runs:
            stages = Stages(store_url)  # stage names repeat across models: one record per model
            prepared = prepare(stages, sweep)
            results = deploy_presets(stages, prepared, sweep.quants(), gates=entry.gates)
            entries += [{"model": entry.model, "preset": r["preset"], "evaluation": r["evaluation"]} for r in results]
            per_model[entry.model] = stages.summary()["artifacts"]
    summary = Stages(store_url)
    trend = summary.run("trend", append_history, night=night, entries=entries, name=matrix.name)
    publish_night(trend, night, entries, matrix.name, store_url)  # in the flow: under "Flow run" in the UI
    found = summary.run("regressions", regression_gates, trend=trend, night=night)
    line = f"night {night} of {matrix.name}: {len(entries)} model/preset result(s), no regressions; trend {trend.digest[:16]}"
    get_run_logger().info(line)
    result = {
        "status": "completed",
        "night": night,
        "matrix": matrix.name,
        "store": store_url,
        "trend": trend.digest,
        "regressions": found,
        "models": per_model,
    }
    return completed(result, line)
