"""Data commands: demo-data, check-data, calib, npz.

Every ``--out`` folder is written through `zooflow.outdir`: only a new or empty folder, or one
zooflow wrote before (whose old files, and only those, are replaced).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from zooflow import outdir, registry
from zooflow.cli.common import (
    AllowShortOpt,
    JsonOpt,
    LabelsOpt,
    LayoutOpt,
    LimitOpt,
    ModelOpt,
    NamesOpt,
    PerClassOpt,
    RehashOpt,
    ShardSizeOpt,
    SkipCorruptOpt,
    StoreOpt,
    WorkersOpt,
    app,
    data_values,
    err,
    failing,
    inputs_of,
    ref_dict,
)
from zooflow.config import CalibrationOptions, DataSpec, DemoDataSpec, NpzOptions, build
from zooflow.store import open_store


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

    with failing(as_json, "demo-data"):
        spec = build(DemoDataSpec, classes=classes, per_class=per_class, layout=layout)
        outdir.OutputFolder(out_dir, "demo-data", []).check()  # before minutes of work, not after
        with tempfile.TemporaryDirectory(prefix="zooflow-demo-") as tmp:
            summary = demo.write_demo_dataset(
                Path(tmp), classes=spec.classes, per_class=spec.per_class, layout=spec.layout, seed=seed
            )
            outdir.place(out_dir, "demo-data", outdir.files_below(Path(tmp)), move=True, summary=summary)
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
    rehash: RehashOpt = False,
    workers: WorkersOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Check a dataset: layout, labels, missing/unlabelled/duplicate files, and (with --decode) corrupt images."""
    from zooflow import datasets

    with failing(as_json, "check-data"):
        spec = build(DataSpec, **data_values(data, labels, names, layout, None, False, rehash))
        dataset = datasets.scan(spec)
        check = datasets.check_images(dataset, workers=workers or os.cpu_count() or 1) if decode else None
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

    with failing(as_json, "calib"):
        spec = build(DataSpec, **data_values(data, labels, names, layout, None, skip_corrupt))
        options = build(CalibrationOptions, per_class=per_class, allow_short=allow_short)
        st = open_store(store)
        inputs = inputs_of(st, data=data, labels=labels, names=names)
        outdir.OutputFolder(out_dir, "calib", [], inputs).check()  # before any work, not after
        dataset = datasets.scan(spec, hash_cache=st.local_cache_dir / "file-hashes")
        inputs += inputs_of(labels=dataset.labels_file)
        index = datasets.publish_index(dataset, st, source={"path": data})
        ref = calibration.build_calibration(
            dataset, st, options, seed=seed, skip_corrupt=skip_corrupt, inputs={"dataset": index}
        )
        folder = st.directory(ref)
        sources = {f.removeprefix("images/"): folder / f for f in ref.files if f.startswith("images/")}
        outdir.place(
            out_dir,
            "calib",
            {**sources, "calibration.json": folder / "calibration.json"},
            inputs=inputs,
            artifact=ref.digest,
        )
    err.print(f"calibration {ref.label()}: {ref.meta['count']} images -> {out_dir}", highlight=False)
    if as_json:
        print(json.dumps({**ref_dict(ref), "count": ref.meta["count"], "out": str(out_dir)}))


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

    with failing(as_json, "npz"):
        spec = build(DataSpec, **data_values(data, labels, names, layout, limit, skip_corrupt))
        opts = build(
            NpzOptions,
            format=npz_format,
            shard_size=shard_size,
            pre_resize=pre_resize,
            **({"workers": workers} if workers else {}),
        )
        st = open_store(store)
        inputs = inputs_of(st, data=data, labels=labels, names=names)
        outdir.OutputFolder(out_dir, "npz", [], inputs).check()  # before any work, not after
        written = (datalist or out_dir / "datalist.txt").expanduser().resolve()
        if not written.is_relative_to(out_dir.expanduser().resolve()):
            for path in (written, npz_stage.sidecar_path(written)):
                outdir.check_file(path, "npz", inputs, "--datalist")
        dataset = datasets.scan(spec, hash_cache=st.local_cache_dir / "file-hashes").limited(limit)
        inputs += inputs_of(labels=dataset.labels_file)
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
        sources = {file: st.directory(shard) / file for _, _, _, shard, file in npz_stage.records(st, ref)}
        with tempfile.TemporaryDirectory(prefix="zooflow-datalist-") as tmp:
            lists = {written: npz_stage.write_datalist(st, ref, Path(tmp) / written.name, root=out_dir)}
            lists[npz_stage.sidecar_path(written)] = npz_stage.sidecar_path(lists[written])
            inside = {t: s for t, s in lists.items() if t.is_relative_to(out_dir.expanduser().resolve())}
            for target, source in inside.items():
                sources[target.relative_to(out_dir.expanduser().resolve()).as_posix()] = source
            outdir.place(out_dir, "npz", sources, inputs=inputs, artifact=ref.digest)
            for target, source in lists.items():
                if target not in inside:  # a datalist the user placed elsewhere: replaced only if zooflow wrote it
                    outdir.write_file(target, source.read_bytes(), "npz", inputs, "--datalist")
    err.print(f"npz {ref.label()}: {ref.meta['count']} files in {out_dir}, datalist {written}", highlight=False)
    if as_json:
        print(json.dumps({**ref_dict(ref), "count": ref.meta["count"], "out": str(out_dir), "datalist": str(written)}))
