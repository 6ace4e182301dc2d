"""Comparison tasks: the sweep's table and Pareto plot; the nightly history and trend report."""

from __future__ import annotations

import json
from typing import Any

from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from tasks.ui import artifact_key, publish_document
from zooflow import compare
from zooflow.store import ArtifactRef, open_store


@task(name="sweep-table", cache_policy=NO_CACHE)
def sweep_table(results: list[dict[str, Any]], name: str, title: str, store_url: str) -> ArtifactRef:
    """One row per preset (accuracy, fidelity, speed, verdict) and the Pareto plot, in the store and the UI."""
    store = open_store(store_url)
    rows = compare.sweep_rows(store, results)
    inputs = {f"{r['preset']}/evaluation": r["evaluation"] for r in results}
    inputs.update({f"{r['preset']}/benchmark": r["benchmark"] for r in results})
    ref = compare.write_sweep(store, rows, name=name, title=title, inputs=inputs)
    table = [
        {
            "preset": r["preset"],
            "top-1": r["top1"],
            "top-5": r["top5"],
            "drop vs fp32": r["drop_top1"],
            "agreement": r["agreement"],
            "SQNR dB": r["sqnr_db"],
            "int8 integer vs float dB": r["int8_gap_db"],
            "images/s (batch 8, 1 thread)": r["throughput_fixed"],
            "vs fp32": r["fixed_vs_fp32"],
            "best images/s": r["throughput"],
            "p99 ms": r["latency_p99_ms"],
            "gates": "pass" if r["passed"] else "FAIL",
        }
        for r in rows
    ]
    create_table_artifact(table, key=artifact_key("sweep", name), description=title)
    publish_document(
        store,
        ref,
        "sweep.md",
        key=artifact_key("sweep-summary", name),
        description=title,
        footer=f"The same comparison as one HTML file: `{store.path(ref, 'sweep.html')}`",
    )
    return ref


@task(name="history", cache_policy=NO_CACHE)
def append_history(night: str, entries: list[dict[str, Any]], name: str, store_url: str) -> ArtifactRef:
    """Append tonight's rows to the history (a new version, aliased ``nightly-<night>``); returns the trend report."""
    store = open_store(store_url)
    rows = [compare.night_row(store, night, e["model"], e["preset"], e["evaluation"]) for e in entries]
    history = compare.append_history(store, f"regression/{name}/history", rows)
    store.set_alias(f"regression/{name}/history", f"nightly-{night}", history.version or 1)
    trend = compare.write_trend(store, history, f"regression/{name}/trend")
    publish_document(
        store,
        trend,
        "trend.md",
        key=artifact_key("trend", name),
        description=f"Nightly regression {name}",
        footer=f"Trend plot file: `{store.path(trend, 'trend.png')}`",
    )
    found = json.loads(store.path(trend, "regressions.json").read_text())
    create_table_artifact(
        [{k: r[k] for k in ("night", "model", "preset", "top1", "top5", "passed")} for r in rows],
        key=artifact_key("night", name),
        description=f"{name}, night {night}" + (f": {len(found)} regression(s)" if found else ""),
    )
    return trend


@task(name="regression-gates", cache_policy=NO_CACHE)
def regression_gates(trend: ArtifactRef, night: str, store_url: str) -> list[dict[str, Any]]:
    """Fail the night if any model/preset failed its goals, naming the first bad night and what changed."""
    store = open_store(store_url)
    found: list[dict[str, Any]] = json.loads(store.path(trend, "regressions.json").read_text())
    failing = [r for r in found if r["last_night"] == night]
    if failing:
        raise compare.RegressionError(failing, trend_path=str(store.path(trend, "trend.html")))
    return found
