"""The ``zooflow`` command line (Typer).

Core commands call `zooflow` functions directly. ``zooflow run`` needs the Prefect flows; the
core never imports them (or Prefect), it loads the runner registered by the ``flows`` package
under the ``zooflow.runners`` entry-point group.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.table import Table
from rich.tree import Tree

from zooflow import registry
from zooflow.config import (
    STORE_ENV,
    BenchmarkSpec,
    CalibrationOptions,
    DataSpec,
    DemoDataSpec,
    ExecutionOptions,
    ExportOptions,
    Gate,
    ModelSource,
    NpzOptions,
    QuantSpec,
    RunConfig,
    SweepConfig,
    ToolchainOptions,
    build,
)
from zooflow.errors import ConfigError, ZooflowError
from zooflow.store import ArtifactRef, Store, open_store

EXAMPLES = """
[bold]Examples[/]

  zooflow run --demo                          offline demo: local weights, no download
  zooflow run --demo --json                   ... and print a JSON summary as the last line
  zooflow run --data /data/imagenet/val --labels /data/imagenet/val_label.txt
  zooflow demo-data --out ./demo --classes 1000 --per-class 2
  zooflow check-data --data ./demo/val
  zooflow calib --data ./demo/val --out ./calibration --per-class 1 --seed 0
  zooflow npz --data ./demo/val --format model --out ./npz --datalist ./npz/datalist.txt
  zooflow run --demo --quant int8-percentile --toolchain onnxruntime
  zooflow compile --onnx model.onnx --calibration ./calibration --quant int8-mse --out ./compiled
  zooflow bench --compiled shufflenet-v1-1x_16xb64_in1k/onnxruntime/int8-mse --batch 1,8
  zooflow export-outputs --outputs NAME_OR_DIGEST --out ./output      # vamp's output_%06d.npz layout
  zooflow fetch --model shufflenet-v1-1x_16xb64_in1k
  zooflow export --checkpoint ./shufflenet_v1.pth --out shufflenet_v1.onnx
  zooflow artifacts list
  zooflow artifacts show shufflenet-v1-1x_16xb64_in1k/onnx@latest
  zooflow artifacts lineage shufflenet-v1-1x_16xb64_in1k/onnx
  zooflow artifacts verify
  zooflow models shufflenet
"""

app = typer.Typer(
    name="zooflow",
    help="mmcls image classifiers to verified ONNX and accelerator deployments, as one cached flow.",
    epilog=EXAMPLES,
    rich_markup_mode="rich",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
artifacts_app = typer.Typer(help="Inspect and check the artifact store.", no_args_is_help=True, rich_markup_mode="rich")
app.add_typer(artifacts_app, name="artifacts")

# Messages soft-wrap (paths stay whole for copy-paste); tables get room when piped to a file.
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, soft_wrap=True, width=None if sys.stderr.isatty() else 200)

StoreOpt = Annotated[
    str | None,
    typer.Option("--store", help=f"artifact store path or fsspec URL [default: ${STORE_ENV} or a per-user data dir]"),
]
DemoClassesOpt = Annotated[int, typer.Option(help="--demo: classes to generate", rich_help_panel="data")]
DemoPerClassOpt = Annotated[int, typer.Option(help="--demo: images per class", rich_help_panel="data")]
RunnerOpt = Annotated[str, typer.Option(help="threads | dask (tasks on a Dask cluster)", rich_help_panel="execution")]
DaskAddressOpt = Annotated[
    str | None,
    typer.Option(help="Dask scheduler, e.g. tcp://host:8786 [default: a local cluster]", rich_help_panel="execution"),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON object as the last line of stdout")]
ModelOpt = Annotated[str, typer.Option("--model", "-m", help="model name from mmcls's model index")]


DataOpt = Annotated[
    str | None, typer.Option("--data", help="ImageNet val folder (flat or synset folders)", rich_help_panel="data")
]
LabelsOpt = Annotated[
    str | None, typer.Option(help="val_label.txt for a flat folder [default: found beside it]", rich_help_panel="data")
]
NamesOpt = Annotated[
    str | None,
    typer.Option(help="class-names file, line = class id [default: imagenet.txt beside it]", rich_help_panel="data"),
]
LayoutOpt = Annotated[str, typer.Option(help="auto | flat | synset", rich_help_panel="data")]
LimitOpt = Annotated[int | None, typer.Option(help="use only the first N images (name order)", rich_help_panel="data")]
SkipCorruptOpt = Annotated[
    bool, typer.Option(help="leave undecodable images out (recorded) instead of failing", rich_help_panel="data")
]
PerClassOpt = Annotated[int, typer.Option(help="calibration images per class", rich_help_panel="calibration")]
AllowShortOpt = Annotated[
    bool, typer.Option(help="accept classes with too few images (recorded)", rich_help_panel="calibration")
]
ShardSizeOpt = Annotated[
    int, typer.Option(help="images per npz shard (one cached, resumable unit)", rich_help_panel="npz")
]
WorkersOpt = Annotated[int | None, typer.Option(help="worker processes [default: CPU count]", rich_help_panel="npz")]


ToolchainOpt = Annotated[
    str, typer.Option(help="onnxruntime (embedded) | vastai (vamc/vamp on PATH)", rich_help_panel="toolchain")
]
QuantOpt = Annotated[
    str,
    typer.Option(
        help="fp32 | fp16 | int8-max | int8-percentile | int8-kl_divergence | int8-mse", rich_help_panel="toolchain"
    ),
]
PerTensorOpt = Annotated[
    bool, typer.Option(help="int8: per-tensor instead of per-channel weight scales", rich_help_panel="toolchain")
]
VamcOpt = Annotated[
    str, typer.Option(help="vastai: v2 (`vamc build`) | v3 (`vamc compile`)", rich_help_panel="toolchain")
]
BenchBatchOpt = Annotated[str, typer.Option(help="benchmark batch sizes, comma-separated", rich_help_panel="toolchain")]
BenchThreadsOpt = Annotated[
    str, typer.Option(help="benchmark thread counts (onnxruntime), comma-separated", rich_help_panel="toolchain")
]
RemeasureOpt = Annotated[
    bool,
    typer.Option(
        help="benchmark again even if this host already measured the compiled model", rich_help_panel="toolchain"
    ),
]


def _quant(preset: str, per_tensor: bool) -> Any:
    """A preset name, or the preset's spec with per-tensor weights."""
    if not per_tensor:
        return preset
    try:
        return QuantSpec.from_preset(preset, per_channel=False).model_dump()
    except ConfigError:
        return preset  # let validation report the bad preset with the field name


def _data_values(
    data: str | None, labels: str | None, names: str | None, layout: str, limit: int | None, skip_corrupt: bool
) -> dict[str, Any]:
    return {
        "path": data,
        "labels": labels,
        "names": names,
        "layout": layout,
        "limit": limit,
        "skip_corrupt": skip_corrupt,
    }


def _empty_or_ours(out_dir: Path, marker: str) -> None:
    """Refuse to write into a folder holding other files (results are written fresh, never mixed in)."""
    if out_dir.exists() and any(out_dir.iterdir()):
        if not (out_dir / marker).is_file():
            raise ConfigError(
                f"output folder {out_dir} is not empty",
                "pass an empty or new --out folder (zooflow replaces only folders it wrote itself)",
            )
        shutil.rmtree(out_dir)


def _fail(exc: ZooflowError, as_json: bool = False) -> None:
    err.print(f"[bold red]error:[/] {exc.problem}", highlight=False)
    if exc.fix:
        err.print(f"[bold]fix:[/] {exc.fix}", highlight=False)
    if as_json:
        print(json.dumps({"status": "failed", "error": str(exc)}))
    raise typer.Exit(2)


def _ref_dict(ref: ArtifactRef) -> dict[str, Any]:
    return {"kind": ref.kind, "digest": ref.digest, "name": ref.name, "version": ref.version, "files": list(ref.files)}


def _load_runner(name: str) -> Any:
    found = [ep for ep in importlib.metadata.entry_points(group="zooflow.runners") if ep.name == name]
    if not found:
        raise ConfigError(
            f"no flow runner {name!r} is installed (the zooflow.runners entry point is missing)",
            "install the whole project (`uv sync`), which ships the Prefect flows",
        )
    return found[0].load()


@app.command(
    epilog="zooflow run --demo --json\n\nzooflow run --model shufflenet-v1-1x_16xb64_in1k --store /data/zooflow"
)
def run(
    model: ModelOpt = registry.DEFAULT_MODEL,
    checkpoint: Annotated[
        str | None, typer.Option(help="checkpoint URL or path [default: the index's published weights]")
    ] = None,
    sha256: Annotated[str | None, typer.Option(help="expected SHA-256 (or 8+ digit prefix) of the checkpoint")] = None,
    demo: Annotated[bool, typer.Option(help="offline: locally initialised weights, no download")] = False,
    seed: Annotated[int, typer.Option(help="seed for demo weights and sampling")] = 0,
    opset: Annotated[int, typer.Option(help="ONNX opset (mmcls models need 11+)")] = 11,
    logits: Annotated[bool, typer.Option(help="export logits instead of softmax probabilities")] = False,
    dynamic_batch: Annotated[
        bool | None,
        typer.Option(help="export with a symbolic batch dimension [default: the toolchain's choice]"),
    ] = None,
    data: DataOpt = None,
    labels: LabelsOpt = None,
    names: NamesOpt = None,
    layout: LayoutOpt = "auto",
    limit: LimitOpt = None,
    skip_corrupt: SkipCorruptOpt = False,
    per_class: PerClassOpt = 1,
    allow_short: AllowShortOpt = False,
    shard_size: ShardSizeOpt = 1000,
    toolchain: ToolchainOpt = "onnxruntime",
    quant: QuantOpt = "fp32",
    per_tensor: PerTensorOpt = False,
    vamc_generation: VamcOpt = "v2",
    bench_batch: BenchBatchOpt = "1,8",
    bench_threads: BenchThreadsOpt = "1",
    remeasure: RemeasureOpt = False,
    gate: Annotated[
        list[str] | None,
        typer.Option(
            help="metric goal METRIC:LIMIT=VALUE (repeatable), e.g. top1:max_drop_vs_reference=1.5 "
            "[default: int8 1.5, fp16 0.5 top-1 points below fp32]",
            rich_help_panel="evaluation",
        ),
    ] = None,
    no_gates: Annotated[bool, typer.Option(help="record no gates at all", rich_help_panel="evaluation")] = False,
    probe_images: Annotated[
        int, typer.Option(help="images also run through PyTorch (0 = none)", rich_help_panel="evaluation")
    ] = 16,
    parity: Annotated[
        bool,
        typer.Option(help="also measure the card's DSP preprocessing vs the framework's", rich_help_panel="evaluation"),
    ] = True,
    demo_classes: DemoClassesOpt = 1000,
    demo_per_class: DemoPerClassOpt = 2,
    runner: RunnerOpt = "threads",
    dask_address: DaskAddressOpt = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the deploy_classifier flow: dataset, fetch, export, calibration, npz, compile, run, benchmark, evaluate, report."""
    try:
        config = build(
            RunConfig,
            model=model,
            checkpoint=checkpoint,
            checkpoint_sha256=sha256,
            demo=demo,
            seed=seed,
            export={"opset": opset, "logits": logits, "dynamic_batch": dynamic_batch},
            data={
                **_data_values(data, labels, names, layout, limit, skip_corrupt),
                "demo": {"classes": demo_classes, "per_class": demo_per_class},
            },
            calibration={"per_class": per_class, "allow_short": allow_short},
            npz={"shard_size": shard_size},
            toolchain=toolchain,
            quant=_quant(quant, per_tensor),
            toolchain_options={"vamc_generation": vamc_generation},
            benchmark={"batch_sizes": bench_batch, "threads": bench_threads, "fresh": remeasure},
            evaluation={
                "gates": () if no_gates else ([Gate.parse(g) for g in gate] if gate else None),
                "probe_images": probe_images,
                "preprocess_parity": parity,
            },
            store=store,
        )
        open_store(config.store_url())
        from zooflow import toolchains

        toolchains.require(config.toolchain, config.toolchain_options)  # before Prefect starts: fail fast
        execution = build(ExecutionOptions, runner=runner, dask_address=dask_address)
        result = _load_runner("deploy")(config, execution)
    except ZooflowError as exc:
        _fail(exc, as_json)
        return
    _finish_flow(result, as_json, _print_stages)


@app.command(
    epilog="zooflow sweep --demo\n\nzooflow sweep --data /data/imagenet/val --labels val_label.txt "
    "--presets fp16,int8-max,int8-mse --toolchain vastai"
)
def sweep(
    presets: Annotated[
        str | None,
        typer.Option(help="comma-separated presets [default: fp32, fp16, int8-max/percentile/kl_divergence/mse]"),
    ] = None,
    model: ModelOpt = registry.DEFAULT_MODEL,
    checkpoint: Annotated[str | None, typer.Option(help="checkpoint URL or path")] = None,
    demo: Annotated[bool, typer.Option(help="offline: locally initialised weights, generated data")] = False,
    data: DataOpt = None,
    labels: LabelsOpt = None,
    limit: LimitOpt = None,
    per_tensor: PerTensorOpt = False,
    toolchain: ToolchainOpt = "onnxruntime",
    allow_short: AllowShortOpt = False,
    shard_size: ShardSizeOpt = 1000,
    bench_batch: BenchBatchOpt = "1,8",
    remeasure: RemeasureOpt = False,
    demo_classes: DemoClassesOpt = 1000,
    demo_per_class: DemoPerClassOpt = 2,
    runner: RunnerOpt = "threads",
    dask_address: DaskAddressOpt = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the quant_sweep flow: every preset on one model and dataset, one comparison table and Pareto plot."""
    try:
        config = build(
            SweepConfig,
            presets=tuple(p.strip() for p in presets.split(",") if p.strip()) if presets is not None else None,
            per_channel=not per_tensor,
            model=model,
            checkpoint=checkpoint,
            demo=demo,
            data={
                **_data_values(data, labels, None, "auto", limit, False),
                "demo": {"classes": demo_classes, "per_class": demo_per_class},
            },
            calibration={"allow_short": allow_short},
            npz={"shard_size": shard_size},
            toolchain=toolchain,
            benchmark={"batch_sizes": bench_batch, "fresh": remeasure},
            store=store,
        )
        open_store(config.store_url())
        from zooflow import toolchains

        toolchains.require(config.toolchain, config.toolchain_options)
        execution = build(ExecutionOptions, runner=runner, dask_address=dask_address)
        result = _load_runner("sweep")(config, execution)
    except ZooflowError as exc:
        _fail(exc, as_json)
        return
    _finish_flow(result, as_json, _print_sweep)


@app.command(epilog="zooflow nightly --matrix deployments/regression-demo.yaml --night 2026-11-28")
def nightly(
    matrix: Annotated[str, typer.Option(help="regression matrix (YAML)")] = "deployments/regression.yaml",
    night: Annotated[str | None, typer.Option(help="YYYY-MM-DD [default: today, UTC]")] = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the nightly_regression flow once: the matrix, tonight's history entry and the trend report."""
    from zooflow.config import NightlyConfig, RegressionMatrix

    try:
        config = build(NightlyConfig, matrix=matrix, night=night, store=store)
        RegressionMatrix.load(config.matrix).configs(store=store)  # a bad matrix fails before Prefect starts
        result = _load_runner("nightly")(config)
    except ZooflowError as exc:
        _fail(exc, as_json)
        return
    _finish_flow(
        result, as_json, lambda r: err.print(f"night {r['night']} of {r['matrix']}: no regressions", highlight=False)
    )


@app.command(epilog="zooflow serve\n\nzooflow serve --only one-off --only quant-sweep")
def serve(
    only: Annotated[list[str] | None, typer.Option(help="serve only these deployments (repeatable)")] = None,
    file: Annotated[Path, typer.Option(help="deployments file")] = Path("deployments/prefect.yaml"),
) -> None:
    """Serve the deployments of deployments/prefect.yaml from this process (one machine; see README for a team)."""
    try:
        _load_runner("serve")(file, only or [])
    except ZooflowError as exc:
        _fail(exc)


def _finish_flow(result: dict[str, Any], as_json: bool, on_success: Any) -> None:
    """Print a flow run's outcome (and its JSON); a run that did not complete exits 1."""
    completed = result.get("status") == "completed"
    if completed:
        on_success(result)
    else:
        err.print(f"[bold red]flow run {result.get('status')}:[/] {result.get('error')}", highlight=False)
    if as_json:
        print(json.dumps(result))
    if not completed:
        raise typer.Exit(1)


def _print_stages(result: dict[str, Any]) -> None:
    """Per stage: artifact, version, digest and whether it was cached; then metrics and verdict."""
    table = Table("stage", "artifact", "version", "digest", "state", title="deploy-classifier completed")
    for stage, state in result["stages"].items():
        art = result["artifacts"].get(stage)
        if art:
            version = "" if art["version"] is None else str(art["version"])  # unnamed kinds (benchmark) have none
            table.add_row(stage, art["name"] or art["kind"], version, art["digest"][:16], state)
        else:
            table.add_row(stage, "", "", "", state)
    err.print(table)
    _print_outcome(result)


def _print_sweep(result: dict[str, Any]) -> None:
    """The sweep's comparison table and where its plot is."""
    table = Table(
        "preset",
        "top-1",
        "top-5",
        "drop vs fp32",
        "agreement",
        "images/s",
        "p99 ms",
        "at (best setting)",
        "gates",
        title="quant-sweep",
    )
    for row in result["table"]:
        table.add_row(
            row["preset"],
            *(
                "n/a" if row[k] is None else f"{row[k]:.2f}"
                for k in ("top1", "top5", "drop_top1", "agreement", "throughput", "latency_p99_ms")
            ),
            row["bench_setting"] or "n/a",
            "pass" if row["passed"] else "FAIL",
        )
    err.print(table)
    sweep_art = result["artifacts"]["sweep"]
    err.print(f"table and Pareto plot: zooflow artifacts show {sweep_art['name']} (sweep.html, pareto.png)")


def _print_outcome(result: dict[str, Any]) -> None:
    """Metrics, verdict and where the report is, after a completed run."""
    metrics = result.get("metrics") or {}
    if metrics:
        parts = [f"top-1 {metrics['top1']:.2f}%", f"top-5 {metrics['top5']:.2f}%"]
        if metrics.get("agreement") is not None:
            parts.append(f"agreement with fp32 {metrics['agreement']:.2f}%")
        if metrics.get("drop_top1") is not None:
            parts.append(f"drop vs fp32 {metrics['drop_top1']:+.2f} points")
        err.print("  ".join(parts), highlight=False)
    verdict = result.get("verdict") or {}
    for check in verdict.get("checks", []):
        err.print(f"  gate {'pass' if check['passed'] else 'FAIL'}: {check['reason']}", highlight=False)
    report = (result.get("artifacts") or {}).get("report")
    if report:
        err.print(f"report: zooflow report {report['name']} --store {result['store']}", highlight=False)


@app.command(
    epilog="zooflow fetch --model shufflenet-v1-1x_16xb64_in1k\n\nzooflow fetch --checkpoint https://host/model-5d6cec73.pth"
)
def fetch(
    model: ModelOpt = registry.DEFAULT_MODEL,
    checkpoint: Annotated[str | None, typer.Option(help="URL or path [default: the index's published weights]")] = None,
    sha256: Annotated[str | None, typer.Option(help="expected SHA-256 (or 8+ digit prefix)")] = None,
    demo: Annotated[bool, typer.Option(help="locally initialise weights instead of downloading")] = False,
    seed: Annotated[int, typer.Option(help="seed for --demo weights")] = 0,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Fetch a checkpoint into the store, resuming interrupted downloads and verifying SHA-256."""
    from zooflow import fetch as fetch_stage

    try:
        config = build(
            ModelSource, model=model, checkpoint=checkpoint, checkpoint_sha256=sha256, demo=demo, seed=seed, store=store
        )
        st = open_store(config.store_url())
        ref = fetch_stage.fetch_checkpoint(
            config.checkpoint_source(), st, model=model, sha256=config.checkpoint_sha256, seed=seed
        )
    except ZooflowError as exc:
        _fail(exc, as_json)
        return
    err.print(f"checkpoint {ref.label()} -> {st.path(ref)}", highlight=False)
    if as_json:
        print(json.dumps(_ref_dict(ref)))


@app.command(epilog="zooflow export --checkpoint ./shufflenet_v1.pth --out shufflenet_v1.onnx")
def export(
    checkpoint: Annotated[str, typer.Option(help="checkpoint URL or path (fetched and verified first)")],
    out_file: Annotated[Path, typer.Option("--out", help="where to write the .onnx file")],
    model: ModelOpt = registry.DEFAULT_MODEL,
    sha256: Annotated[str | None, typer.Option(help="expected SHA-256 of the checkpoint")] = None,
    opset: Annotated[int, typer.Option(help="ONNX opset (mmcls models need 11+)")] = 11,
    logits: Annotated[bool, typer.Option(help="export logits instead of softmax probabilities")] = False,
    dynamic_batch: Annotated[bool, typer.Option(help="symbolic batch dimension")] = False,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Export a checkpoint to ONNX (checked with onnx.checker and against PyTorch), store it, copy it to --out."""
    from zooflow import export as export_stage
    from zooflow import fetch as fetch_stage

    try:
        options = build(ExportOptions, opset=opset, logits=logits, dynamic_batch=dynamic_batch)
        config = build(ModelSource, model=model, checkpoint=checkpoint, checkpoint_sha256=sha256, store=store)
        st = open_store(config.store_url())
        ckpt = fetch_stage.fetch_checkpoint(
            config.checkpoint_source(), st, model=model, sha256=config.checkpoint_sha256
        )
        ref = export_stage.export_checkpoint(ckpt, st, model=model, options=options)
        out_file.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(st.path(ref), out_file)
    except ZooflowError as exc:
        _fail(exc, as_json)
        return
    except OSError as exc:
        _fail(
            ConfigError(f"cannot write {out_file}: {exc.strerror}", "pass an --out path in a writable directory"),
            as_json,
        )
        return
    parity = ref.meta["parity"]
    err.print(
        f"onnx {ref.label()} -> {out_file} (max abs diff vs PyTorch {parity['max_abs_diff']:.3g})", highlight=False
    )
    if as_json:
        print(json.dumps({**_ref_dict(ref), "out": str(out_file), "parity": parity}))


@app.command("demo-data")
def demo_data(
    out_dir: Annotated[Path, typer.Option("--out", help="folder to create (val/, val_label.txt, imagenet.txt)")],
    classes: Annotated[int, typer.Option(help="number of classes (1..1000)")] = 1000,
    per_class: Annotated[int, typer.Option(help="images per class")] = 2,
    layout: Annotated[str, typer.Option(help="flat | synset")] = "flat",
    seed: Annotated[int, typer.Option(help="seed for sizes, textures and order")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Write a generated ImageNet-layout set (textures, varied sizes, one greyscale and one CMYK JPEG)."""
    from zooflow import demo

    try:
        spec = build(DemoDataSpec, classes=classes, per_class=per_class, layout=layout)
        _empty_or_ours(out_dir, "imagenet.txt")
        summary = demo.write_demo_dataset(
            out_dir, classes=spec.classes, per_class=spec.per_class, layout=spec.layout, seed=seed
        )
    except ZooflowError as exc:
        _fail(exc, as_json)
        return
    err.print(f"wrote {summary['images']} images of {classes} classes to {out_dir / 'val'} ({layout})", highlight=False)
    if as_json:
        print(json.dumps({**summary, "data": str(out_dir / "val")}))


@app.command("check-data")
def check_data(
    data: Annotated[str, typer.Option("--data", help="ImageNet val folder")],
    labels: LabelsOpt = None,
    names: NamesOpt = None,
    layout: LayoutOpt = "auto",
    decode: Annotated[bool, typer.Option(help="decode every image to find corrupt files")] = True,
    workers: WorkersOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Check a dataset: layout, labels, missing/unlabelled/duplicate files, and (with --decode) corrupt images."""
    from zooflow import datasets

    try:
        spec = build(DataSpec, **_data_values(data, labels, names, layout, None, False))
        dataset = datasets.scan(spec)
        check = datasets.check_images(dataset, workers=workers or os.cpu_count() or 1) if decode else None
    except ZooflowError as exc:
        _fail(exc, as_json)
        return
    report = {**dataset.summary(), "root": str(dataset.root)}
    if check is not None:
        report.update(corrupt=check.corrupt, modes=check.modes, converted_to_rgb=check.converted)
    for name, reason in sorted((check.corrupt if check else {}).items()):
        err.print(f"[red]corrupt[/] {name}: {reason}", highlight=False)
    err.print(
        f"{report['images']} images, {report['classes_present']} of {report['num_classes']} classes, {dataset.layout} layout"
        + (f"; {len(check.corrupt)} corrupt; {len(check.converted)} converted to RGB" if check else ""),
        highlight=False,
    )
    if as_json:
        print(json.dumps(report))
    if check is not None and check.corrupt:
        raise typer.Exit(1)


@app.command()
def calib(
    data: Annotated[str, typer.Option("--data", help="ImageNet val folder")],
    out_dir: Annotated[Path, typer.Option("--out", help="folder for the chosen images and calibration.json")],
    labels: LabelsOpt = None,
    names: NamesOpt = None,
    layout: LayoutOpt = "auto",
    per_class: PerClassOpt = 1,
    seed: Annotated[int, typer.Option(help="sampling seed (same seed, same set, on any machine)")] = 0,
    allow_short: AllowShortOpt = False,
    skip_corrupt: SkipCorruptOpt = False,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Sample a calibration set: exactly --per-class images of every class, seeded, as a flat folder."""
    from zooflow import calibration, datasets

    try:
        spec = build(DataSpec, **_data_values(data, labels, names, layout, None, skip_corrupt))
        options = build(CalibrationOptions, per_class=per_class, allow_short=allow_short)
        st = open_store(store)
        dataset = datasets.scan(spec)
        index = datasets.publish_index(dataset, st, source={"path": data})
        ref = calibration.build_calibration(
            dataset, st, options, seed=seed, skip_corrupt=skip_corrupt, inputs={"dataset": index}
        )
        _empty_or_ours(out_dir, "calibration.json")
        shutil.copytree(st.directory(ref) / "images", out_dir)
        shutil.copyfile(st.path(ref, "calibration.json"), out_dir / "calibration.json")
    except ZooflowError as exc:
        _fail(exc, as_json)
        return
    err.print(f"calibration {ref.label()}: {ref.meta['count']} images -> {out_dir}", highlight=False)
    if as_json:
        print(json.dumps({**_ref_dict(ref), "count": ref.meta["count"], "out": str(out_dir)}))


@app.command()
def npz(
    data: Annotated[str, typer.Option("--data", help="ImageNet val folder")],
    out_dir: Annotated[Path, typer.Option("--out", help="folder for the npz files (mirrors the dataset)")],
    npz_format: Annotated[
        str,
        typer.Option(
            "--format", help="model (exact preprocessed crop) | vastai (image2npz) | dsp (the card's DSP crop)"
        ),
    ] = "model",
    datalist: Annotated[Path | None, typer.Option(help="datalist to write [default: OUT/datalist.txt]")] = None,
    labels: LabelsOpt = None,
    names: NamesOpt = None,
    layout: LayoutOpt = "auto",
    limit: LimitOpt = None,
    model: ModelOpt = registry.DEFAULT_MODEL,
    pre_resize: Annotated[str | None, typer.Option(help="vastai: resize to HEIGHTxWIDTH, e.g. 256x256")] = None,
    shard_size: ShardSizeOpt = 1000,
    workers: WorkersOpt = None,
    skip_corrupt: SkipCorruptOpt = False,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Convert images to npz (one per image, sharded, resumable) and write a datalist for vamp or `zooflow.npz.read`."""
    from zooflow import datasets, models
    from zooflow import npz as npz_stage

    try:
        spec = build(DataSpec, **_data_values(data, labels, names, layout, limit, skip_corrupt))
        opts = build(
            NpzOptions,
            format=npz_format,
            shard_size=shard_size,
            pre_resize=pre_resize,
            **({"workers": workers} if workers else {}),
        )
        st = open_store(store)
        dataset = datasets.scan(spec).limited(limit)
        index = datasets.publish_index(dataset, st, source={"path": data})
        preprocess = models.preprocess_spec(registry.resolve(model)) if opts.format in npz_stage.CROPPED else None
        params = npz_stage.NpzParams.for_format(opts.format, preprocess, opts.pre_resize)
        ref = npz_stage.build_npz(
            dataset,
            st,
            params,
            shard_size=opts.shard_size,
            workers=opts.workers,
            skip_corrupt=skip_corrupt,
            inputs={"dataset": index},
        )
        _empty_or_ours(out_dir, ".zooflow-npz")
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / ".zooflow-npz").write_text(ref.digest + "\n")
        written = npz_stage.write_datalist(st, ref, datalist or out_dir / "datalist.txt", copy_to=out_dir)
    except ZooflowError as exc:
        _fail(exc, as_json)
        return
    err.print(f"npz {ref.label()}: {ref.meta['count']} files in {out_dir}, datalist {written}", highlight=False)
    if as_json:
        print(json.dumps({**_ref_dict(ref), "count": ref.meta["count"], "out": str(out_dir), "datalist": str(written)}))


def _onnx_ref(st: Store, onnx: str, model: str) -> ArtifactRef:
    """A store reference, or an ONNX file published into the store (its zooflow metadata, or --model's)."""
    path = Path(onnx).expanduser()
    if not path.is_file():
        return st.resolve(onnx)
    import onnx as onnx_lib

    from zooflow import models as models_mod

    props = {p.key: p.value for p in onnx_lib.load(str(path), load_external_data=False).metadata_props}
    preprocess = (
        json.loads(props["zooflow.preprocess"])
        if "zooflow.preprocess" in props
        else models_mod.preprocess_spec(registry.resolve(model))
    )
    dynamic = not isinstance(
        onnx_lib.load(str(path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim[0].dim_value
        or None,
        int,
    )
    output = props.get("zooflow.output", "probs")
    with st.staging() as staged:
        shutil.copyfile(path, staged / path.name)
        return st.commit(
            staged,
            kind="onnx",
            name=f"{props.get('zooflow.model', model)}/onnx",
            stage="import",
            stage_version="1",
            params={"source": str(path)},
            meta={
                "preprocess": preprocess,
                "dynamic_batch": dynamic,
                "output": {"name": output, "semantics": "logits" if output == "logits" else "softmax probabilities"},
                "input": {"name": "input", "shape": ["batch" if dynamic else 1, 3, *preprocess["crop"]]},
            },
        )


def _calibration_ref(st: Store, calibration: str | None) -> ArtifactRef | None:
    """A store reference, or a folder written by `zooflow calib` (with its calibration.json)."""
    if calibration is None:
        return None
    folder = Path(calibration).expanduser()
    if not folder.is_dir():
        return st.resolve(calibration)
    if not (folder / "calibration.json").is_file():
        raise ConfigError(
            f"{folder} has no calibration.json", "make the calibration set with `zooflow calib --out DIR`"
        )
    with st.staging() as staged:
        shutil.copyfile(folder / "calibration.json", staged / "calibration.json")
        shutil.copytree(folder, staged / "images", ignore=shutil.ignore_patterns("calibration.json"))
        return st.commit(staged, kind="calibration", stage="import", stage_version="1", params={"source": str(folder)})


@app.command(
    name="compile",
    epilog="zooflow compile --onnx shufflenet-v1-1x_16xb64_in1k/onnx --calibration ./calibration --quant int8-mse",
)
def compile_cmd(
    onnx: Annotated[str, typer.Option(help="ONNX file, or a store reference (name, name@N, digest)")],
    quant: QuantOpt = "fp32",
    calibration: Annotated[
        str | None, typer.Option(help="int8: folder from `zooflow calib`, or a store reference")
    ] = None,
    toolchain: ToolchainOpt = "onnxruntime",
    per_tensor: PerTensorOpt = False,
    vamc_generation: VamcOpt = "v2",
    model: ModelOpt = registry.DEFAULT_MODEL,
    out_dir: Annotated[Path | None, typer.Option("--out", help="copy the compiled files here")] = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Compile an ONNX model with a toolchain (onnxruntime: fp32/fp16/int8; vastai: vamc fp16/int8)."""
    from zooflow import toolchains

    try:
        spec = build(QuantSpec, **QuantSpec.from_preset(quant, per_channel=not per_tensor).model_dump())
        tc = toolchains.require(toolchain, build(ToolchainOptions, vamc_generation=vamc_generation))
        st = open_store(store)
        onnx_ref = _onnx_ref(st, onnx, model)
        calib_ref = _calibration_ref(st, calibration)
        if spec.dtype == "int8" and calib_ref is None:
            raise ConfigError(
                "int8 needs a calibration set", "pass --calibration DIR (from `zooflow calib`) or a store reference"
            )
        ref = tc.compile(onnx_ref, calib_ref, spec, st)
        if out_dir is not None:
            _empty_or_ours(out_dir, ".zooflow-compiled")
            shutil.copytree(st.directory(ref), out_dir)
            (out_dir / ".zooflow-compiled").write_text(ref.digest + "\n")
    except ZooflowError as exc:
        _fail(exc, as_json)
        return
    err.print(f"compiled {ref.label()}" + (f" -> {out_dir}" if out_dir else ""), highlight=False)
    if as_json:
        print(json.dumps({**_ref_dict(ref), "meta": ref.meta}))


@app.command(
    epilog="zooflow bench --compiled shufflenet-v1-1x_16xb64_in1k/onnxruntime/int8-mse --batch 1,8 --threads 1,2"
)
def bench(
    compiled: Annotated[str, typer.Option(help="compiled model: store reference (name, name@N, digest)")],
    toolchain: ToolchainOpt = "onnxruntime",
    batch: BenchBatchOpt = "1,8",
    threads: BenchThreadsOpt = "1",
    trials: Annotated[int, typer.Option(help="timed trials")] = 5,
    iterations: Annotated[int, typer.Option(help="runs per trial")] = 20,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Benchmark a compiled model: throughput and latency percentiles per batch size and thread count."""
    from zooflow import toolchains

    try:
        spec = build(BenchmarkSpec, batch_sizes=batch, threads=threads, trials=trials, iterations=iterations)
        tc = toolchains.require(toolchain)
        st = open_store(store)
        ref = tc.benchmark(st.resolve(compiled), spec, st)
    except ZooflowError as exc:
        _fail(exc, as_json)
        return
    table = Table("batch", "threads", "images/s", "spread", "p50 ms", "p99 ms", title=f"benchmark {ref.short}")
    for r in ref.meta["results"]:
        if "skipped" in r:
            table.add_row(str(r["batch"]), str(r.get("threads", "")), r["skipped"], "", "", "")
            continue
        spread = f"{r['throughput_min']:.0f}-{r['throughput_max']:.0f}" if "throughput_min" in r else ""
        lat = r.get("latency_ms", {})
        table.add_row(
            str(r["batch"]),
            str(r.get("threads", "")),
            f"{r['throughput']:.1f}",
            spread,
            f"{lat.get('p50', 0):.2f}",
            f"{lat.get('p99', 0):.2f}",
        )
    err.print(table)
    if as_json:
        print(json.dumps({"digest": ref.digest, "results": ref.meta["results"]}))


@app.command(
    "export-outputs",
    epilog="zooflow export-outputs --outputs shufflenet-v1-1x_16xb64_in1k/onnxruntime/fp32/outputs-model-8f2f06d47344 --out ./output",
)
def export_outputs(
    outputs_ref: Annotated[
        str, typer.Option("--outputs", help="outputs artifact: store reference (name, name@N, digest)")
    ],
    out_dir: Annotated[Path, typer.Option("--out", help="new folder for output_%06d.npz files")],
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write a run's outputs in vamp's layout (output_%06d.npz, key output_0), in datalist order."""
    from zooflow.toolchains import outputs as outputs_mod

    try:
        st = _open_existing(store)
        ref = st.resolve(outputs_ref)
        if ref.kind != "outputs":
            raise ConfigError(
                f"{outputs_ref} is a {ref.kind} artifact, not outputs", "`zooflow artifacts list outputs` shows them"
            )
        count = outputs_mod.export_vamp_layout(st, ref, out_dir)
    except ZooflowError as exc:
        _fail(exc, as_json)
        return
    err.print(f"{count} output files -> {out_dir}", highlight=False)
    if as_json:
        print(json.dumps({"count": count, "out": str(out_dir), "digest": ref.digest}))


@app.command()
def models(
    pattern: Annotated[str, typer.Argument(help="only names containing this text")] = "",
    as_json: JsonOpt = False,
) -> None:
    """List the classifiers in mmcls's model index with their published accuracy."""
    rows = [m for m in registry.load_index().values() if pattern.lower() in m.name.lower()]
    if as_json:
        print(json.dumps([m.model_dump(mode="json") for m in rows]))
        return
    table = Table("name", "top-1", "top-5", "params (M)", "GFLOPs")
    for m in rows:
        table.add_row(
            m.name,
            f"{m.top1}" if m.top1 is not None else "-",
            f"{m.top5}" if m.top5 is not None else "-",
            f"{m.params / 1e6:.2f}" if m.params else "-",
            f"{m.flops / 1e9:.3f}" if m.flops else "-",
        )
    out.print(table)


@app.command(
    "eval",
    epilog="zooflow eval --outputs ./vamp_out --datalist ./npz/datalist.txt --labels ./val_label.txt --json\n\n"
    "zooflow eval --outputs shufflenet-v1-1x_16xb64_in1k/onnxruntime/int8-max/outputs-model-8f2f06d47344",
)
def eval_command(
    outputs: Annotated[
        str,
        typer.Option(help="outputs artifact (name, name@N, digest) or a folder of vamp's output_%06d.npz files"),
    ],
    datalist: Annotated[
        Path | None, typer.Option(help="the datalist the outputs were made from (line i <-> output_i)")
    ] = None,
    labels: Annotated[Path | None, typer.Option(help="val_label.txt: `FILE CLASS_ID` per line")] = None,
    names: Annotated[Path | None, typer.Option(help="class names, line = class id (imagenet.txt)")] = None,
    semantics: Annotated[
        str, typer.Option(help="folder outputs: logits | probs (prob in --text is a softmax of logits)")
    ] = "logits",
    text: Annotated[
        Path | None, typer.Option(help="also write the zoo's text format (5 lines per image) to this file")
    ] = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Top-1/top-5 of outputs paired with their inputs by index and name (never by directory order)."""
    from zooflow import evaluate as ev

    try:
        if semantics not in ("logits", "probs"):
            raise ConfigError(f"--semantics {semantics!r} is not logits or probs", "pass --semantics logits|probs")
        folder = Path(outputs).expanduser()
        if folder.is_dir():
            if datalist is None:
                raise ConfigError(
                    "a folder of output files needs --datalist", "pass the datalist vamp ran (line i -> output_i)"
                )
            truth = ev.truth_from_datalist(datalist.expanduser(), labels)
            rows = ev.read_vamp_folder(folder, len(truth.names))
            source = str(folder)
        else:
            st = _open_existing(store)
            ref = st.resolve(outputs)
            if ref.kind != "outputs":
                raise ConfigError(
                    f"{outputs} is a {ref.kind} artifact, not outputs",
                    "`zooflow artifacts list outputs` shows them; or pass a folder of vamp output files",
                )
            truth, rows, semantics_found = ev.scored_outputs(st, ref)
            semantics = "probs" if ev.is_probs(semantics_found) else "logits"
            if datalist is not None:  # the user's list must be the one these outputs were made from
                given = ev.truth_from_datalist(datalist.expanduser(), labels)
                ev.pair(np.arange(len(given.names)), given.names, rows, truth)
                truth = ev.Truth(names=truth.names, labels=given.labels)
            elif labels is not None:
                table = ev.read_labels(labels)
                missing = [n for n in truth.names if ev.image_stem(n) not in table]
                if missing:
                    raise ev.EvaluationError(
                        f"{len(missing)} images have no label in {labels} (first: {missing[0]})",
                        "use the labels file of the same image set",
                    )
                truth = ev.Truth(names=truth.names, labels=np.array([table[ev.image_stem(n)] for n in truth.names]))
            source = ref.label()
        scores = ev.score(rows, truth)
        class_names = ev.read_class_names(names.expanduser() if names else None, rows.shape[1])
        if text is not None:
            ids, _ = scores.ids, None
            probs = np.take_along_axis(ev.probabilities(rows, semantics), ids, axis=1)
            ev.write_text(text.expanduser(), truth.names, ids, probs, class_names)
    except ZooflowError as exc:
        _fail(exc, as_json)
        return
    counts, per_class = scores.per_class()
    present = np.flatnonzero(counts > 0)
    err.print(f"{len(truth.names)} outputs from {source}, paired by index and name", highlight=False)
    print(f"top1_rate: {scores.top1:.3f} top5_rate: {scores.top5:.3f}")
    if len(present) > 1:
        worst = present[np.argsort(per_class[present], kind="stable")[:5]]
        err.print(
            "lowest per-class top-1: "
            + ", ".join(f"{int(c)} ({class_names[int(c)] if class_names else c}) {per_class[c]:.1f}%" for c in worst),
            highlight=False,
        )
    if text is not None:
        err.print(f"text results -> {text}", highlight=False)
    if as_json:
        print(
            json.dumps({"top1": scores.top1, "top5": scores.top5, "images": len(truth.names), "classes": len(present)})
        )


@app.command(epilog="zooflow report shufflenet-v1-1x_16xb64_in1k/onnxruntime/int8-max/report --out ./report")
def report(
    run: Annotated[str, typer.Argument(help="report or evaluation artifact (name, name@N, name@alias, digest)")],
    out: Annotated[Path | None, typer.Option(help="copy report.md/.html, the plot and results.txt here")] = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a run's report (rendering it from the evaluation if needed): summary, verdict, lineage, plots."""
    from zooflow import report as report_mod

    try:
        st = _open_existing(store)
        ref = st.resolve(run)
        if ref.kind == "evaluation":
            ref = report_mod.render(st, ref)
        elif ref.kind != "report":
            raise ConfigError(
                f"{run} is a {ref.kind} artifact, not a report or evaluation",
                "`zooflow artifacts list report` shows the reports",
            )
        if out is not None:
            out = out.expanduser()
            out.mkdir(parents=True, exist_ok=True)
            for file in ref.files:
                shutil.copyfile(st.path(ref, file), out / file)
    except ZooflowError as exc:
        _fail(exc, as_json)
        return
    if not as_json:
        print(st.path(ref, "report.md").read_text(encoding="utf-8"))
    err.print(f"HTML report: {out / 'report.html' if out else st.path(ref, 'report.html')}", highlight=False)
    if as_json:
        files = {f: str((out / f) if out else st.path(ref, f)) for f in ref.files}
        print(json.dumps({"digest": ref.digest, "name": ref.name, "passed": ref.meta.get("passed"), "files": files}))


def _open_existing(store: str | None) -> Store:
    return open_store(store, create=False)


@artifacts_app.command("list")
def artifacts_list(
    name: Annotated[str, typer.Argument(help="only names containing this text")] = "",
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List logical artifacts with their versions and aliases."""
    try:
        st = _open_existing(store)
        rows = [v for n in st.names() if name in n for v in st.versions(n)]
    except ZooflowError as exc:
        _fail(exc, as_json)
        return
    if as_json:
        print(json.dumps([r.model_dump(mode="json") for r in rows]))
        return
    table = Table("name", "version", "kind", "digest", "created", "aliases", title=f"store {st.url}")
    for r in rows:
        table.add_row(r.name, str(r.version), r.kind, r.digest[:16], r.created, ", ".join(r.aliases))
    out.print(table)


@artifacts_app.command("show")
def artifacts_show(
    ref: Annotated[str, typer.Argument(help="name, name@VERSION, name@ALIAS, digest or digest prefix")],
    store: StoreOpt = None,
) -> None:
    """Print an artifact's manifest (JSON)."""
    try:
        st = _open_existing(store)
        found = st.resolve(ref)
        manifest = st.manifest(found.digest)
    except ZooflowError as exc:
        _fail(exc)
        return
    doc = manifest.model_dump(mode="json")
    doc["ref"] = {"name": found.name, "version": found.version, "location": st.object_dir(found.digest)}
    print(json.dumps(doc, indent=2))


@artifacts_app.command("lineage")
def artifacts_lineage(
    ref: Annotated[str, typer.Argument(help="name, name@VERSION, digest or digest prefix")],
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show what an artifact was made from, recursively."""
    try:
        st = _open_existing(store)
        found = st.resolve(ref)
        tree = st.lineage(found.digest)
    except ZooflowError as exc:
        _fail(exc, as_json)
        return
    if as_json:
        print(json.dumps(tree))
        return

    def label(node: dict[str, Any]) -> str:
        status = " [red](missing)[/]" if node.get("missing") else ""
        return f"{node['role']}: {node.get('kind', '?')} [dim]{node['digest'][:16]}[/] {node.get('stage', '')}{status}"

    def add(parent: Tree, node: dict[str, Any]) -> None:
        for child in node.get("inputs", []):
            add(parent.add(label(child)), child)

    root = Tree(label(tree))
    add(root, tree)
    out.print(root)


@artifacts_app.command("verify")
def artifacts_verify(
    ref: Annotated[str | None, typer.Argument(help="one artifact; default: every artifact in the store")] = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Re-hash artifacts against their manifests; exit 1 if any is damaged."""
    try:
        st = _open_existing(store)
        digests = [st.resolve(ref).digest] if ref else st.digests()
    except ZooflowError as exc:
        _fail(exc, as_json)
        return
    report = {d: st.verify(d) for d in digests}
    bad = {d: p for d, p in report.items() if p}
    if as_json:
        print(json.dumps({"checked": len(report), "damaged": bad}))
    else:
        for d, problems in bad.items():
            err.print(f"[red]damaged[/] {d[:16]}: " + "; ".join(problems), highlight=False)
        err.print(f"{len(report) - len(bad)} of {len(report)} artifact(s) intact", highlight=False)
    if bad:
        raise typer.Exit(1)


@artifacts_app.command("alias")
def artifacts_alias(
    ref: Annotated[str, typer.Argument(help="name@VERSION (or name for the latest)")],
    alias: Annotated[str, typer.Argument(help="alias to set, e.g. nightly-2026-11-28 or good")],
    store: StoreOpt = None,
) -> None:
    """Point an alias of a logical name at one of its versions."""
    try:
        st = _open_existing(store)
        found = st.resolve(ref)
        if found.name is None or found.version is None:
            raise ConfigError(f"{ref!r} is a bare digest", "name the artifact as name@VERSION to alias it")
        st.set_alias(found.name, alias, found.version)
    except ZooflowError as exc:
        _fail(exc)
        return
    err.print(f"{found.name}@{alias} -> version {found.version}", highlight=False)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted; finished artifacts are kept and a rerun resumes from them")
        sys.exit(130)
