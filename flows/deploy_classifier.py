"""deploy_classifier: dataset -> checkpoint -> ONNX -> calibration -> npz -> compile -> run -> benchmark -> evaluate -> report.

One model, one preset: the UI's one-off run. The stages are `flows._pipeline`'s, shared with
quant_sweep and nightly_regression. A failed gate fails the run after the report is stored.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows._pipeline import check_all, deploy_presets, prepare, run_warnings
from flows._stages import Stages
from flows._summary import completed, publish_summary, run_name, tag_run
from flows.team import refuse_repeated_rerun
from zooflow import interrupts, toolchains
from zooflow.runconfig import RunConfig, RunParameter, form_default
from zooflow.store import open_store
from zooflow.storecheck import clean_staging


@flow(name="deploy-classifier", flow_run_name=run_name("deploy-classifier", RunConfig), log_prints=True)
def deploy_classifier(config: RunParameter = form_default(RunConfig, demo=True)) -> Any:  # noqa: B008 - a fresh dict
    """Deploy one mmcls classifier; every stage is cached on its inputs' digests; failed gates fail the run."""
    refuse_repeated_rerun()  # a run crashed and re-run before is not re-run automatically again
    interrupts.own_sigterm()  # `zooflow run`'s SIGTERM ends the run Cancelled, not Crashed by Prefect's handler
    store_url = config.store_url()
    clean_staging(open_store(store_url))  # an unwritable store fails here, before any work
    label = toolchains.quant_label(config.quant)
    tag_run(config, f"preset:{label}")
    stages = Stages(store_url)
    prepared = prepare(stages, config)
    (result,) = deploy_presets(stages, prepared, [config.quant])
    states = list(stages.states.values())
    cached = sum("Cached" in s for s in states)
    said = publish_summary(store_url, config, result, f"{cached} of {len(states)} cached" if cached else "all computed")
    verdict = check_all(stages, [result])[result["preset"]]
    evaluation = result["evaluation"]
    summary = stages.summary(
        model=config.model,
        toolchain=config.toolchain,
        quant=toolchains.quant_label(config.quant),
        metrics={k: evaluation.meta.get(k) for k in ("top1", "top5", "agreement", "drop_top1", "sqnr_db")},
        verdict=verdict,
        warnings=run_warnings(prepared, [result]),
        summary=said,
    )
    return completed(summary, said)
