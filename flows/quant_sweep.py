"""quant_sweep: one model and dataset over a list of presets, upstream stages computed once.

Compiles and runs of all presets go to the task runner together (threads here, Dask with
`--runner dask`); benchmarks run one at a time so their timings do not overlap. Ends with one
comparison table and the accuracy-vs-throughput Pareto plot (Prefect artifacts and the store).
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from flows._pipeline import check_all, deploy_presets, prepare, run_warnings
from flows._stages import Stages
from flows._summary import completed, publish_summary, run_name, tag_run
from flows.team import refuse_repeated_rerun
from tasks.compare import publish_sweep, sweep_table
from zooflow import interrupts, toolchains
from zooflow.runconfig import SweepConfig, SweepParameter, form_default
from zooflow.store import open_store
from zooflow.storecheck import clean_staging


@flow(name="quant-sweep", flow_run_name=run_name("quant-sweep", SweepConfig), log_prints=True)
def quant_sweep(config: SweepParameter = form_default(SweepConfig, demo=True)) -> Any:  # noqa: B008 - a fresh dict
    """Compare presets on one model and dataset; failed gates fail the run after the table is stored."""
    refuse_repeated_rerun()  # a run crashed and re-run before is not re-run automatically again
    interrupts.own_sigterm()  # `zooflow run`'s SIGTERM ends the run Cancelled, not Crashed by Prefect's handler
    store_url = config.store_url()
    clean_staging(open_store(store_url))  # staging left by killed runs goes first
    stages = Stages(store_url)
    quants = config.quants()
    tag_run(config, *(f"preset:{toolchains.quant_label(q)}" for q in quants))
    prepared = prepare(stages, config)
    results = deploy_presets(stages, prepared, quants)
    for result in results:
        publish_summary(store_url, config, result, "sweep")
    name = f"{config.model}/{config.toolchain}/sweep-{prepared.dataset.index.digest[:12]}"
    title = f"{config.model} · {config.toolchain} · quantisation sweep"
    table = stages.run("sweep", sweep_table, results=results, name=name, title=title)
    line = publish_sweep(results, table, name, title, store_url)  # in the flow: under "Flow run" in the UI
    get_run_logger().info(line)
    verdicts = check_all(stages, results)
    summary = stages.summary(
        model=config.model,
        toolchain=config.toolchain,
        presets=[r["preset"] for r in results],
        table=[{k: v for k, v in row.items() if k != "evaluation"} for row in _rows(table, store_url)],
        verdicts=verdicts,
        warnings=run_warnings(prepared, results),
    )
    return completed(summary, line)


def _rows(table: Any, store_url: str) -> list[dict[str, Any]]:
    import json

    return list(json.loads(open_store(store_url).path(table, "sweep.json").read_text()))
