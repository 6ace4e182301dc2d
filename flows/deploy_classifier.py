"""deploy_classifier: checkpoint -> ONNX (later: calibration, compile, npz, run, benchmark, evaluate)."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows._stages import Stages
from tasks.export import export_onnx
from tasks.fetch import fetch_checkpoint
from zooflow.config import RunConfig
from zooflow.store import open_store


@flow(name="deploy-classifier", log_prints=True)
def deploy_classifier(config: RunConfig = RunConfig()) -> dict[str, Any]:  # noqa: B008 - pydantic default is immutable
    """Deploy one mmcls classifier; every stage is cached on its inputs' digests."""
    store_url = config.store_url()
    open_store(store_url)  # an unwritable store fails here, before any work
    stages = Stages(store_url)
    checkpoint = stages.run(
        "checkpoint",
        fetch_checkpoint,
        source=config.checkpoint_source(),
        model=config.model,
        sha256=config.checkpoint_sha256,
        seed=config.seed,
    )
    stages.run("onnx", export_onnx, checkpoint=checkpoint, model=config.model, options=config.export)
    return stages.summary(model=config.model)
