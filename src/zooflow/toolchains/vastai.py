"""The Vastai toolchain: ``vamc`` compiles, ``vamp`` runs and profiles, on a host with the card.

Contract: ``docs`` of the project (shared/docs/vastai-toolchain.md). Configs are written from the
typed models below, never by hand: the public zoo ships misspelled keys (``alibrate_mode``)
that vamc silently ignores, and a schema makes that impossible here. Where the public material
does not say a value (marked "inferred"), the choice is documented next to it.

Every tool run: an argument list (no shell), a timeout (the whole process group is killed),
stdout+stderr kept. A non-zero exit, a timeout, a missing or empty output file, or output that
cannot be parsed is a `ToolError` that carries the log tail; the log itself is stored as a
``tool-log`` artifact so the attempt can be inspected, and nothing earlier stages produced is lost.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict

from zooflow import provenance
from zooflow.config import BenchmarkSpec, ExportOptions, QuantSpec, ToolchainOptions
from zooflow.npz import NpzParams
from zooflow.store import ArtifactRef, Store
from zooflow.toolchains import Availability, ToolError, compiled_name, quant_label
from zooflow.toolchains import outputs as outputs_mod

COMPILE_STAGE = "compile"
COMPILE_VERSION = "1"
BENCH_STAGE = "benchmark"
BENCH_VERSION = "1"
_OUTPUT_RE = re.compile(r"^output_(\d{6})\.npz$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ------------------------------------------------------------------ vamc v2 (`vamc build`)
class V2Model(_Strict):
    name: str
    inputs: dict[str, list[int]]
    checkpoint: str


class V2Engine(_Strict):
    type: Literal["vacc", "debug"] = "vacc"
    common: dict[Literal["do_quantization"], bool]
    add_extra_ops_to_graph: dict[Literal["type"], Literal["softmax"] | None] = {"type": None}
    calibration: dict[Literal["quant_mode", "per_channel"], Any] | None = None  # int8 only (inferred for fp16)


class Sampler(_Strict):
    suffix: str
    get_data_num: int


class V2Dataset(_Strict):
    path: str
    sampler: Sampler
    transform_ops: list[dict[str, Any]]


class V2Workspace(_Strict):
    work_dir: str
    enable_ir: bool = False
    save_log: bool = True


class V2Config(_Strict):
    model: V2Model
    engine: V2Engine
    dataset: V2Dataset | None = None  # int8 only (inferred for fp16, as v3 omits it)
    workspace: V2Workspace


# ---------------------------------------------------------------- vamc v3 (`vamc compile`)
class V3Frontend(_Strict):
    type: Literal["onnx"] = "onnx"
    checkpoint: str
    dtype: Literal["fp32"] = "fp32"
    shape: dict[str, list[int]]


class V3Quantize(_Strict):
    calibrate_mode: Literal["max", "percentile", "kl_divergence", "mse"]
    quantize_per_channel: bool
    calibrate_range: float | None = None  # percentile mode: the kept fraction (inferred from the zoo's configs)


class V3Backend(_Strict):
    type: Literal["tvm_vacc"] = "tvm_vacc"
    dtype: Literal["fp16", "int8"]
    compile: dict[Literal["cluster_mode"], int] = {"cluster_mode": 0}
    quantize: V3Quantize | None = None


class V3Dataset(_Strict):
    type: Literal["tvm"] = "tvm"
    path: str
    sampler: Sampler
    process_ops: list[dict[str, Any]]


class V3Config(_Strict):
    name: str
    frontend: V3Frontend
    backend: V3Backend
    graph: dict[str, Any] | None = None
    dataset: V3Dataset | None = None
    workspace: dict[Literal["path"], str]


def transform_ops(preprocess: dict[str, Any]) -> list[dict[str, Any]]:
    """The calibration preprocessing as vamc ops (0-255 normalisation, so ``div255: false``)."""
    resize = preprocess["resize"][0] if preprocess.get("resize") else preprocess["crop"][0]
    return [
        {"type": "DecodeImage"},
        {"type": "Resize", "size": [resize, resize]},
        {"type": "CenterCrop", "crop_size": list(preprocess["crop"])},
        {"type": "Normalize", "div255": False, "mean": list(preprocess["mean"]), "std": list(preprocess["std"])},
        {"type": "ToTensor"},
    ]


def model_name(onnx: ArtifactRef) -> str:
    """A file-name-safe model name for vamc (``shufflenet_v1_1x_16xb64_in1k``)."""
    base = onnx.name.rsplit("/", 1)[0] if onnx.name else "model"
    return re.sub(r"[^A-Za-z0-9]+", "_", base).strip("_")


def vamc_config(
    generation: Literal["v2", "v3"],
    *,
    name: str,
    onnx_path: Path,
    input_shape: list[int],
    quant: QuantSpec,
    preprocess: dict[str, Any],
    calibration_dir: Path | None,
    calibration_count: int,
    suffix: str,
    workspace: Path,
) -> tuple[BaseModel, Path]:
    """The compile config and where vamc will write the compiled model (the prefix, without suffix)."""
    int8 = quant.dtype == "int8"
    if int8 and calibration_dir is None:
        raise ToolError("int8 compilation needs a calibration set", "run the calibration stage first")
    ops = transform_ops(preprocess)
    shape_tag = "_".join(str(d) for d in input_shape[1:])
    if generation == "v2":
        config: BaseModel = V2Config(
            model=V2Model(name=name, inputs={"input": input_shape}, checkpoint=str(onnx_path)),
            engine=V2Engine(
                common={"do_quantization": int8},
                calibration={"quant_mode": quant.calibrate, "per_channel": quant.per_channel} if int8 else None,
            ),
            dataset=V2Dataset(
                path=str(calibration_dir),
                sampler=Sampler(suffix=suffix, get_data_num=calibration_count),
                transform_ops=ops,
            )
            if int8
            else None,
            workspace=V2Workspace(work_dir=str(workspace)),
        )
        folder = f"{name}-{'int8' if int8 else 'fp16'}-{quant.calibrate if int8 else 'none'}-{shape_tag}-vacc"
        return config, workspace / folder / name
    full = f"{name}_{quant_label(quant).replace('-', '_')}"
    config = V3Config(
        name=full,
        frontend=V3Frontend(checkpoint=str(onnx_path), shape={"input": input_shape}),
        backend=V3Backend(
            dtype="int8" if int8 else "fp16",
            quantize=V3Quantize(
                calibrate_mode=quant.calibrate,
                quantize_per_channel=quant.per_channel,
                calibrate_range=quant.percentile / 100 if quant.calibrate == "percentile" else None,
            )
            if int8
            else None,
        ),
        dataset=V3Dataset(
            path=str(calibration_dir), sampler=Sampler(suffix=suffix, get_data_num=calibration_count), process_ops=ops
        )
        if int8
        else None,
        workspace={"path": str(workspace)},
    )
    return config, workspace / full / "mod"


def fp16_bits(value: float) -> int:
    """The IEEE float16 bit pattern of `value`, as vdsp_params v2 stores mean/std."""
    return int(np.float16(value).view(np.uint16))


V2_PROPERTIES = (
    "iimage_format",
    "iimage_width",
    "iimage_height",
    "iimage_width_pitch",
    "iimage_height_pitch",
    "short_edge_threshold",
    "crop_size",
    "meanr",
    "meang",
    "meanb",
    "stdr",
    "stdg",
    "stdb",
    "norma_type",
    "resize_type",
    "color_cvt_code",
    "color_space",
)


def vdsp_params(generation: Literal["v2", "v3"], preprocess: dict[str, Any], image: tuple[int, int]) -> dict[str, Any]:
    """The DSP preprocessing (resize, crop, normalise) for images of (height, width) = `image`."""
    height, width = image
    crop_h, crop_w = preprocess["crop"]
    resize = preprocess["resize"][0] if preprocess.get("resize") else crop_h
    mean, std = preprocess["mean"], preprocess["std"]
    if generation == "v2":
        values: dict[str, Any] = {
            "iimage_format": "RGB_PLANAR",
            "iimage_width": width,
            "iimage_height": height,
            "iimage_width_pitch": width,
            "iimage_height_pitch": height,
            "short_edge_threshold": resize,
            "crop_size": crop_h,
            "meanr": fp16_bits(mean[0]),
            "meang": fp16_bits(mean[1]),
            "meanb": fp16_bits(mean[2]),
            "stdr": fp16_bits(std[0]),
            "stdg": fp16_bits(std[1]),
            "stdb": fp16_bits(std[2]),
            "norma_type": "MINUSMEAN_DIVSTD",
            "resize_type": "BILINEAR_CV",
            "color_cvt_code": "NO_CHANGE",
            "color_space": "RGB",  # inferred: the public files do not show this value
        }
        dtypes = dict.fromkeys(("meanr", "meang", "meanb", "stdr", "stdg", "stdb"), "UINT_16")  # inferred: fp16 bits
        return {
            "vdsp_op_type": "RGB_RESIZE_CVTCOLOR_CROP_NORMALIZATION_TENSORIZATION_U8",
            "config": [
                {"Property": p, "DType": dtypes.get(p, "UINT_32"), "ParamType": "ELEMENT", "Value": values[p]}
                for p in V2_PROPERTIES
            ],
        }
    return {
        "OpType": "FUSION_OP_RGB_RESIZE_CVTCOLOR_CROP_NORM_TENSOR",
        "OpConfig": {
            "IimageFormat": "RGB_PLANAR",
            "IimageWidth": width,
            "IimageHeight": height,
            "IimageWidthPitch": width,
            "IimageHeightPitch": height,
            "ResizeWidth": resize,
            "ResizeHeight": resize,
            "OimageWidth": crop_w,
            "OimageHeight": crop_h,
            "CropX": (resize - crop_w) // 2,
            "CropY": (resize - crop_h) // 2,
            "Mean": [float(np.float16(v)) for v in mean],
            "Std": [float(np.float16(v)) for v in std],
            "NormaType": "MINUSMEAN_DIVSTD",
            "ColorCvtCode": "NO_CHANGE",
            "ResizeType": "BILINEAR_CV",
        },
    }


# ----------------------------------------------------------------------------- running tools
def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def run_tool(args: list[str], *, cwd: Path, timeout: float, log: Path) -> str:
    """Run a tool; its stdout+stderr go to `log` (and are returned). Failures raise `ToolError`."""
    tool = Path(args[0]).name
    with open(log, "w", encoding="utf-8", errors="replace") as out:
        out.write(f"$ {' '.join(args)}\n")
        out.flush()
        try:
            proc = subprocess.Popen(args, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as exc:
            raise ToolError(
                f"cannot start {tool}: {exc.strerror}", f"check that {tool} is installed and executable"
            ) from None
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the tool and anything it started
            proc.wait()
            text = log.read_text(errors="replace")
            raise ToolError(
                f"{tool} did not finish within {timeout:g} s and was stopped; last output:\n{_tail(text)}",
                f"raise the {tool} timeout if the model is large, or check the card",
                log=text,
            ) from None
    text = log.read_text(errors="replace")
    if code != 0:
        raise ToolError(
            f"{tool} exited with status {code}; last output:\n{_tail(text)}", f"read {tool}'s message above", log=text
        )
    return text


def _version(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        return "missing"
    try:
        done = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
        first = (done.stdout or done.stderr).strip().splitlines()
        if done.returncode == 0 and first:
            return first[0].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]  # no version flag: identify the binary
    return f"sha256:{digest}"


_NUMBER = r"([-+]?\d+(?:\.\d+)?)"


def parse_vamp(text: str) -> dict[str, Any]:
    """Read vamp's printed block field by field (each field optional; raw text kept by the caller)."""

    def field(label: str, source: str = text) -> float | None:
        match = re.search(rf"{re.escape(label)}\s*:\s*{_NUMBER}", source)
        return float(match.group(1)) if match else None

    def latencies(section: str) -> dict[str, float] | None:
        match = re.search(rf"{re.escape(section)}\s*:?\s*\n((?:\s+\w+ latency\s*:.*\n?)+)", text)
        if not match:
            return None
        values = {k: field(f"{k} latency", match.group(1)) for k in ("avg", "min", "max", "p50", "p90", "p95", "p99")}
        return {k: v for k, v in values.items() if v is not None}

    result: dict[str, Any] = {
        "instances": field("number of instances in each device"),
        "batch": field("batch size"),
        "ai_utilize_percent": field("ai utilize (%)"),
        "temperature_c": field("temperature (°C)"),
        "card_power_w": field("card power (W)"),
        "die_memory_mb": field("die memory used (MB)"),
        "throughput": field("throughput (qps)"),
        "e2e_latency_us": latencies("e2e latency (us)"),
        "model_latency_us": latencies("model latency (us)"),
    }
    return {k: v for k, v in result.items() if v is not None}


def pair_outputs(folder: Path, count: int) -> list[Path]:
    """``output_%06d.npz`` for lines 0..count-1; a missing, extra (stale) or misnamed file is an error."""
    from zooflow.outdir import MARKER

    files = {p.name: p for p in folder.iterdir() if p.name != MARKER}  # zooflow's own export marker is no output
    numbered = {int(m.group(1)): p for name, p in files.items() if (m := _OUTPUT_RE.match(name))}
    missing = [i for i in range(count) if i not in numbered]
    extra = sorted(set(numbered) - set(range(count)))
    strays = sorted(name for name in files if not _OUTPUT_RE.match(name))
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing (first: output_{missing[0]:06d}.npz)")
    if extra:
        problems.append(
            f"{len(extra)} beyond the datalist's {count} lines (first: output_{extra[0]:06d}.npz), stale or extra"
        )
    if strays:
        problems.append(f"unexpected files: {', '.join(strays[:5])}")
    if problems:
        raise ToolError(
            f"vamp's outputs do not pair with the datalist of {count} lines: " + "; ".join(problems),
            "outputs are paired by line index, so any mismatch would shift every pair; rerun vamp into an empty folder",
        )
    return [numbered[i] for i in range(count)]


class VastaiToolchain:
    """``vamc`` + ``vamp`` from PATH (the real tools, or the test suite's emulators)."""

    name = "vastai"
    concurrent_runs = False  # one card: vamp runs queue behind each other (compiles still run together)

    def __init__(self, options: ToolchainOptions) -> None:
        self.options = options
        self._fingerprint: dict[str, str] | None = None

    def available(self) -> Availability:
        missing = [tool for tool in ("vamc", "vamp") if shutil.which(tool) is None]
        if missing:
            return Availability(False, f"{' and '.join(missing)} not found on PATH (they exist only on Vastai hosts)")
        return Availability(True)

    def fingerprint(self) -> dict[str, str]:
        if self._fingerprint is None:
            self._fingerprint = {
                "toolchain": self.name,
                "vamc": _version("vamc"),
                "vamp": _version("vamp"),
                "generation": self.options.vamc_generation,
            }
        return self._fingerprint

    def input_params(self, preprocess: dict[str, Any]) -> NpzParams:
        resize = preprocess["resize"][0] if preprocess.get("resize") else preprocess["crop"][0]
        return NpzParams.for_format("vastai", None, (resize, resize))  # vamp -s needs one fixed image size

    def export_options(self, requested: ExportOptions) -> ExportOptions:
        if requested.dynamic_batch is None:  # the seed's static [1, 3, 224, 224]
            return requested.model_copy(update={"dynamic_batch": False})
        return requested

    def _keep_log(self, store: Store, log: Path, name: str, stage: str) -> str:
        """Store a failed attempt's log as a ``tool-log`` artifact; returns its digest prefix."""
        with store.staging(stage) as staged:
            shutil.copyfile(log, staged / log.name)
            ref = store.commit(
                staged,
                kind="tool-log",
                name=f"{name}/attempts",
                stage=stage,
                stage_version="1",
                toolchain=self.fingerprint(),
            )
        return ref.short

    def compile(
        self, onnx: ArtifactRef, calibration: ArtifactRef | None, quant: QuantSpec, store: Store
    ) -> ArtifactRef:
        if quant.dtype == "fp32":
            raise ToolError(
                "vamc compiles fp16 and int8 only", "use --quant fp16 or an int8 preset with --toolchain vastai"
            )
        generation = self.options.vamc_generation
        preprocess = onnx.meta["preprocess"]
        calib_doc = (
            json.loads(store.path(calibration, "calibration.json").read_text())
            if calibration and quant.dtype == "int8"
            else None
        )
        name = model_name(onnx)
        logical = compiled_name(onnx, self.name, quant)
        with store.staging("compile") as staged, tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            config, prefix = vamc_config(
                generation,
                name=name,
                onnx_path=store.path(onnx),
                input_shape=[1, 3, *preprocess["crop"]],
                quant=quant,
                preprocess=preprocess,
                calibration_dir=store.directory(calibration) / "images" if calib_doc and calibration else None,
                calibration_count=calib_doc["count"] if calib_doc else 0,
                suffix=(calib_doc["suffixes"][0] if calib_doc and calib_doc["suffixes"] else "JPEG"),
                workspace=Path("deploy_weights"),  # relative to vamc's working folder: the config stays reproducible
            )
            prefix = work / prefix
            text = yaml.safe_dump(config.model_dump(mode="json", exclude_none=True), sort_keys=False)
            (work / "vamc_config.yaml").write_text(text)
            (staged / "vamc_config.yaml").write_text(text)
            log = staged / "vamc.log"
            vamc = shutil.which("vamc") or "vamc"
            try:
                run_tool(
                    [vamc, "build" if generation == "v2" else "compile", "vamc_config.yaml"],
                    cwd=work,
                    timeout=self.options.vamc_timeout,
                    log=log,
                )
                files = [prefix.with_suffix(s) for s in (".so", ".json", ".params")]
                bad = [
                    f"{f.name} (missing)" if not f.is_file() else f"{f.name} (empty)"
                    for f in files
                    if not f.is_file() or f.stat().st_size == 0
                ]
                if bad:
                    raise ToolError(
                        f"vamc reported success but the compiled model is incomplete: {', '.join(bad)} under {prefix.parent}; "
                        f"last output:\n{_tail(log.read_text(errors='replace'))}",
                        "check vamc's log for warnings; the config it was given is kept with the attempt",
                        log=log.read_text(errors="replace"),
                    )
            except ToolError as exc:
                kept = self._keep_log(store, log, logical, COMPILE_STAGE)
                raise ToolError(
                    exc.problem + f"\n(vamc's log is kept as artifact {kept})", exc.fix, log=exc.log
                ) from None
            for f in files:
                shutil.copyfile(f, staged / f.name)
            (staged / "vdsp_params.json").write_text(
                json.dumps(vdsp_params(generation, preprocess, self._image(preprocess)), indent=1)
            )
            return store.commit(
                staged,
                kind="compiled",
                name=logical,
                stage=COMPILE_STAGE,
                stage_version=COMPILE_VERSION,
                params={"quant": quant.model_dump(), "generation": generation},
                inputs={"onnx": onnx, **({"calibration": calibration} if calib_doc and calibration else {})},
                meta={
                    "toolchain": self.name,
                    "preset": quant.preset,
                    "prefix": prefix.name,
                    "generation": generation,
                    "calibration_images": calib_doc["count"] if calib_doc else 0,
                    "output": onnx.meta.get("output", {}),
                    "preprocess": preprocess,
                },
                toolchain=self.fingerprint(),
            )

    def _image(self, preprocess: dict[str, Any]) -> tuple[int, int]:
        size = self.input_params(preprocess).pre_resize
        assert size is not None
        return size

    def _vamp(self, compiled: ArtifactRef, store: Store, work: Path, batch: int, extra: list[str]) -> list[str]:
        folder = store.directory(compiled)
        height, width = self._image(compiled.meta["preprocess"])
        return [
            shutil.which("vamp") or "vamp",
            "-m",
            str(folder / compiled.meta["prefix"]),
            "--vdsp_params",
            str(folder / "vdsp_params.json"),
            "-i",
            str(self.options.vamp_instances),
            "-p",
            str(self.options.vamp_processes),
            "-b",
            str(batch),
            "-s",
            f"[3,{height},{width}]",
            "-d",
            str(self.options.device),
            *extra,
        ]

    def run_shard(self, compiled: ArtifactRef, shard: ArtifactRef, store: Store) -> ArtifactRef:
        records = outputs_mod.shard_records(store, shard)
        shard_dir = store.directory(shard)
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            datalist, out = work / "datalist.txt", work / "outputs"
            out.mkdir()
            datalist.write_text("".join(f"{shard_dir / file}\n" for _, _, _, file in records))
            log = work / "vamp.log"
            args = self._vamp(
                compiled, store, work, self.options.vamp_batch, ["--datalist", str(datalist), "--path_output", str(out)]
            )
            try:
                run_tool(args, cwd=work, timeout=self.options.vamp_timeout, log=log)
                files = pair_outputs(out, len(records))
                rows = []
                for f in files:
                    with np.load(f) as data:
                        if "output_0" not in data:
                            raise ToolError(
                                f"{f.name} has no output_0 (keys: {', '.join(data.keys())})",
                                "check the model's outputs",
                            )
                        rows.append(np.asarray(data["output_0"]).reshape(-1))
            except ToolError as exc:
                kept = self._keep_log(store, log, compiled.name or "vastai", "run")
                raise ToolError(
                    exc.problem + f"\n(vamp's log is kept as artifact {kept})", exc.fix, log=exc.log
                ) from None
            meta = {
                "output_name": compiled.meta["output"].get("name"),
                "semantics": compiled.meta["output"].get("semantics"),
                "vamp": parse_vamp(log.read_text(errors="replace")),
            }
            return outputs_mod.commit_shard(
                store,
                np.array([r[0] for r in records]),
                [r[1] for r in records],
                np.stack(rows) if rows else np.zeros((0, 0), np.float16),
                compiled=compiled,
                shard=shard,
                meta=meta,
                toolchain=self.fingerprint(),
            )

    def benchmark(self, compiled: ArtifactRef, spec: BenchmarkSpec, store: Store) -> ArtifactRef:
        results, raw = [], {}
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            for batch in spec.batch_sizes:
                log = work / f"vamp-b{batch}.log"
                try:
                    text = run_tool(
                        self._vamp(compiled, store, work, batch, []),
                        cwd=work,
                        timeout=self.options.vamp_timeout,
                        log=log,
                    )
                except ToolError as exc:
                    kept = self._keep_log(store, log, compiled.name or "vastai", BENCH_STAGE)
                    raise ToolError(
                        exc.problem + f"\n(vamp's log is kept as artifact {kept})", exc.fix, log=exc.log
                    ) from None
                parsed = parse_vamp(text)
                if "throughput" not in parsed:
                    kept = self._keep_log(store, log, compiled.name or "vastai", BENCH_STAGE)
                    raise ToolError(
                        f"vamp's output has no 'throughput (qps)' field (kept as artifact {kept}); last output:\n{_tail(text)}",
                        "check the vamp version: zooflow reads the 2024 block format",
                        log=text,
                    )
                e2e = parsed.get("e2e_latency_us", {})
                results.append(
                    {
                        "batch": batch,
                        "throughput": parsed["throughput"],
                        "latency_ms": {k: v / 1000 for k, v in e2e.items() if k in ("p50", "p90", "p95", "p99")}
                        | ({"mean": e2e["avg"] / 1000} if "avg" in e2e else {}),
                        "vamp": parsed,
                    }
                )
                raw[f"vamp-b{batch}.log"] = text
            with store.staging("benchmark") as staged:
                for name, text in raw.items():
                    (staged / name).write_text(text)
                (staged / "benchmark.json").write_text(
                    json.dumps({"spec": spec.model_dump(), "results": results}, indent=1)
                )
                return store.commit(
                    staged,
                    kind="benchmark",
                    stage=BENCH_STAGE,
                    stage_version=BENCH_VERSION,
                    params={
                        **spec.model_dump(),
                        "instances": self.options.vamp_instances,
                        "processes": self.options.vamp_processes,
                    },
                    inputs={"compiled": compiled},
                    meta={"results": results},
                    libraries=provenance.library_versions("numpy"),
                    toolchain=self.fingerprint(),
                )
