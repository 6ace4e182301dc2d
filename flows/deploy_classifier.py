"""deploy_classifier: dataset -> checkpoint -> ONNX -> calibration -> npz -> compile -> run -> benchmark -> evaluate -> report.

No step branches on the toolchain: it decides the export settings, the npz format and how to
compile, run and measure. The fp32 reference (the same data through the embedded toolchain's fp32
build) is computed with the same cached tasks, so every preset of a model and dataset shares it,
and a run of the reference preset itself finds it already done.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows._stages import Stages
from tasks.data import calibration_set, npz_index, npz_shard, scan_dataset
from tasks.evaluate import check_gates, evaluate, preprocess_parity, report, torch_probe
from tasks.export import export_onnx
from tasks.fetch import fetch_checkpoint
from tasks.toolchain import benchmark, collect_outputs, compile_model, run_shard
from zooflow import toolchains
from zooflow.config import RunConfig
from zooflow.datasets import DatasetHandle
from zooflow.npz import NpzParams, plan
from zooflow.store import ArtifactRef, open_store


def _npz(stages: Stages, stage: str, dataset: DatasetHandle, params: NpzParams, config: RunConfig) -> tuple[list, Any]:
    """npz shards (one cached task each) and the index over them."""
    shards = stages.map(
        f"{stage}-shards",
        npz_shard,
        [{"shard": s.number} for s in plan(dataset.count, config.npz.shard_size)],
        dataset=dataset,
        shard_size=config.npz.shard_size,
        params=params,
        skip_corrupt=config.data.skip_corrupt,
    )
    return shards, stages.run(stage, npz_index, dataset=dataset, shards=shards, params=params)


def _outputs(
    stages: Stages, stage: str, compiled: ArtifactRef, shards: list, npz: ArtifactRef, device: dict[str, Any]
) -> ArtifactRef:
    """Run the compiled model over every npz shard (one cached task each) and join the outputs."""
    runs = stages.map(f"{stage}-shards", run_shard, [{"shard": s} for s in shards], compiled=compiled, **device)
    result: ArtifactRef = stages.run(stage, collect_outputs, compiled=compiled, npz=npz, shards=runs, **device)
    return result


@flow(name="deploy-classifier", log_prints=True)
def deploy_classifier(config: RunConfig = RunConfig(demo=True)) -> dict[str, Any]:  # noqa: B008 - immutable default
    """Deploy one mmcls classifier; every stage is cached on its inputs' digests; failed gates fail the run."""
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
    onnx = stages.run(
        "onnx", export_onnx, checkpoint=checkpoint, model=config.model, options=toolchain.export_options(config.export)
    )
    calibration = stages.run(
        "calibration",
        calibration_set,
        dataset=dataset,
        options=config.calibration,
        seed=config.seed,
        skip_corrupt=config.data.skip_corrupt,
    )
    shards, npz = _npz(stages, "npz", dataset, toolchain.input_params(onnx.meta["preprocess"]), config)
    compiled = stages.run("compiled", compile_model, onnx=onnx, calibration=calibration, quant=config.quant, **device)
    outputs = _outputs(stages, "outputs", compiled, shards, npz, device)
    bench = stages.run("benchmark", benchmark, compiled=compiled, spec=config.benchmark, **device)

    # the fp32 reference of the same data (cache hits when this run is the reference's own toolchain/preset)
    reference_tc = toolchains.get(toolchains.REFERENCE_TOOLCHAIN, config.toolchain_options)
    reference_device = {"toolchain": toolchains.REFERENCE_TOOLCHAIN, "toolchain_options": config.toolchain_options}
    ref_onnx = stages.run(
        "reference-onnx",
        export_onnx,
        checkpoint=checkpoint,
        model=config.model,
        options=reference_tc.export_options(config.export),
    )
    ref_shards, ref_npz = _npz(
        stages, "reference-npz", dataset, reference_tc.input_params(ref_onnx.meta["preprocess"]), config
    )
    ref_compiled = stages.run(
        "reference-compiled",
        compile_model,
        onnx=ref_onnx,
        calibration=calibration,
        quant=toolchains.REFERENCE_QUANT,
        **reference_device,
    )
    reference = _outputs(stages, "reference-outputs", ref_compiled, ref_shards, ref_npz, reference_device)
    options = config.evaluation
    probe = None
    if options.probe_images:
        probe = stages.run(
            "probe", torch_probe, checkpoint=checkpoint, npz=ref_npz, model=config.model, images=options.probe_images
        )
    parity = None
    if options.preprocess_parity:
        dsp_shards, dsp_npz = _npz(
            stages, "dsp-npz", dataset, NpzParams.for_format("dsp", ref_onnx.meta["preprocess"], None), config
        )
        dsp_outputs = _outputs(stages, "dsp-outputs", ref_compiled, dsp_shards, dsp_npz, reference_device)
        parity = stages.run("parity", preprocess_parity, framework=reference, device=dsp_outputs)
    context = {
        "model": config.model,
        "toolchain": config.toolchain,
        "preset": toolchains.quant_label(config.quant),
        **({"warning": checkpoint.meta["warning"]} if checkpoint.meta.get("warning") else {}),
    }
    evaluation = stages.run(
        "evaluation",
        evaluate,
        outputs=outputs,
        reference=reference,
        probe=probe,
        parity=parity,
        dataset=dataset,
        gates=options.gates_for(config.quant),
        context=context,
        demo_data=config.demo and config.data.path is None,
        max_flips=options.max_flips,
    )
    summary = stages.run("report", report, evaluation=evaluation, benchmark=bench)
    verdict = stages.run_plain("gates", check_gates, evaluation=evaluation, report=summary)
    return stages.summary(
        model=config.model,
        toolchain=config.toolchain,
        quant=toolchains.quant_label(config.quant),
        metrics={k: evaluation.meta.get(k) for k in ("top1", "top5", "agreement", "drop_top1", "sqnr_db")},
        verdict=verdict,
    )
