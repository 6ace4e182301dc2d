"""The stages every flow shares, in two parts: `prepare` (everything a preset does not change) and
`deploy_presets` (compile -> run -> benchmark -> evaluate -> report for one or more presets).

deploy_classifier calls them for one preset, quant_sweep for a list (upstream computed once),
nightly_regression per model of its matrix. Neither part branches on the toolchain: it decides the
export settings, the npz format and how to compile, run and measure. The fp32 reference (the same
data through the embedded toolchain's fp32 build) uses the same cached tasks, so every preset of a
model and dataset shares it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from flows import _mixed
from flows._mixed import Plan
from flows._stages import Prepared, Stages
from tasks.data import calibration_set, npz_index, npz_shard, scan_dataset
from tasks.evaluate import check_gates, evaluate, preprocess_parity, report, torch_probe
from tasks.export import export_onnx
from tasks.fetch import fetch_checkpoint
from tasks.toolchain import benchmark, collect_outputs, compile_model, run_shard
from zooflow import toolchains
from zooflow.config import Gate, QuantSpec
from zooflow.datasets import DatasetHandle
from zooflow.npz import NpzParams, plan
from zooflow.preprocess import Transform
from zooflow.runconfig import PipelineConfig
from zooflow.store import ArtifactRef


def _npz(stages: Stages, stage: str, dataset: DatasetHandle, params: NpzParams, config: PipelineConfig) -> Any:
    """npz shards (one cached task each) and the index over them, named by format (``npz-shard dsp 3``)."""
    planned = plan(dataset.count, config.npz.shard_size)
    shards = stages.map(
        f"{stage}-shards",
        npz_shard,
        [{"shard": s.number} for s in planned],
        labels=[f"{params.format} {s.number}" for s in planned],
        dataset=dataset,
        shard_size=config.npz.shard_size,
        params=params,
        skip_corrupt=config.data.skip_corrupt,
    )
    return shards, stages.run(stage, npz_index, label=params.format, dataset=dataset, shards=shards, params=params)


def _outputs(
    stages: Stages,
    stage: str,
    compiled: ArtifactRef,
    shards: list[Any],
    npz: ArtifactRef,
    device: dict[str, Any],
    label: str,
) -> ArtifactRef:
    """Run a compiled model over every npz shard (one cached task each) and join the outputs."""
    runs = stages.map(
        f"{stage}-shards",
        run_shard,
        [{"shard": s} for s in shards],
        labels=[f"{label} shard {i}" for i in range(len(shards))],
        compiled=compiled,
        **device,
    )
    result: ArtifactRef = stages.run(
        stage, collect_outputs, label=label, compiled=compiled, npz=npz, shards=runs, **device
    )
    return result


def prepare(stages: Stages, config: PipelineConfig) -> Prepared:
    """dataset, checkpoint, ONNX, calibration set, npz, and the fp32 reference with its probe and parity runs."""
    toolchain = toolchains.require(config.toolchain, config.toolchain_options)  # a missing toolchain fails first
    device = {"toolchain": config.toolchain, "toolchain_options": config.toolchain_options}
    dataset = stages.run("dataset", scan_dataset, spec=config.data, demo_run=config.demo, seed=config.seed)
    # right after the scan: a set too short for calibration (no --allow-short) fails before fetch and export
    calibration = stages.run(
        "calibration",
        calibration_set,
        dataset=dataset,
        options=config.calibration,
        seed=config.seed,
        skip_corrupt=config.data.skip_corrupt,
    )
    checkpoint = stages.run(
        "checkpoint",
        fetch_checkpoint,
        source=config.checkpoint_source(),
        model=config.model,
        sha256=config.checkpoint_sha256,
        seed=config.seed,
        trust_checkpoint=config.trust_checkpoint,
    )
    onnx = stages.run(
        "onnx",
        export_onnx,
        checkpoint=checkpoint,
        model=config.model,
        options=toolchain.export_options(config.export),
        trust_checkpoint=config.trust_checkpoint,
    )
    shards, npz = _npz(stages, "npz", dataset, toolchain.input_params(onnx.meta["preprocess"]), config)

    reference_tc = toolchains.get(toolchains.REFERENCE_TOOLCHAIN, config.toolchain_options)
    reference_device = {"toolchain": toolchains.REFERENCE_TOOLCHAIN, "toolchain_options": config.toolchain_options}
    ref_onnx = stages.run(
        "reference-onnx",
        export_onnx,
        checkpoint=checkpoint,
        model=config.model,
        options=reference_tc.export_options(config.export),
        trust_checkpoint=config.trust_checkpoint,
    )
    ref_shards, ref_npz = _npz(
        stages, "reference-npz", dataset, reference_tc.input_params(ref_onnx.meta["preprocess"]), config
    )
    ref_compiled = stages.run(
        "reference-compiled",
        compile_model,
        label="fp32-reference",
        onnx=ref_onnx,
        calibration=calibration,
        quant=toolchains.REFERENCE_QUANT,
        **reference_device,
    )
    reference = _outputs(
        stages, "reference-outputs", ref_compiled, ref_shards, ref_npz, reference_device, "fp32-reference"
    )
    options = config.evaluation
    probe = None
    if options.probe_images:
        probe = stages.run(
            "probe",
            torch_probe,
            checkpoint=checkpoint,
            npz=ref_npz,
            model=config.model,
            images=options.probe_images,
            trust_checkpoint=config.trust_checkpoint,
        )
    parity = None
    if options.preprocess_parity:
        spec = ref_onnx.meta["preprocess"]
        side = Transform.from_spec(spec).resize  # the DSP's square resize
        pre_resize = config.toolchain_options.pre_resize or (side, side)  # what host pre-resizing would change
        dsp_shards, dsp_npz = _npz(stages, "dsp-npz", dataset, NpzParams.for_format("dsp", spec, pre_resize), config)
        dsp_outputs = _outputs(stages, "dsp-outputs", ref_compiled, dsp_shards, dsp_npz, reference_device, "fp32-dsp")
        parity = stages.run("parity", preprocess_parity, framework=reference, device=dsp_outputs)
    return Prepared(
        config=config,
        toolchain=toolchain,
        device=device,
        dataset=dataset,
        checkpoint=checkpoint,
        onnx=onnx,
        reference_onnx=ref_onnx,
        reference_device=reference_device,
        calibration=calibration,
        shards=shards,
        npz=npz,
        reference=reference,
        probe=probe,
        parity=parity,
    )


def run_warnings(prep: Prepared, results: Sequence[dict[str, Any]] = ()) -> list[str]:
    """What a person must know about the run's inputs and its compiled models (shown in the summary and the CLI)."""
    meta = prep.checkpoint.meta
    warnings = [meta[k] for k in ("warning", "unverified") if meta.get(k)]
    if meta.get("load", {}).get("trusted_by_user"):
        warnings.append("the checkpoint was loaded by full unpickling (--trust-checkpoint): it could run code")
    for result in results:  # int8 kernels that saturate, ranges that clip too much
        compiled = result.get("compiled")
        label = result["preset"]
        for said in toolchains.int8_warnings(compiled.meta if compiled else None).values():
            # named once: a range warning already opens with the preset's name
            warnings.append(said if said.startswith(f"{label} ") else f"{label}: {said}")
    return warnings


def _stage_name(label: str, stage: str, single: bool) -> str:
    """The stage's name in the run summary: plain for a one-preset run, ``<preset>/<stage>`` otherwise."""
    return stage if single else f"{label}/{stage}"


def _evaluated(
    stages: Stages,
    prep: Prepared,
    plans: list[Plan],
    gates_for: Callable[[QuantSpec], tuple[Gate, ...]],
    single: bool,
) -> tuple[list[ArtifactRef], list[ArtifactRef], list[ArtifactRef]]:
    """compile -> run -> evaluate for each plan: (compiled, outputs, evaluations). Compiles of different
    presets go to the task runner together, and runs too where the toolchain allows it (not on one card)."""
    config, device = prep.config, prep.device
    labels = [p.label for p in plans]

    def name(label: str, stage: str) -> str:
        return _stage_name(label, stage, single)

    compiled = stages.map(
        "compiled",
        compile_model,
        [{"quant": p.quant, "float_layers": p.float_layers} for p in plans],
        names=[name(lab, "compiled") for lab in labels],
        labels=labels,
        onnx=prep.onnx,
        calibration=prep.calibration,
        **device,
    )
    runs = stages.map(
        "outputs-shards",
        run_shard,
        [{"compiled": c, "shard": s} for c in compiled for s in prep.shards],
        labels=[f"{lab} shard {i}" for lab in labels for i in range(len(prep.shards))],
        sequential=not prep.toolchain.concurrent_runs,
        **device,
    )
    per = len(prep.shards)
    outputs = stages.map(
        "outputs",
        collect_outputs,
        [{"compiled": c, "shards": runs[i * per : (i + 1) * per]} for i, c in enumerate(compiled)],
        names=[name(lab, "outputs") for lab in labels],
        labels=labels,
        npz=prep.npz,
        **device,
    )
    context = {
        "model": config.model,
        "toolchain": config.toolchain,
        **({"warning": prep.checkpoint.meta["warning"]} if prep.checkpoint.meta.get("warning") else {}),
    }
    evaluations = stages.map(
        "evaluation",
        evaluate,
        [
            {
                "outputs": out,
                "gates": gates_for(p.quant),
                "context": {**context, "preset": p.label},
            }
            for p, out in zip(plans, outputs, strict=True)
        ],
        names=[name(lab, "evaluation") for lab in labels],
        labels=labels,
        reference=prep.reference,
        probe=prep.probe,
        parity=prep.parity,
        dataset=prep.dataset,
        demo_data=config.demo and config.data.path is None,
        max_flips=config.evaluation.max_flips,
    )
    return compiled, outputs, evaluations


def deploy_presets(
    stages: Stages, prep: Prepared, quants: list[QuantSpec], gates: tuple[Gate, ...] | None = None
) -> list[dict[str, Any]]:
    """sensitivity (int8) -> compile -> run -> benchmark -> evaluate -> report for each preset;
    benchmarks one at a time (they time the device). int8-mixed's K is resolved first (`flows._mixed`).

    Returns, per preset, its label and artifacts; gates are not checked here (see `check_all`).
    """
    config, device = prep.config, prep.device
    ranked = _mixed.rank_int8(stages, prep, quants)

    def gates_for(quant: QuantSpec) -> tuple[Gate, ...]:
        return gates if gates is not None else config.evaluation.gates_for(quant)

    def evaluate_one(candidate: Plan) -> tuple[ArtifactRef, ArtifactRef]:
        compiled, _, evaluations = _evaluated(stages, prep, [candidate], gates_for, single=False)
        bench = stages.run(
            _stage_name(candidate.label, "benchmark", False),
            benchmark,
            label=candidate.label,
            compiled=compiled[0],
            spec=config.benchmark,
            **device,
        )
        return evaluations[0], bench

    plans = _mixed.plan(prep, quants, ranked, gates_for, evaluate_one)
    single = len(plans) == 1
    compiled, outputs, evaluations = _evaluated(stages, prep, plans, gates_for, single)
    labels = [p.label for p in plans]

    def name(label: str, stage: str) -> str:
        return _stage_name(label, stage, single)

    benches = [
        stages.run(name(lab, "benchmark"), benchmark, label=lab, compiled=c, spec=config.benchmark, **device)
        for lab, c in zip(labels, compiled, strict=True)
    ]
    mixed = [
        {**p.mixed, "float_layers": c.meta.get("float_layers")} if p.mixed else None
        for p, c in zip(plans, compiled, strict=True)
    ]
    reports = stages.map(
        "report",
        report,
        [
            {"evaluation": e, "benchmark": b, "sensitivity": p.sensitivity, "mixed": m}
            for e, b, p, m in zip(evaluations, benches, plans, mixed, strict=True)
        ],
        names=[name(lab, "report") for lab in labels],
        labels=labels,
    )
    return [
        {
            "preset": lab,
            "compiled": c,
            "outputs": o,
            "benchmark": b,
            "evaluation": e,
            "report": r,
            "sensitivity": p.sensitivity,
            "mixed": m,
        }
        for lab, c, o, b, e, r, p, m in zip(
            labels, compiled, outputs, benches, evaluations, reports, plans, mixed, strict=True
        )
    ]


def check_all(stages: Stages, results: list[dict[str, Any]]) -> dict[str, Any]:
    """Check every preset's gates; the first failure fails the flow run (after all are stored)."""
    verdicts = stages.map(
        "gates",
        check_gates,
        [{"evaluation": r["evaluation"], "report": r["report"]} for r in results],
        labels=[r["preset"] for r in results],
    )
    return {r["preset"]: v for r, v in zip(results, verdicts, strict=True)}
