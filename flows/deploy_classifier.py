"""deploy_classifier: dataset -> checkpoint -> ONNX -> calibration set -> npz.

(Later issues add compile -> run -> benchmark -> evaluate -> report to the same flow.)
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows._stages import Stages
from tasks.data import calibration_set, npz_index, npz_shard, scan_dataset
from tasks.export import export_onnx
from tasks.fetch import fetch_checkpoint
from zooflow.config import RunConfig
from zooflow.npz import NpzParams, plan
from zooflow.store import open_store


@flow(name="deploy-classifier", log_prints=True)
def deploy_classifier(config: RunConfig = RunConfig(demo=True)) -> dict[str, Any]:  # noqa: B008 - immutable default
    """Deploy one mmcls classifier; every stage is cached on its inputs' digests."""
    store_url = config.store_url()
    open_store(store_url)  # an unwritable store fails here, before any work
    stages = Stages(store_url)
    dataset = stages.run("dataset", scan_dataset, spec=config.data, demo_run=config.demo, seed=config.seed)
    checkpoint = stages.run(
        "checkpoint",
        fetch_checkpoint,
        source=config.checkpoint_source(),
        model=config.model,
        sha256=config.checkpoint_sha256,
        seed=config.seed,
    )
    onnx = stages.run("onnx", export_onnx, checkpoint=checkpoint, model=config.model, options=config.export)
    stages.run(
        "calibration",
        calibration_set,
        dataset=dataset,
        options=config.calibration,
        seed=config.seed,
        skip_corrupt=config.data.skip_corrupt,
    )
    params = NpzParams.for_format(config.npz.format, onnx.meta["preprocess"], config.npz.pre_resize)
    shards = stages.map(
        "npz-shards",
        npz_shard,
        [{"shard": s.number} for s in plan(dataset.count, config.npz.shard_size)],
        dataset=dataset,
        shard_size=config.npz.shard_size,
        params=params,
        skip_corrupt=config.data.skip_corrupt,
    )
    stages.run("npz", npz_index, dataset=dataset, shards=shards, params=params)
    return stages.summary(model=config.model)
