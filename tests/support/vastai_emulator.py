"""An EMULATOR of Vastai's ``vamc`` and ``vamp`` command lines, for tests only.

The real tools exist only on Vastai hosts. These stand-ins read exactly the configs and flags
described in shared/docs/vastai-toolchain.md and validate them strictly and independently of
zooflow's own schema (unknown keys, wrong types and missing fields fail loudly, as a careful
compiler would), so the tests prove that zooflow writes valid configs, calls the tools
correctly and parses what they print. They do not emulate the card's numerics: the "compiled
model" is the ONNX file itself (stored in the ``.so``), fp16/int8 are not applied, and the DSP
preprocessing (OpenCV bilinear resize, crop, float16-rounded mean/std) runs in NumPy before ONNX
Runtime computes the logits.

Misbehaviour on request (environment variable ``VASTAI_EMULATOR_FAULT``):
``exit`` (non-zero exit), ``missing`` (vamc leaves out the .params file; vamp skips one output),
``empty`` (vamc writes an empty .so), ``garbled`` (vamp prints no profiler block),
``hang`` (sleeps until killed), ``stale`` (vamp leaves an extra output file).
``VASTAI_EMULATOR_VERSION`` sets what ``--version`` reports.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

FAULT = os.environ.get("VASTAI_EMULATOR_FAULT", "")
VERSION = os.environ.get("VASTAI_EMULATOR_VERSION", "vastai-emulator 1.0")
MODES = {"max", "percentile", "kl_divergence", "mse"}
OPS = {"DecodeImage", "Resize", "CenterCrop", "Normalize", "ToTensor"}
V2_PROPERTIES = [
    "iimage_format", "iimage_width", "iimage_height", "iimage_width_pitch", "iimage_height_pitch", "short_edge_threshold",
    "crop_size", "meanr", "meang", "meanb", "stdr", "stdg", "stdb", "norma_type", "resize_type", "color_cvt_code", "color_space",
]  # fmt: skip


class Invalid(Exception):  # noqa: N818 - reads as the tools' own wording
    """A config or flag the real tool would reject."""


def _keys(section: Any, where: str, required: set[str], optional: set[str] = frozenset()) -> dict[str, Any]:  # type: ignore[assignment]
    if not isinstance(section, dict):
        raise Invalid(f"{where}: expected a mapping, got {type(section).__name__}")
    unknown = set(section) - required - set(optional)
    if unknown:
        raise Invalid(f"{where}: unknown key(s) {sorted(unknown)}")
    missing = required - set(section)
    if missing:
        raise Invalid(f"{where}: missing key(s) {sorted(missing)}")
    return section


def _type(value: Any, kind: type | tuple[type, ...], where: str) -> Any:
    if isinstance(value, bool) and kind in (int, float, (int, float)):
        raise Invalid(f"{where}: expected a number, got a boolean")
    if not isinstance(value, kind):
        raise Invalid(f"{where}: expected {kind}, got {type(value).__name__} {value!r}")
    return value


def _shape(value: Any, where: str) -> list[int]:
    if not (isinstance(value, list) and len(value) == 4 and all(isinstance(v, int) and v > 0 for v in value)):
        raise Invalid(f"{where}: expected [N, C, H, W] of positive integers, got {value!r}")
    return value


def _ops(ops: Any, where: str) -> None:
    _type(ops, list, where)
    for i, op in enumerate(ops):
        _type(op, dict, f"{where}[{i}]")
        kind = op.get("type")
        if kind not in OPS:
            raise Invalid(f"{where}[{i}].type: {kind!r} is not one of {sorted(OPS)}")
        allowed = {"DecodeImage": set(), "ToTensor": set(), "Resize": {"size"}, "CenterCrop": {"crop_size"},
                   "Normalize": {"div255", "mean", "std"}}[kind]  # fmt: skip
        unknown = set(op) - {"type"} - allowed
        if unknown:
            raise Invalid(f"{where}[{i}] ({kind}): unknown key(s) {sorted(unknown)}")
        if kind == "Normalize":
            for key in ("mean", "std"):
                if not (isinstance(op.get(key), list) and len(op[key]) == 3):
                    raise Invalid(f"{where}[{i}].{key}: expected 3 numbers")


def _dataset(section: Any, where: str, ops_key: str, v3: bool) -> None:
    required = {"path", "sampler", ops_key} | ({"type"} if v3 else set())
    _keys(section, where, required)
    if v3 and section["type"] != "tvm":
        raise Invalid(f"{where}.type: expected 'tvm'")
    folder = Path(_type(section["path"], str, f"{where}.path"))
    sampler = _keys(section["sampler"], f"{where}.sampler", {"suffix", "get_data_num"})
    suffix = _type(sampler["suffix"], str, f"{where}.sampler.suffix")
    count = _type(sampler["get_data_num"], int, f"{where}.sampler.get_data_num")
    if not folder.is_dir():
        raise Invalid(f"{where}.path: calibration folder {folder} does not exist")
    found = [p for p in folder.iterdir() if p.name.endswith("." + suffix)]
    if len(found) < count:
        raise Invalid(f"{where}: get_data_num={count} but {folder} has {len(found)} *.{suffix} files")
    _ops(section[ops_key], f"{where}.{ops_key}")


def _validate_v2(cfg: dict[str, Any]) -> tuple[Path, Path, str]:
    _keys(cfg, "config", {"model", "engine", "workspace"}, {"dataset"})
    model = _keys(cfg["model"], "model", {"name", "inputs", "checkpoint"})
    name = _type(model["name"], str, "model.name")
    inputs = _type(model["inputs"], dict, "model.inputs")
    shape = _shape(next(iter(inputs.values()), None), "model.inputs")
    engine = _keys(cfg["engine"], "engine", {"type", "common"}, {"add_extra_ops_to_graph", "calibration"})
    if engine["type"] not in ("vacc", "debug"):
        raise Invalid(f"engine.type: {engine['type']!r} is not vacc or debug")
    common = _keys(engine["common"], "engine.common", {"do_quantization"})
    int8 = _type(common["do_quantization"], bool, "engine.common.do_quantization")
    if "add_extra_ops_to_graph" in engine:
        extra = _keys(engine["add_extra_ops_to_graph"], "engine.add_extra_ops_to_graph", {"type"})
        if extra["type"] not in (None, "softmax"):
            raise Invalid("engine.add_extra_ops_to_graph.type: expected null or softmax")
    mode = "none"
    if int8:
        calib = _keys(engine.get("calibration"), "engine.calibration", {"quant_mode", "per_channel"})
        if calib["quant_mode"] not in MODES:
            raise Invalid(f"engine.calibration.quant_mode: {calib['quant_mode']!r} is not one of {sorted(MODES)}")
        _type(calib["per_channel"], bool, "engine.calibration.per_channel")
        mode = calib["quant_mode"]
        _dataset(cfg.get("dataset"), "dataset", "transform_ops", v3=False)
    workspace = _keys(cfg["workspace"], "workspace", {"work_dir"}, {"enable_ir", "save_log"})
    work = Path(_type(workspace["work_dir"], str, "workspace.work_dir"))
    folder = work / f"{name}-{'int8' if int8 else 'fp16'}-{mode}-{'_'.join(map(str, shape[1:]))}-{engine['type']}"
    return Path(_type(model["checkpoint"], str, "model.checkpoint")), folder / name, "int8" if int8 else "fp16"


def _validate_v3(cfg: dict[str, Any]) -> tuple[Path, Path, str]:
    _keys(cfg, "config", {"name", "frontend", "backend", "workspace"}, {"graph", "dataset"})
    name = _type(cfg["name"], str, "name")
    front = _keys(cfg["frontend"], "frontend", {"type", "checkpoint", "dtype", "shape"})
    if front["type"] != "onnx" or front["dtype"] != "fp32":
        raise Invalid("frontend: expected type onnx, dtype fp32")
    _shape(next(iter(_type(front["shape"], dict, "frontend.shape").values()), None), "frontend.shape")
    back = _keys(cfg["backend"], "backend", {"type", "dtype"}, {"compile", "quantize"})
    if back["type"] != "tvm_vacc" or back["dtype"] not in ("fp16", "int8"):
        raise Invalid("backend: expected type tvm_vacc and dtype fp16 or int8")
    if back["dtype"] == "int8":
        quant = _keys(
            back.get("quantize"),
            "backend.quantize",
            {"calibrate_mode", "quantize_per_channel"},
            {"calibrate_range", "skip_matmul_layers"},
        )
        if quant["calibrate_mode"] not in MODES:
            raise Invalid(f"backend.quantize.calibrate_mode: {quant['calibrate_mode']!r} is not one of {sorted(MODES)}")
        _dataset(cfg.get("dataset"), "dataset", "process_ops", v3=True)
    elif "quantize" in back or "dataset" in cfg:
        raise Invalid("fp16: backend.quantize and dataset must be absent")
    work = Path(_type(_keys(cfg["workspace"], "workspace", {"path"})["path"], str, "workspace.path"))
    return Path(front["checkpoint"]), work / name / "mod", back["dtype"]


def vamc_main(argv: list[str]) -> int:
    """``vamc build CONFIG`` (v2) or ``vamc compile CONFIG`` (v3)."""
    if argv == ["--version"]:
        print(VERSION)
        return 0
    if len(argv) != 2 or argv[0] not in ("build", "compile"):
        print("usage: vamc {build,compile} CONFIG.yaml", file=sys.stderr)
        return 2
    print(f"[vamc emulator] {argv[0]} {argv[1]}")
    if FAULT == "hang":
        time.sleep(3600)
    if FAULT == "exit":
        print("[vamc emulator] error: internal compiler error (injected)", file=sys.stderr)
        return 3
    try:
        cfg = yaml.safe_load(Path(argv[1]).read_text())
        checkpoint, prefix, dtype = (_validate_v2 if argv[0] == "build" else _validate_v3)(cfg)
        if not checkpoint.is_file():
            raise Invalid(f"checkpoint {checkpoint} does not exist")
    except Invalid as exc:
        print(f"[vamc emulator] config error: {exc}", file=sys.stderr)
        return 2
    prefix.parent.mkdir(parents=True, exist_ok=True)
    prefix.with_suffix(".so").write_bytes(b"" if FAULT == "empty" else checkpoint.read_bytes())
    prefix.with_suffix(".json").write_text(json.dumps({"emulator": True, "dtype": dtype, "source": str(checkpoint)}))
    if FAULT != "missing":
        prefix.with_suffix(".params").write_bytes(b"emulated weights\n")
    print(f"[vamc emulator] wrote {prefix}.{{so,json,params}}")
    return 0


def _dsp(vdsp: dict[str, Any], image: np.ndarray) -> np.ndarray:
    """The card's fused op on a uint8 CHW image: fixed bilinear resize (OpenCV), crop, normalise."""
    import cv2

    if "vdsp_op_type" in vdsp:
        props = vdsp["config"]
        if [p.get("Property") for p in props] != V2_PROPERTIES:
            raise Invalid("vdsp_params v2: properties missing, unknown or out of order")
        for p in props:
            _keys(p, f"vdsp_params {p['Property']}", {"Property", "DType", "ParamType", "Value"})
        v = {p["Property"]: p["Value"] for p in props}
        size, crop = int(v["short_edge_threshold"]), int(v["crop_size"])
        mean = [float(np.uint16(v[k]).view(np.float16)) for k in ("meanr", "meang", "meanb")]
        std = [float(np.uint16(v[k]).view(np.float16)) for k in ("stdr", "stdg", "stdb")]
        resize, out, x0, y0 = (size, size), (crop, crop), (size - crop) // 2, (size - crop) // 2
        expect = (int(v["iimage_height"]), int(v["iimage_width"]))
    else:
        _keys(vdsp, "vdsp_params", {"OpType", "OpConfig"})
        c = vdsp["OpConfig"]
        resize, out = (c["ResizeHeight"], c["ResizeWidth"]), (c["OimageHeight"], c["OimageWidth"])
        x0, y0, mean, std = c["CropX"], c["CropY"], c["Mean"], c["Std"]
        expect = (c["IimageHeight"], c["IimageWidth"])
    if tuple(image.shape[1:]) != expect:
        raise Invalid(f"input image {image.shape} does not match vdsp_params' {expect}")
    hwc = cv2.resize(image.transpose(1, 2, 0), (resize[1], resize[0]), interpolation=cv2.INTER_LINEAR)
    chw = hwc[y0 : y0 + out[0], x0 : x0 + out[1]].transpose(2, 0, 1).astype(np.float32)
    return (chw - np.array(mean, np.float32)[:, None, None]) / np.array(std, np.float32)[:, None, None]


def vamp_main(argv: list[str]) -> int:
    """``vamp -m PREFIX --vdsp_params JSON -i N -p N -b N -s [3,H,W] [--datalist F --path_output D] [-d N]``."""
    if argv == ["--version"]:
        print(VERSION)
        return 0
    parser = argparse.ArgumentParser(prog="vamp", add_help=False)
    parser.add_argument("-m", required=True)
    parser.add_argument("--vdsp_params", required=True)
    parser.add_argument("-i", type=int, required=True)
    parser.add_argument("-p", type=int, required=True)
    parser.add_argument("-b", type=int, required=True)
    parser.add_argument("-s", required=True)
    parser.add_argument("-d", type=int, default=0)
    parser.add_argument("--datalist")
    parser.add_argument("--path_output")
    parser.add_argument("--iterations", type=int, default=40)
    args = parser.parse_args(argv)  # unknown flags exit 2, as a strict CLI would
    if FAULT == "hang":
        time.sleep(3600)
    if FAULT == "exit":
        print("[vamp emulator] error: device 0 not found (injected)", file=sys.stderr)
        return 4
    try:
        if bool(args.datalist) != bool(args.path_output):
            raise Invalid("--datalist and --path_output go together")
        shape = json.loads(args.s)
        if not (isinstance(shape, list) and len(shape) == 3 and shape[0] == 3):
            raise Invalid(f"-s {args.s}: expected [3,H,W]")
        for suffix in (".so", ".json", ".params"):
            if not Path(args.m + suffix).is_file() or Path(args.m + suffix).stat().st_size == 0:
                raise Invalid(f"-m {args.m}: {args.m + suffix} is missing or empty")
        vdsp = json.loads(Path(args.vdsp_params).read_text())
        import onnxruntime as ort

        session = ort.InferenceSession(Path(args.m + ".so").read_bytes(), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        started = time.perf_counter()
        count = 0
        if args.datalist:
            lines = [line.strip() for line in Path(args.datalist).read_text().splitlines() if line.strip()]
            out = Path(args.path_output)
            out.mkdir(parents=True, exist_ok=True)
            for i, line in enumerate(lines):
                if FAULT == "missing" and i == len(lines) // 2:
                    continue
                with np.load(line) as data:
                    image = data["input_0"]
                if list(image.shape) != shape:
                    raise Invalid(f"{line}: input_0 has shape {list(image.shape)}, -s says {shape}")
                logits = session.run(None, {name: _dsp(vdsp, image)[None]})[0].astype(np.float16)
                np.savez(out / f"output_{i:06d}.npz", output_0=logits)
                count += 1
            if FAULT == "stale":
                np.savez(out / f"output_{len(lines):06d}.npz", output_0=np.zeros((1, 1000), np.float16))
        else:
            image = np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8)
            for _ in range(args.iterations):
                session.run(None, {name: _dsp(vdsp, image)[None]})
                count += 1
    except Invalid as exc:
        print(f"[vamp emulator] error: {exc}", file=sys.stderr)
        return 2
    seconds = max(time.perf_counter() - started, 1e-6)
    if FAULT == "garbled":
        print("Segmentation fault (core dumped)?? \x1b[0m ###")
        return 0
    lat = seconds / max(count, 1) * 1e6
    print(f"- number of instances in each device: {args.i}\n  devices: [{args.d}]\n  batch size: {args.b}")
    print("  ai utilize (%): 42.0\n  temperature (°C): 40.5\n  card power (W): 30.1\n  die memory used (MB): 512.0")
    print(f"  throughput (qps): {count / seconds:.1f}\n  e2e latency (us):")
    for key, factor in (
        ("avg", 1.0),
        ("min", 0.8),
        ("max", 1.3),
        ("p50", 1.0),
        ("p90", 1.1),
        ("p95", 1.15),
        ("p99", 1.2),
    ):
        print(f"      {key} latency: {lat * factor:.0f}")
    return 0


def install(bin_dir: Path) -> Path:
    """Write executable ``vamc`` and ``vamp`` emulators into `bin_dir` (put it first on PATH)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    repo = Path(__file__).resolve().parents[2]
    for tool in ("vamc", "vamp"):
        script = bin_dir / tool
        script.write_text(
            f"#!{sys.executable}\n# EMULATOR of Vastai's {tool} for zooflow's tests (tests/support/vastai_emulator.py)\n"
            f"import sys\nsys.path.insert(0, {str(repo)!r})\n"
            f"from tests.support.vastai_emulator import {tool}_main\nsys.exit({tool}_main(sys.argv[1:]))\n"
        )
        script.chmod(0o755)
    return bin_dir
