"""Commands that run Prefect flows: run, sweep, nightly, serve (through the ``zooflow.runners`` entry points)."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from zooflow import form, registry
from zooflow.cli.common import (
    AllowShortOpt,
    BenchBatchOpt,
    BenchThreadsOpt,
    DataOpt,
    DeviceOpt,
    Int8WeightsOpt,
    JsonOpt,
    KeepFloatOpt,
    LabelsOpt,
    LayoutOpt,
    LimitOpt,
    ModelOpt,
    NamesOpt,
    PerClassOpt,
    PerTensorOpt,
    PreResizeOpt,
    PrintConfigOpt,
    RehashOpt,
    RunQuantOpt,
    SensitivityOpt,
    ShardSizeOpt,
    SkipCorruptOpt,
    StoreOpt,
    ToolchainOpt,
    TrustOpt,
    VamcOpt,
    VamcRangeOpt,
    VampArgOpt,
    app,
    data_values,
    err,
    failing,
    keep_float_value,
    load_runner,
    quant_value,
    vastai_values,
)
from zooflow.config import ExecutionOptions, Gate, build
from zooflow.errors import ConfigError
from zooflow.runconfig import RunConfig, SweepConfig
from zooflow.store import open_store

DemoClassesOpt = Annotated[int, typer.Option(help="--demo: classes to generate", rich_help_panel="data")]
DemoPerClassOpt = Annotated[int, typer.Option(help="--demo: images per class", rich_help_panel="data")]
RunnerOpt = Annotated[str, typer.Option(help="threads | dask (tasks on a Dask cluster)", rich_help_panel="execution")]
DaskAddressOpt = Annotated[
    str | None,
    typer.Option(help="Dask scheduler, e.g. tcp://host:8786 [default: a local cluster]", rich_help_panel="execution"),
]
RemeasureOpt = Annotated[
    bool,
    typer.Option(
        help="benchmark again even if this host already measured the compiled model", rich_help_panel="toolchain"
    ),
]
CheckpointOpt = Annotated[
    str | None, typer.Option(help="checkpoint URL or path [default: the index's published weights]")
]
Sha256Opt = Annotated[str | None, typer.Option(help="expected SHA-256 (or 8+ digit prefix) of the checkpoint")]
DemoOpt = Annotated[bool, typer.Option(help="offline: locally initialised weights, generated data")]
SeedOpt = Annotated[int, typer.Option(help="seed for demo weights and sampling")]
OpsetOpt = Annotated[int, typer.Option(help="ONNX opset (mmcls models need 11+)")]
LogitsOpt = Annotated[bool, typer.Option(help="export logits instead of softmax probabilities")]
DynamicBatchOpt = Annotated[
    bool | None, typer.Option(help="export with a symbolic batch dimension [default: the toolchain's choice]")
]
GateOpt = Annotated[
    list[str] | None,
    typer.Option(
        help="metric goal METRIC:LIMIT=VALUE (repeatable), e.g. top1:max_drop_vs_reference=1.5 "
        "[default: int8 1.5, fp16 0.5 top-1 points below fp32]",
        rich_help_panel="evaluation",
    ),
]
NoGatesOpt = Annotated[bool, typer.Option("--no-gates", help="record no gates at all", rich_help_panel="evaluation")]
ProbeImagesOpt = Annotated[
    int, typer.Option(help="images also run through PyTorch (0 = none)", rich_help_panel="evaluation")
]
ParityOpt = Annotated[
    bool,
    typer.Option(help="also measure the card's DSP preprocessing vs the framework's", rich_help_panel="evaluation"),
]


def _launch(runner_name: str, config: Any, runner: str, dask_address: str | None) -> dict[str, Any]:
    """Check what can be checked before Prefect starts (store writable, toolchain present, runner
    options), clean staging left by killed runs, then run the flow."""
    from zooflow import storecheck, toolchains

    store = open_store(config.store_url())
    removed = [a for a in storecheck.clean_staging(store) if a.kind == "staging" and a.done]
    if removed:
        err.print(f"removed {len(removed)} staging folder(s) left by runs that were killed", highlight=False)
    toolchains.require(config.toolchain, config.toolchain_options)
    execution = build(ExecutionOptions, runner=runner, dask_address=dask_address)
    result: dict[str, Any] = load_runner(runner_name)(config, execution)
    return result


def _print_config(flow: str, config: Any, o: dict[str, Any]) -> None:
    """Print the flow's parameter as its Prefect form would store it, and the runner, then stop: what a
    run with these options would do, checked (a bad value exits 2 as the run would) but not started."""
    execution = build(ExecutionOptions, runner=o["runner"], dask_address=o["dask_address"])
    values = form.as_form(type(config), config.model_dump(mode="json"))  # tri-states as auto/on/off
    doc = {"flow": flow, "config": values, "execution": execution.model_dump(mode="json")}
    print(json.dumps(doc, indent=None if o["as_json"] else 2))


def _pipeline_values(o: dict[str, Any]) -> dict[str, Any]:
    """The `PipelineConfig` fields from the options `run` and `sweep` share (`o`: the command's parameters),
    so a sweep takes every data, export, calibration, toolchain, benchmark and gate option a run takes."""
    return {
        "model": o["model"],
        "checkpoint": o["checkpoint"],
        "checkpoint_sha256": o["sha256"],
        "trust_checkpoint": o["trust_checkpoint"],
        "demo": o["demo"],
        "seed": o["seed"],
        "export": {"opset": o["opset"], "logits": o["logits"], "dynamic_batch": o["dynamic_batch"]},
        "data": {
            **data_values(o["data"], o["labels"], o["names"], o["layout"], o["limit"], o["skip_corrupt"], o["rehash"]),
            "demo": {"classes": o["demo_classes"], "per_class": o["demo_per_class"]},
        },
        "calibration": {"per_class": o["per_class"], "allow_short": o["allow_short"]},
        "npz": {"shard_size": o["shard_size"]},
        "toolchain": o["toolchain"],
        "toolchain_options": {
            "vamc_generation": o["vamc_generation"],
            "vamc_calibrate_range": o["vamc_calibrate_range"],
            "int8_weights": o["int8_weights"],
            **vastai_values(o["vamp_arg"], o["device"], o["pre_resize"]),
        },
        "benchmark": {"batch_sizes": o["bench_batch"], "threads": o["bench_threads"], "fresh": o["remeasure"]},
        "evaluation": {
            "gates": () if o["no_gates"] else ([Gate.parse(g) for g in o["gate"]] if o["gate"] else None),
            "probe_images": o["probe_images"],
            "preprocess_parity": o["parity"],
            "sensitivity_images": o["sensitivity_images"],
        },
        "store": o["store"],
    }


def _pipeline_options(
    model: ModelOpt = registry.DEFAULT_MODEL,
    checkpoint: CheckpointOpt = None,
    sha256: Sha256Opt = None,
    trust_checkpoint: TrustOpt = False,
    demo: DemoOpt = False,
    seed: SeedOpt = 0,
    opset: OpsetOpt = 11,
    logits: LogitsOpt = False,
    dynamic_batch: DynamicBatchOpt = None,
    data: DataOpt = None,
    labels: LabelsOpt = None,
    names: NamesOpt = None,
    layout: LayoutOpt = "auto",
    limit: LimitOpt = None,
    skip_corrupt: SkipCorruptOpt = False,
    rehash: RehashOpt = False,
    per_class: PerClassOpt = 1,
    allow_short: AllowShortOpt = False,
    shard_size: ShardSizeOpt = 1000,
    toolchain: ToolchainOpt = "onnxruntime",
    keep_float: KeepFloatOpt = None,
    per_tensor: PerTensorOpt = False,
    int8_weights: Int8WeightsOpt = "auto",
    vamc_generation: VamcOpt = "v2",
    vamc_calibrate_range: VamcRangeOpt = None,
    vamp_arg: VampArgOpt = None,
    device: DeviceOpt = None,
    pre_resize: PreResizeOpt = None,
    bench_batch: BenchBatchOpt = "1,8",
    bench_threads: BenchThreadsOpt = "1",
    remeasure: RemeasureOpt = False,
    gate: GateOpt = None,
    no_gates: NoGatesOpt = False,
    probe_images: ProbeImagesOpt = 16,
    parity: ParityOpt = True,
    sensitivity_images: SensitivityOpt = 100,
    demo_classes: DemoClassesOpt = 1000,
    demo_per_class: DemoPerClassOpt = 2,
    runner: RunnerOpt = "threads",
    dask_address: DaskAddressOpt = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
    print_config: PrintConfigOpt = False,
) -> None:
    """The options `run` and `sweep` share, declared once: only its signature is used."""


def _with_pipeline_options(command: Callable[..., None]) -> Callable[..., None]:
    """Give ``command(<its own options>, **options)`` every option of `_pipeline_options` after its own.

    Typer reads a command's options from its ``__signature__``; one declaration for both commands
    means a sweep can never lack an option a run has (a sweep once could not take --sha256).
    """
    own = [p for p in inspect.signature(command, eval_str=True).parameters.values() if p.kind is not p.VAR_KEYWORD]
    shared = inspect.signature(_pipeline_options, eval_str=True).parameters.values()
    setattr(command, "__signature__", inspect.Signature([*own, *shared]))  # noqa: B010 (a function attribute)
    return command


@app.command(
    epilog="zooflow run --demo --json\n\nzooflow run --model shufflenet-v1-1x_16xb64_in1k --store /data/zooflow"
)
@_with_pipeline_options
def run(quant: RunQuantOpt = None, **options: Any) -> None:
    """Run the deploy_classifier flow: dataset, fetch, export, calibration, npz, compile, run, benchmark, evaluate, report."""
    with failing(options["as_json"], "the run"):
        config = build(
            RunConfig,
            quant=quant_value(quant, options["per_tensor"], options["toolchain"], options["keep_float"]),
            **_pipeline_values(options),
        )
        if options["print_config"]:
            return _print_config("deploy-classifier", config, options)
        result = _launch("deploy", config, options["runner"], options["dask_address"])
    finish_flow(result, options["as_json"], _print_stages)


@app.command(
    epilog="zooflow sweep --demo\n\nzooflow sweep --data /data/imagenet/val --labels val_label.txt "
    "--presets fp16,int8-max,int8-mse --toolchain vastai\n\nzooflow sweep --demo --presets int8-max,int8-mixed"
)
@_with_pipeline_options
def sweep(
    presets: Annotated[
        str | None,
        typer.Option(help="comma-separated presets [default: fp32, fp16, int8-max/percentile/kl_divergence/mse]"),
    ] = None,
    **options: Any,
) -> None:
    """Run the quant_sweep flow: every preset on one model and dataset, one comparison table and Pareto plot."""
    keep_float = options["keep_float"]
    with failing(options["as_json"], "the sweep"):
        config = build(
            SweepConfig,
            presets=tuple(p.strip() for p in presets.split(",") if p.strip()) if presets is not None else None,
            per_channel=not options["per_tensor"],
            **({"keep_float": keep_float_value(keep_float)} if keep_float is not None else {}),
            **_pipeline_values(options),
        )
        if options["print_config"]:
            return _print_config("quant-sweep", config, options)
        result = _launch("sweep", config, options["runner"], options["dask_address"])
    finish_flow(result, options["as_json"], _print_sweep)


@app.command(epilog="zooflow nightly --matrix deployments/regression-demo.yaml --night 2026-11-28")
def nightly(
    matrix: Annotated[str, typer.Option(help="regression matrix (YAML)")] = "deployments/regression.yaml",
    night: Annotated[str | None, typer.Option(help="YYYY-MM-DD [default: today, UTC]")] = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the nightly_regression flow once: the matrix, tonight's history entry and the trend report."""
    from zooflow.runconfig import NightlyConfig, RegressionMatrix

    with failing(as_json, "the nightly run"):
        config = build(NightlyConfig, matrix=matrix, night=night, store=store)
        RegressionMatrix.load(config.matrix).configs(store=store)  # a bad matrix fails before Prefect starts
        result = load_runner("nightly")(config)
    finish_flow(
        result, as_json, lambda r: err.print(f"night {r['night']} of {r['matrix']}: no regressions", highlight=False)
    )


@app.command(
    name="team-setup",
    epilog="PREFECT_API_URL=http://SERVER:4200/api zooflow team-setup --webhook https://chat.example.com/hooks/abc",
)
def team_setup(
    webhook: Annotated[
        str | None, typer.Option(help="incoming-webhook URL (Slack, Teams, Mattermost) for failed or crashed nightlies")
    ] = None,
    crash_after: Annotated[
        int, typer.Option(help="seconds without a heartbeat before a run is marked Crashed (and re-run once)")
    ] = 90,
    as_json: JsonOpt = False,
) -> None:
    """Set up the team's Prefect server: crashed runs are marked and re-run once, failed nightlies are posted."""
    with failing(as_json, "the team setup"):
        if webhook is not None and not webhook.startswith(("http://", "https://")):
            raise ConfigError(
                f"--webhook {webhook!r} is not an http(s) URL", "pass the incoming-webhook URL your chat gives"
            )
        result = load_runner("team")(webhook, crash_after)
    for name in result["automations"]:
        err.print(f"automation: {name}", highlight=False)
    if result["notification_block"]:
        err.print(f"notification block: {result['notification_block']} (CustomWebhook)", highlight=False)
    if as_json:
        print(json.dumps({"status": "completed", **result}))


@app.command(epilog="zooflow serve\n\nzooflow serve --only one-off --only quant-sweep")
def serve(
    only: Annotated[list[str] | None, typer.Option(help="serve only these deployments (repeatable)")] = None,
    file: Annotated[Path, typer.Option(help="deployments file")] = Path("deployments/prefect.yaml"),
) -> None:
    """Serve the deployments of deployments/prefect.yaml from this process (one machine; see README for a team)."""
    with failing():
        load_runner("serve")(file, only or [])


def finish_flow(result: dict[str, Any], as_json: bool, on_success: Any) -> None:
    """Print a flow run's outcome (and its JSON); a failed gate exits 1, a problem to fix exits 2."""
    completed = result.get("status") == "completed"
    if completed:
        for warning in result.get("warnings") or []:
            err.print(f"[bold yellow]warning:[/] {warning}", highlight=False)
        on_success(result)
    else:
        err.print(f"[bold red]flow run {result.get('status')}:[/] {result.get('error')}", highlight=False)
        if result.get("fix"):
            err.print(f"[bold]fix:[/] {result['fix']}", highlight=False)
    if as_json:
        print(json.dumps(result))
    if not completed:
        raise typer.Exit(int(result.get("exit_code") or 1))


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
        "SQNR dB",
        "int8 gap dB",
        "images/s b8/t1",
        "vs fp32",
        "best images/s",
        "at (best setting)",
        "p99 ms",
        "gates",
        title="quant-sweep",
    )
    for row in result["table"]:
        cells = {
            k: f"{v:.2f}"
            if isinstance(v, float | int) and not isinstance(v, bool)
            else (v if isinstance(v, str) else "")
            for k, v in row.items()
        }
        # the same marks as sweep.md: a warned preset's number is not one to trust as it stands
        cells["sqnr_db"] += " (ranges clip)" if row.get("range_warning") else ""
        cells["int8_gap_db"] += " (saturates)" if row.get("int8_gap_warning") else ""
        table.add_row(
            row["preset"],
            *(
                cells[k]
                for k in ("top1", "top5", "drop_top1", "agreement", "sqnr_db", "int8_gap_db", "throughput_fixed")
            ),
            f"{cells['fixed_vs_fp32']}x" if cells["fixed_vs_fp32"] else "",
            cells["throughput"],
            row["bench_setting"] or "n/a",
            cells["latency_p99_ms"],
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
