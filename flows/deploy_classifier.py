"""deploy_classifier: dataset -> checkpoint -> ONNX -> calibration set -> npz -> compile -> run -> benchmark.

(Later issues add evaluate -> report to the same flow.) No step branches on the toolchain: it
decides the export settings, the npz format and how to compile, run and measure.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows._stages import Stages
from tasks.data import calibration_set, npz_index, npz_shard, scan_dataset
from tasks.export import export_onnx
from tasks.fetch import fetch_checkpoint
from tasks.toolchain import benchmark, collect_outputs, compile_model, run_shard
from zooflow import toolchains
from zooflow.config import RunConfig
from zooflow.npz import plan
from zooflow.store import open_store


@flow(name="deploy-classifier", log_prints=True)
def deploy_classifier(config: RunConfig = RunConfig(demo=True)) -> dict[str, Any]:  # noqa: B008 - immutable default
    """Deploy one mmcls classifier; every stage is cached on its inputs' digests."""
    store_url = config.store_url()
    open_store(store_url)  # an unwritable store fails here, before any work
    toolchain = toolchains.require(config.toolchain, config.toolchain_options)  # so does a missing toolchain
    device = {"toolchain": config.toolchain, "toolchain_options": config.toolchain_options}
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
    export_options = toolchain.export_options(config.export)
    onnx = stages.run("onnx", export_onnx, checkpoint=checkpoint, model=config.model, options=export_options)
    calibration = stages.run(
        "calibration",
        calibration_set,
        dataset=dataset,
        options=config.calibration,
        seed=config.seed,
        skip_corrupt=config.data.skip_corrupt,
    )
    params = toolchain.input_params(onnx.meta["preprocess"])
    shards = stages.map(
        "npz-shards",
        npz_shard,
        [{"shard": s.number} for s in plan(dataset.count, config.npz.shard_size)],
        dataset=dataset,
        shard_size=config.npz.shard_size,
        params=params,
        skip_corrupt=config.data.skip_corrupt,
    )
    npz = stages.run("npz", npz_index, dataset=dataset, shards=shards, params=params)
    compiled = stages.run("compiled", compile_model, onnx=onnx, calibration=calibration, quant=config.quant, **device)
    outputs = stages.map("run-shards", run_shard, [{"shard": s} for s in shards], compiled=compiled, **device)
    stages.run("outputs", collect_outputs, compiled=compiled, npz=npz, shards=outputs, **device)
    stages.run("benchmark", benchmark, compiled=compiled, spec=config.benchmark, **device)
    return stages.summary(model=config.model, toolchain=config.toolchain, quant=toolchains.quant_label(config.quant))
