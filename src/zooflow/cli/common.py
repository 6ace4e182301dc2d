"""What every command group shares: the Typer app, consoles, option types and error handling."""

from __future__ import annotations

import contextlib
import errno
import importlib.metadata
import json
import os
import sys
from collections.abc import Iterator
from typing import Annotated, Any

import typer
from rich.console import Console

from zooflow import durable
from zooflow.config import MIXED_PRESET, STORE_ENV, QuantSpec
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
  zooflow artifacts verify [--full]
  zooflow artifacts gc [--apply]
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
artifacts_app = typer.Typer(
    help="Inspect, check and clean up the artifact store.", no_args_is_help=True, rich_markup_mode="rich"
)
app.add_typer(artifacts_app, name="artifacts")

# Messages soft-wrap (paths stay whole for copy-paste); tables get room when piped to a file.
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, soft_wrap=True, width=None if sys.stderr.isatty() else 200)

StoreOpt = Annotated[
    str | None,
    typer.Option("--store", help=f"artifact store path or fsspec URL [default: ${STORE_ENV} or a per-user data dir]"),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON object as the last line of stdout")]
PrintConfigOpt = Annotated[
    bool,
    typer.Option(
        "--print-config",
        help="print the flow's config (as the Prefect form stores it) and the runner, checked, then stop without running",
    ),
]
ModelOpt = Annotated[str, typer.Option("--model", "-m", help="model name from mmcls's model index")]
TrustOpt = Annotated[
    bool,
    typer.Option(
        "--trust-checkpoint",
        help="load a checkpoint that needs full unpickling: this RUNS CODE named in the file, so only for files you trust",
    ),
]
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
RehashOpt = Annotated[
    bool,
    typer.Option(help="re-hash every image whatever its stat stamp (finds bit rot)", rich_help_panel="data"),
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
RunQuantOpt = Annotated[
    str | None,
    typer.Option(
        "--quant",
        help="fp32 | fp16 | int8-max | int8-percentile | int8-kl_divergence | int8-mse | int8-mixed "
        "[default: fp32; with --toolchain vastai the seed's int8-percentile]",
        rich_help_panel="toolchain",
        show_default=False,
    ),
]
VampArgOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--vamp-arg",
        help="vastai: an extra vamp argument (repeatable), e.g. --vamp-arg=-s --vamp-arg=[3,224,224]",
        rich_help_panel="toolchain",
    ),
]
DeviceOpt = Annotated[
    int | None, typer.Option("--device", help="vastai: vamp -d [default: not passed]", rich_help_panel="toolchain")
]
PreResizeOpt = Annotated[
    str | None,
    typer.Option(
        "--pre-resize",
        help="vastai: resize images on the host to HEIGHTxWIDTH before vamp [default: full resolution, as image2npz]",
        rich_help_panel="toolchain",
    ),
]
KeepFloatOpt = Annotated[
    str | None,
    typer.Option(
        "--keep-float",
        help="int8-mixed: the K most sensitive layers kept in float, or auto (the smallest K meeting the "
        "agreement gate, default >= 99% top-1 agreement with fp32) [default: auto]",
        rich_help_panel="toolchain",
    ),
]
SensitivityOpt = Annotated[
    int,
    typer.Option(
        help="int8: calibration images the per-layer sensitivity ranking runs on (0 = no ranking)",
        rich_help_panel="evaluation",
    ),
]
PerTensorOpt = Annotated[
    bool, typer.Option(help="int8: per-tensor instead of per-channel weight scales", rich_help_panel="toolchain")
]
Int8WeightsOpt = Annotated[
    str,
    typer.Option(
        help="onnxruntime int8 weights: auto (exact on this CPU) | int8 | int8-reduced (7-bit) | uint8",
        rich_help_panel="toolchain",
    ),
]
VamcOpt = Annotated[
    str, typer.Option(help="vastai: v2 (`vamc build`) | v3 (`vamc compile`)", rich_help_panel="toolchain")
]
VamcRangeOpt = Annotated[
    float | None,
    typer.Option(
        help="vastai v3 int8: write calibrate_range (a fraction, e.g. 0.9999) into vamc's quantize block; published "
        "only in the zoo's NLP configs, so written only when passed",
        rich_help_panel="toolchain",
    ),
]
BenchBatchOpt = Annotated[str, typer.Option(help="benchmark batch sizes, comma-separated", rich_help_panel="toolchain")]
BenchThreadsOpt = Annotated[
    str, typer.Option(help="benchmark thread counts (onnxruntime), comma-separated", rich_help_panel="toolchain")
]


def fail(exc: ZooflowError, as_json: bool = False) -> None:
    """Print the problem and the fix (no traceback) and exit with status 2."""
    err.print(f"[bold red]error:[/] {exc.problem}", highlight=False)
    if exc.fix:
        err.print(f"[bold]fix:[/] {exc.fix}", highlight=False)
    if as_json:
        print(json.dumps({"status": "failed", "error": str(exc)}))
    raise typer.Exit(2)


@contextlib.contextmanager
def failing(as_json: bool = False, doing: str = "zooflow") -> Iterator[None]:
    """Run a command body: a `ZooflowError`, or a full disk, ends it with a readable message and exit 2."""
    try:
        yield
    except ZooflowError as exc:
        fail(exc, as_json)
    except OSError as exc:
        if durable.is_disk_full(exc):
            fail(durable.disk_full_error(exc, exc.filename or ".", doing), as_json)
        if exc.errno not in (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENAMETOOLONG, errno.ELOOP):
            raise
        where = f" {exc.filename}" if exc.filename else ""
        fixes = {
            errno.EROFS: "that file system is mounted read-only: pass paths (--out, --store) on a writable one",
            errno.ENAMETOOLONG: "use a shorter name (most file systems allow 255 bytes per name)",
            errno.ELOOP: "a link there points (through other links) back at itself: remove or fix it",
        }
        fail(
            ConfigError(
                f"{doing} cannot use{where}: {exc.strerror}; nothing after that was changed",
                fixes.get(exc.errno or 0, "fix the permissions of that path, or pass another one"),
            ),
            as_json,
        )


def keep_float_value(text: str | None) -> int | str | None:
    """``--keep-float``: ``auto`` or a whole number of layers (checked further by the config)."""
    if text is None or text.strip().lower() == "auto":
        return None if text is None else "auto"
    try:
        return int(text)
    except ValueError:
        raise ConfigError(
            f"--keep-float {text!r} is neither a number of layers nor auto", "e.g. --keep-float 2 or --keep-float auto"
        ) from None


def quant_value(
    preset: str | None, per_tensor: bool, toolchain: str = "onnxruntime", keep_float: str | None = None
) -> Any:
    """A preset name, or the preset's spec with per-tensor weights or int8-mixed's K; no preset: the
    toolchain's default."""
    if preset is None:
        from zooflow.runconfig import VASTAI_DEFAULT_PRESET

        preset = VASTAI_DEFAULT_PRESET if toolchain == "vastai" else "fp32"
    kept = keep_float_value(keep_float)
    if kept is not None and preset != MIXED_PRESET:
        raise ConfigError(
            f"--keep-float applies to --quant {MIXED_PRESET}, not {preset}", f"add --quant {MIXED_PRESET}"
        )
    if not per_tensor and kept is None:
        return preset
    try:
        spec = QuantSpec.from_preset(preset, per_channel=not per_tensor)
    except ConfigError:
        return preset  # let validation report the bad preset with the field name
    return spec.model_dump() | ({"keep_float": kept} if kept is not None else {})


def vastai_values(vamp_arg: list[str] | None, device: int | None, pre_resize: str | None) -> dict[str, Any]:
    """The vastai `ToolchainOptions` fields from their options (absent ones left to the defaults)."""
    values: dict[str, Any] = {"vamp_args": tuple(vamp_arg or ()), "device": device}
    if pre_resize is not None:
        values["pre_resize"] = pre_resize
    return values


def data_values(
    data: str | None,
    labels: str | None,
    names: str | None,
    layout: str,
    limit: int | None,
    skip_corrupt: bool,
    rehash: bool = False,
) -> dict[str, Any]:
    """The `DataSpec` fields from the data options."""
    return {
        "path": data,
        "labels": labels,
        "names": names,
        "layout": layout,
        "limit": limit,
        "skip_corrupt": skip_corrupt,
        "rehash": rehash,
    }


def inputs_of(
    store: Store | None = None, **paths: str | os.PathLike[str] | None
) -> list[tuple[str, str | os.PathLike[str] | None]]:
    """A command's inputs for `zooflow.outdir` (option name -> path; the local store's folder), which
    no --out may overlap: ``inputs_of(st, data=..., labels=...)`` names them ``--data``, ``--labels``."""
    found: list[tuple[str, str | os.PathLike[str] | None]] = [
        (f"--{name.replace('_', '-')}", path) for name, path in paths.items()
    ]
    if store is not None and store.is_local:
        found.append(("the artifact store", store.root))
    return found


def ref_dict(ref: ArtifactRef) -> dict[str, Any]:
    """The JSON form of an artifact reference."""
    return {"kind": ref.kind, "digest": ref.digest, "name": ref.name, "version": ref.version, "files": list(ref.files)}


def open_existing(store: str | None) -> Store:
    """A store that must already exist (read commands)."""
    return open_store(store, create=False)


def load_runner(name: str) -> Any:
    """The flow runner registered under the ``zooflow.runners`` entry point (the core never imports Prefect)."""
    found = [ep for ep in importlib.metadata.entry_points(group="zooflow.runners") if ep.name == name]
    if not found:
        raise ConfigError(
            f"no flow runner {name!r} is installed (the zooflow.runners entry point is missing)",
            "install the whole project (`uv sync`), which ships the Prefect flows",
        )
    return found[0].load()
