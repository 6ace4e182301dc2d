"""Model commands: fetch, export, compile, bench, export-outputs, models."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from zooflow import durable, outdir, registry
from zooflow.cli.common import (
    BenchBatchOpt,
    BenchThreadsOpt,
    Int8WeightsOpt,
    JsonOpt,
    ModelOpt,
    PerTensorOpt,
    QuantOpt,
    StoreOpt,
    ToolchainOpt,
    TrustOpt,
    VamcOpt,
    VamcRangeOpt,
    app,
    err,
    failing,
    inputs_of,
    open_existing,
    out,
    ref_dict,
)
from zooflow.config import BenchmarkSpec, ExportOptions, ModelSource, QuantSpec, ToolchainOptions, build
from zooflow.errors import ConfigError
from zooflow.store import ArtifactRef, Store, open_store


@app.command(
    epilog="zooflow fetch --model shufflenet-v1-1x_16xb64_in1k\n\nzooflow fetch --checkpoint https://host/model-5d6cec73.pth"
)
def fetch(
    model: ModelOpt = registry.DEFAULT_MODEL,
    checkpoint: Annotated[str | None, typer.Option(help="URL or path [default: the index's published weights]")] = None,
    sha256: Annotated[str | None, typer.Option(help="expected SHA-256 (or 8+ digit prefix)")] = None,
    trust_checkpoint: TrustOpt = False,
    demo: Annotated[bool, typer.Option(help="locally initialise weights instead of downloading")] = False,
    seed: Annotated[int, typer.Option(help="seed for --demo weights")] = 0,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Fetch a checkpoint into the store: resumable download, SHA-256 verified, checked to load (without running code)."""
    from zooflow import fetch as fetch_stage

    with failing(as_json, "the fetch stage"):
        config = build(
            ModelSource, model=model, checkpoint=checkpoint, checkpoint_sha256=sha256, demo=demo, seed=seed, store=store
        )
        st = open_store(config.store_url())
        ref = fetch_stage.fetch_checkpoint(
            config.checkpoint_source(),
            st,
            model=model,
            sha256=config.checkpoint_sha256,
            seed=seed,
            trust=trust_checkpoint,
        )
    if ref.meta.get("unverified"):
        err.print(f"[bold yellow]warning:[/] {ref.meta['unverified']}", highlight=False)
    err.print(f"checkpoint {ref.label()} -> {st.path(ref)}", highlight=False)
    if as_json:
        print(json.dumps({**ref_dict(ref), "verified": ref.meta.get("verified", False)}))


@app.command(epilog="zooflow export --checkpoint ./shufflenet_v1.pth --out shufflenet_v1.onnx")
def export(
    checkpoint: Annotated[str, typer.Option(help="checkpoint URL or path (fetched and verified first)")],
    out_file: Annotated[Path, typer.Option("--out", help="where to write the .onnx file")],
    model: ModelOpt = registry.DEFAULT_MODEL,
    sha256: Annotated[str | None, typer.Option(help="expected SHA-256 of the checkpoint")] = None,
    trust_checkpoint: TrustOpt = False,
    opset: Annotated[int, typer.Option(help="ONNX opset (mmcls models need 11+)")] = 11,
    logits: Annotated[bool, typer.Option(help="export logits instead of softmax probabilities")] = False,
    dynamic_batch: Annotated[bool, typer.Option(help="symbolic batch dimension")] = False,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Export a checkpoint to ONNX (checked with onnx.checker and against PyTorch), store it, copy it to --out."""
    from zooflow import export as export_stage
    from zooflow import fetch as fetch_stage

    with failing(as_json, "the export stage"):
        options = build(ExportOptions, opset=opset, logits=logits, dynamic_batch=dynamic_batch)
        config = build(ModelSource, model=model, checkpoint=checkpoint, checkpoint_sha256=sha256, store=store)
        st = open_store(config.store_url())
        inputs = inputs_of(st, checkpoint=checkpoint if _is_path(checkpoint) else None)
        outdir.check_file(out_file, "export", inputs)  # before fetching and exporting, not after
        ckpt = fetch_stage.fetch_checkpoint(
            config.checkpoint_source(), st, model=model, sha256=config.checkpoint_sha256, trust=trust_checkpoint
        )
        ref = export_stage.export_checkpoint(ckpt, st, model=model, options=options, trust=trust_checkpoint)
        try:
            outdir.write_file(out_file, st.path(ref).read_bytes(), "export", inputs)
        except OSError as exc:
            if durable.is_disk_full(exc):
                raise  # reported as a full disk, with the space left
            raise ConfigError(
                f"cannot write {out_file}: {exc.strerror}", "pass an --out path in a writable directory"
            ) from None
    parity = ref.meta["parity"]
    err.print(
        f"onnx {ref.label()} -> {out_file} (max abs diff vs PyTorch {parity['max_abs_diff']:.3g})", highlight=False
    )
    if as_json:
        print(json.dumps({**ref_dict(ref), "out": str(out_file), "parity": parity}))


def _is_path(given: str | None) -> bool:
    """Whether an option that takes a path or a store reference names an existing path."""
    return given is not None and Path(given).expanduser().exists()


def _onnx_ref(st: Store, onnx: str, model: str) -> ArtifactRef:
    """A store reference, or an ONNX file published into the store (its zooflow metadata, or --model's)."""
    path = Path(onnx).expanduser()
    if not path.is_file():
        return st.resolve(onnx)
    import onnx as onnx_lib

    from zooflow import models as models_mod

    try:
        proto = onnx_lib.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf raises its own types for a file that is not ONNX
        raise ConfigError(
            f"{path} is not a readable ONNX model ({type(exc).__name__}: {str(exc)[:120]})",
            "pass an .onnx file (e.g. from `zooflow export`) or a store reference",
        ) from None
    props = {p.key: p.value for p in proto.metadata_props}
    preprocess = (
        json.loads(props["zooflow.preprocess"])
        if "zooflow.preprocess" in props
        else models_mod.preprocess_spec(registry.resolve(model))
    )
    dynamic = not isinstance(proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value or None, int)
    output = props.get("zooflow.output", "probs")
    with st.staging("import") as staged:
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
    with st.staging("import") as staged:
        shutil.copyfile(folder / "calibration.json", staged / "calibration.json")
        shutil.copytree(folder, staged / "images", ignore=shutil.ignore_patterns("calibration.json", outdir.MARKER))
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
    int8_weights: Int8WeightsOpt = "auto",
    vamc_generation: VamcOpt = "v2",
    vamc_calibrate_range: VamcRangeOpt = None,
    model: ModelOpt = registry.DEFAULT_MODEL,
    out_dir: Annotated[Path | None, typer.Option("--out", help="copy the compiled files here")] = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Compile an ONNX model with a toolchain (onnxruntime: fp32/fp16/int8; vastai: vamc fp16/int8)."""
    from zooflow import toolchains

    with failing(as_json, "the compile stage"):
        spec = build(QuantSpec, **QuantSpec.from_preset(quant, per_channel=not per_tensor).model_dump())
        tc = toolchains.require(
            toolchain,
            build(
                ToolchainOptions,
                vamc_generation=vamc_generation,
                vamc_calibrate_range=vamc_calibrate_range,
                int8_weights=int8_weights,
            ),
        )
        st = open_store(store)
        inputs = inputs_of(st, **{k: v for k, v in {"onnx": onnx, "calibration": calibration}.items() if _is_path(v)})
        if out_dir is not None:
            outdir.OutputFolder(out_dir, "compile", [], inputs).check()  # before compiling, not after
        onnx_ref = _onnx_ref(st, onnx, model)
        calib_ref = _calibration_ref(st, calibration)
        if spec.dtype == "int8" and calib_ref is None:
            raise ConfigError(
                "int8 needs a calibration set", "pass --calibration DIR (from `zooflow calib`) or a store reference"
            )
        ref = tc.compile(onnx_ref, calib_ref, spec, st)
        if out_dir is not None:
            folder = st.directory(ref)
            outdir.place(out_dir, "compile", {f: folder / f for f in ref.files}, inputs=inputs, artifact=ref.digest)
    err.print(f"compiled {ref.label()}" + (f" -> {out_dir}" if out_dir else ""), highlight=False)
    if as_json:
        print(json.dumps({**ref_dict(ref), "meta": ref.meta}))


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

    with failing(as_json, "the benchmark"):
        spec = build(BenchmarkSpec, batch_sizes=batch, threads=threads, trials=trials, iterations=iterations)
        tc = toolchains.require(toolchain)
        st = open_store(store)
        ref = tc.benchmark(st.resolve(compiled), spec, st)
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

    with failing(as_json, "export-outputs"):
        st = open_existing(store)
        ref = st.resolve(outputs_ref)
        if ref.kind != "outputs":
            raise ConfigError(
                f"{outputs_ref} is a {ref.kind} artifact, not outputs", "`zooflow artifacts list outputs` shows them"
            )
        count = outputs_mod.export_vamp_layout(st, ref, out_dir)
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
