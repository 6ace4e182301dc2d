"""Comparison tasks: the sweep's table and Pareto plot; the nightly history and trend report."""

from __future__ import annotations

import json
from typing import Any

from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from tasks.ui import artifact_key, publish_document, rounded
from zooflow import compare
from zooflow.store import ArtifactRef, open_store


@task(name="sweep-table", cache_policy=NO_CACHE)
def sweep_table(results: list[dict[str, Any]], name: str, title: str, store_url: str) -> ArtifactRef:
    """One row per preset (accuracy, fidelity, speed, verdict) and the Pareto plot, in the store."""
    store = open_store(store_url)
    rows = compare.sweep_rows(store, results)
    inputs = {f"{r['preset']}/evaluation": r["evaluation"] for r in results}
    inputs.update({f"{r['preset']}/benchmark": r["benchmark"] for r in results})
    return compare.write_sweep(store, rows, name=name, title=title, inputs=inputs)


def publish_sweep(results: list[dict[str, Any]], ref: ArtifactRef, name: str, title: str, store_url: str) -> str:
    """The sweep's table (numbers to two decimals) and its report with the Pareto plot, for the UI; returns
    a one-line summary (the most accurate and the fastest preset).

    Called from the flow, not a task, so they show under "Flow run" on the run's Artifacts tab, and by
    every run, computed or cached."""
    store = open_store(store_url)
    rows = compare.sweep_rows(store, results)
    table = [
        {
            "preset": r["preset"],
            "top-1": rounded(r["top1"]),
            "top-5": rounded(r["top5"]),
            "drop vs fp32": rounded(r["drop_top1"]),
            "agreement": rounded(r["agreement"]),
            "SQNR dB": rounded(r["sqnr_db"]),
            "int8 integer vs float dB": rounded(r["int8_gap_db"]),
            "images/s (batch 8, 1 thread)": rounded(r["throughput_fixed"], 1),
            "vs fp32": rounded(r["fixed_vs_fp32"]),
            "best images/s": rounded(r["throughput"], 1),
            "p99 ms": rounded(r["latency_p99_ms"]),
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
    best = max(rows, key=lambda r: r["top1"])
    fastest = max(rows, key=lambda r: r["throughput"] or 0.0)
    failed = [r["preset"] for r in rows if not r["passed"]]
    return (
        f"{title}: {len(rows)} preset(s); best top-1 {best['preset']} {rounded(best['top1'])}%, fastest "
        f"{fastest['preset']} {rounded(fastest['throughput'], 1)} images/s; "
        + (f"gates failed: {', '.join(failed)}" if failed else "all gates pass")
    )


@task(name="history", cache_policy=NO_CACHE)
def append_history(night: str, entries: list[dict[str, Any]], name: str, store_url: str) -> ArtifactRef:
    """Append tonight's rows to the history (a new version, aliased ``nightly-<night>``); returns the trend report."""
    store = open_store(store_url)
    rows = [compare.night_row(store, night, e["model"], e["preset"], e["evaluation"]) for e in entries]
    history = compare.append_history(store, f"regression/{name}/history", rows)
    store.set_alias(f"regression/{name}/history", f"nightly-{night}", history.version or 1)
    return compare.write_trend(store, history, f"regression/{name}/trend")


def publish_night(trend: ArtifactRef, night: str, entries: list[dict[str, Any]], name: str, store_url: str) -> None:
    """The trend report and tonight's table for the UI, from the flow (under "Flow run"), by every run."""
    store = open_store(store_url)
    rows = [compare.night_row(store, night, e["model"], e["preset"], e["evaluation"]) for e in entries]
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
        [{k: rounded(r[k]) for k in ("night", "model", "preset", "top1", "top5", "passed")} for r in rows],
        key=artifact_key("night", name),
        description=f"{name}, night {night}" + (f": {len(found)} regression(s)" if found else ""),
    )


@task(name="regression-gates", cache_policy=NO_CACHE)
def regression_gates(trend: ArtifactRef, night: str, store_url: str) -> list[dict[str, Any]]:
    """Fail the night if any model/preset failed its goals, naming the first bad night and what changed."""
    store = open_store(store_url)
    found: list[dict[str, Any]] = json.loads(store.path(trend, "regressions.json").read_text())
    failing = [r for r in found if r["last_night"] == night]
    if failing:
        raise compare.RegressionError(failing, trend_path=str(store.path(trend, "trend.html")))
    return found
