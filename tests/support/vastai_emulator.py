"""An EMULATOR of Vastai's ``vamc`` and ``vamp`` command lines, for tests only.

The real tools exist only on Vastai hosts. These stand-ins read exactly the configs and flags
described in shared/docs/vastai-toolchain.md and validate them strictly and independently of
zooflow's own schema (unknown keys, wrong types and missing fields fail loudly, as a careful
compiler would), so the tests prove that zooflow writes valid configs, calls the tools
correctly and parses what they print. Every value set checked here (enum strings, DTypes,
property order, key sets) is transcribed from the vendor's published files as the shared doc
and the public zoo give them, never taken from zooflow's code. They do not emulate the card's
numerics: the "compiled model" is the ONNX file itself (stored in the ``.so``), fp16/int8 are
not applied, and the DSP (OpenCV bilinear resize of each full-size input to the vdsp size,
colour conversion, crop, float16-rounded mean/std) runs in NumPy before ONNX Runtime.

Misbehaviour on request (environment variable ``VASTAI_EMULATOR_FAULT``):
``exit`` (non-zero exit), ``missing`` (vamc leaves out the .params file; vamp skips one output),
``empty`` (vamc writes an empty .so), ``garbled`` (vamp prints no profiler block),
``hang`` (sleeps until killed), ``stale`` (vamp leaves an extra output file),
``twice`` (vamc writes two complete models).
``VASTAI_EMULATOR_VERSION`` sets what ``--version`` reports; ``VASTAI_EMULATOR_NO_VERSION=1``
makes ``--version`` an unknown flag (as for a tool that has none).
``VASTAI_EMULATOR_LAYOUT`` picks where vamc writes the model: ``2023`` (v2 default:
``<name>-int8-max-3_224_224-vacc/<name>``), ``seed`` (``...-3_256_256-vacc/<name>``, the seed's
path), ``2024`` (``...-1_1_256_256-vacc/mod``), ``v3`` (v3 default: ``<name>/mod``).
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
NO_VERSION = os.environ.get("VASTAI_EMULATOR_NO_VERSION") == "1"
LAYOUT = os.environ.get("VASTAI_EMULATOR_LAYOUT", "")
MODES = {"max", "percentile", "kl_divergence", "mse"}
SKIPPED: dict[str, list[int]] = {}  # the config's layer skip lists, recorded in the compiled graph file
OPS = {"DecodeImage", "Resize", "CenterCrop", "Normalize", "ToTensor"}
# vdsp_params v2: (property, DType) in the fixed order of the shared doc's table; enum values as published
V2_TABLE = [
    ("iimage_format", "UINT_32"), ("iimage_width", "INT"), ("iimage_height", "INT"), ("iimage_width_pitch", "UINT_32"),
    ("iimage_height_pitch", "UINT_32"), ("short_edge_threshold", "INT"), ("crop_size", "UINT_32"),
    ("meanr", "UINT_16"), ("meang", "UINT_16"), ("meanb", "UINT_16"), ("stdr", "UINT_16"), ("stdg", "UINT_16"),
    ("stdb", "UINT_16"), ("norma_type", "INT"), ("resize_type", "INT"), ("color_cvt_code", "UINT_16"),
    ("color_space", "UINT_16"),
]  # fmt: skip
V2_ENUMS = {
    "iimage_format": {"RGB_PLANAR"},
    "norma_type": {"MINUSMEAN_DIVSTD", "DIV255_MINUSMEAN_DIVSTD"},
    "resize_type": {"BILINEAR_CV"},
    "color_cvt_code": {"COLOR_NO_CHANGE", "COLOR_BGR2RGB"},
    "color_space": {"COLOR_SPACE_BT709"},
}
V2_OP = "RGB_RESIZE_CVTCOLOR_CROP_NORMALIZATION_TENSORIZATION_U8"
V3_OP = "FUSION_OP_RGB_RESIZE_CVTCOLOR_CROP_NORM_TENSOR"
V3_INTS = ["IimageWidth", "IimageHeight", "OimageWidth", "OimageHeight", "CropX", "CropY", "ResizeWidth",
           "ResizeHeight", "IimageWidthPitch", "IimageHeightPitch"]  # fmt: skip
V3_ENUMS = {
    "IimageFormat": {"RGB_PLANAR"},
    "NormaType": {"MINUSMEAN_DIVSTD", "DIV255_MINUSMEAN_DIVSTD", "EQUAL", "DIV255"},
    "ColorCvtCode": {"NO_CHANGE", "RGB2BGR", "BGR2RGB"},
    "ResizeType": {"BILINEAR_CV", "BILINEAR_PILLOW"},
}


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


def _skips(section: dict[str, Any], where: str, keys: tuple[str, ...]) -> dict[str, list[int]]:
    """Layer skip lists (``skip_conv_layers: [0, 1, 8, ...]`` in the zoo's published configs): lists of
    distinct non-negative integers. What an index counts is not published; it is not checked here."""
    found = {}
    for key in keys:
        if key not in section:
            continue
        value = section[key]
        if not (
            isinstance(value, list)
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)
            and len(set(value)) == len(value)
        ):
            raise Invalid(f"{where}.{key}: expected a list of distinct non-negative integers, got {value!r}")
        found[key] = value
    return found


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


def _dataset(section: Any, where: str, ops_key: str, v3: bool, check_files: bool = True) -> None:
    required = {"path", "sampler", ops_key} | ({"type"} if v3 else set())
    _keys(section, where, required)
    if v3 and section["type"] != "tvm":
        raise Invalid(f"{where}.type: expected 'tvm'")
    folder = Path(_type(section["path"], str, f"{where}.path"))
    sampler = _keys(section["sampler"], f"{where}.sampler", {"suffix", "get_data_num"})
    suffix = _type(sampler["suffix"], str, f"{where}.sampler.suffix")
    count = _type(sampler["get_data_num"], int, f"{where}.sampler.get_data_num")
    _ops(section[ops_key], f"{where}.{ops_key}")
    if not check_files:  # fp16: vamc does not read the images
        return
    if not folder.is_dir():
        raise Invalid(f"{where}.path: calibration folder {folder} does not exist")
    found = [p for p in folder.iterdir() if p.name.endswith("." + suffix)]
    if len(found) < count:
        raise Invalid(f"{where}: get_data_num={count} but {folder} has {len(found)} *.{suffix} files")


def _validate_v2(cfg: dict[str, Any]) -> tuple[Path, Path, str]:
    # every public v2 config, fp16 ones included, has the dataset and calibration blocks: required
    _keys(cfg, "config", {"model", "engine", "workspace", "dataset"})
    model = _keys(cfg["model"], "model", {"name", "inputs", "checkpoint"})
    name = _type(model["name"], str, "model.name")
    inputs = _type(model["inputs"], dict, "model.inputs")
    shape = _shape(next(iter(inputs.values()), None), "model.inputs")
    engine = _keys(cfg["engine"], "engine", {"type", "common", "calibration"}, {"add_extra_ops_to_graph"})
    if engine["type"] not in ("vacc", "debug"):
        raise Invalid(f"engine.type: {engine['type']!r} is not vacc or debug")
    common = _keys(engine["common"], "engine.common", {"do_quantization"})
    int8 = _type(common["do_quantization"], bool, "engine.common.do_quantization")
    if "add_extra_ops_to_graph" in engine:
        extra = _keys(engine["add_extra_ops_to_graph"], "engine.add_extra_ops_to_graph", {"type"})
        if extra["type"] not in (None, "softmax"):
            raise Invalid("engine.add_extra_ops_to_graph.type: expected null or softmax")
    # v2: skip_conv_layers in classification/mobilenet_v3/vacc_code/build/showlo_mobilenetv3.yaml (zoo 5de8a1e)
    calib = _keys(engine["calibration"], "engine.calibration", {"quant_mode", "per_channel"}, {"skip_conv_layers"})
    SKIPPED.update(_skips(calib, "engine.calibration", ("skip_conv_layers",)))
    if calib["quant_mode"] not in MODES:
        raise Invalid(f"engine.calibration.quant_mode: {calib['quant_mode']!r} is not one of {sorted(MODES)}")
    _type(calib["per_channel"], bool, "engine.calibration.per_channel")
    mode = calib["quant_mode"] if int8 else "none"
    _dataset(cfg["dataset"], "dataset", "transform_ops", v3=False, check_files=int8)
    workspace = _keys(cfg["workspace"], "workspace", {"work_dir"}, {"enable_ir", "save_log"})
    work = Path(_type(workspace["work_dir"], str, "workspace.work_dir"))
    stem = f"{name}-{'int8' if int8 else 'fp16'}-{mode}"
    layouts = {
        "2023": work / f"{stem}-{'_'.join(map(str, shape[1:]))}-{engine['type']}" / name,
        "seed": work / f"{stem}-3_256_256-{engine['type']}" / name,
        "2024": work / f"{stem}-1_1_256_256-{engine['type']}" / "mod",
        "v3": work / name / "mod",
    }
    return (
        Path(_type(model["checkpoint"], str, "model.checkpoint")),
        layouts[LAYOUT or "2023"],
        "int8" if int8 else "fp16",
    )


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
            # skip_conv_layers: cv/detection/yolov12/build_in/build/official_yolov12_int8.yaml; skip_matmul_layers:
            # cv/classification/yolov11_cls/build_in/build/official_yolov11_cls_int8.yaml (zoo HEAD)
            {"calibrate_range", "skip_matmul_layers", "skip_conv_layers"},
        )
        SKIPPED.update(_skips(quant, "backend.quantize", ("skip_conv_layers", "skip_matmul_layers")))
        if quant["calibrate_mode"] not in MODES:
            raise Invalid(f"backend.quantize.calibrate_mode: {quant['calibrate_mode']!r} is not one of {sorted(MODES)}")
        _dataset(cfg.get("dataset"), "dataset", "process_ops", v3=True)
    elif "dataset" in cfg:  # public v3 fp16 configs come both with and without these blocks
        _dataset(cfg["dataset"], "dataset", "process_ops", v3=True, check_files=False)
    if "graph" in cfg:
        graph = _keys(cfg["graph"], "graph", {"extra_ops"})
        if _keys(graph["extra_ops"], "graph.extra_ops", {"type"})["type"] != "softmax":
            raise Invalid("graph.extra_ops.type: expected softmax")
    work = Path(_type(_keys(cfg["workspace"], "workspace", {"path"})["path"], str, "workspace.path"))
    prefix = work / name / "mod"
    if LAYOUT and LAYOUT != "v3":
        raise Invalid(f"VASTAI_EMULATOR_LAYOUT={LAYOUT} is a v2 layout")
    return Path(front["checkpoint"]), prefix, back["dtype"]


def _version() -> int:
    if NO_VERSION:
        print("error: unrecognized arguments: --version", file=sys.stderr)
        return 2
    print(VERSION)
    return 0


def vamc_main(argv: list[str]) -> int:
    """``vamc build CONFIG`` (v2) or ``vamc compile CONFIG`` (v3)."""
    if argv == ["--version"]:
        return _version()
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
    graph = {"emulator": True, "version": VERSION, "layout": LAYOUT, "dtype": dtype, "source": str(checkpoint)}
    graph.update({"skipped": SKIPPED} if SKIPPED else {})  # what a test can read back: the layers vamc was told
    prefix.with_suffix(".json").write_text(json.dumps(graph))  # a new vamc writes a new graph
    if FAULT != "missing":
        prefix.with_suffix(".params").write_bytes(b"emulated weights\n")
    if FAULT == "twice":
        for suffix in (".so", ".json", ".params"):
            (prefix.parent / f"copy{suffix}").write_bytes(prefix.with_suffix(suffix).read_bytes())
    print(f"[vamc emulator] wrote {prefix}.{{so,json,params}}")
    return 0


def _v2_values(vdsp: dict[str, Any]) -> dict[str, Any]:
    _keys(vdsp, "vdsp_params", {"vdsp_op_type", "config"})
    if vdsp["vdsp_op_type"] != V2_OP:
        raise Invalid(f"vdsp_op_type: {vdsp['vdsp_op_type']!r} is not {V2_OP}")
    props = _type(vdsp["config"], list, "vdsp_params config")
    if [p.get("Property") if isinstance(p, dict) else None for p in props] != [name for name, _ in V2_TABLE]:
        raise Invalid("vdsp_params v2: properties missing, unknown or out of order")
    values = {}
    for entry, (name, dtype) in zip(props, V2_TABLE, strict=True):
        _keys(entry, f"vdsp_params {name}", {"Property", "DType", "ParamType", "Value"})
        if entry["DType"] != dtype:
            raise Invalid(f"vdsp_params {name}: DType {entry['DType']!r}, expected {dtype}")
        if entry["ParamType"] != "ELEMENT":
            raise Invalid(f"vdsp_params {name}: ParamType {entry['ParamType']!r}, expected ELEMENT")
        value = entry["Value"]
        if name in V2_ENUMS:
            if value not in V2_ENUMS[name]:
                raise Invalid(f"vdsp_params {name}: {value!r} is not one of {sorted(V2_ENUMS[name])}")
        elif not (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
            raise Invalid(f"vdsp_params {name}: expected a non-negative integer, got {value!r}")
        values[name] = value
    return values


def _v3_config(vdsp: dict[str, Any]) -> dict[str, Any]:
    _keys(vdsp, "vdsp_params", {"OpType", "OpConfig"})
    if vdsp["OpType"] != V3_OP:
        raise Invalid(f"OpType: {vdsp['OpType']!r} is not {V3_OP}")
    c = _keys(vdsp["OpConfig"], "OpConfig", {*V3_INTS, *V3_ENUMS, "Mean", "Std"})
    for key in V3_INTS:
        _type(c[key], int, f"OpConfig.{key}")
    for key, allowed in V3_ENUMS.items():
        if c[key] not in allowed:
            raise Invalid(f"OpConfig.{key}: {c[key]!r} is not one of {sorted(allowed)}")
    for key in ("Mean", "Std"):
        if not (isinstance(c[key], list) and len(c[key]) == 3 and all(isinstance(v, (int, float)) for v in c[key])):
            raise Invalid(f"OpConfig.{key}: expected 3 numbers, got {c[key]!r}")
    return c


def validate_vdsp(vdsp: Any) -> dict[str, Any]:
    """The DSP's parameters from a v2 or v3 file: resize (h, w), crop (h, w) at (y, x), mean, std, norm, swap."""
    _type(vdsp, dict, "vdsp_params")
    if "vdsp_op_type" in vdsp:
        v = _v2_values(vdsp)
        side, crop = v["short_edge_threshold"], v["crop_size"]  # the DSP's square resize, then the crop
        f16 = [float(np.uint16(v[k]).view(np.float16)) for k in ("meanr", "meang", "meanb", "stdr", "stdg", "stdb")]
        return {
            "resize": (side, side), "crop": (crop, crop), "at": ((side - crop) // 2, (side - crop) // 2),
            "mean": f16[:3], "std": f16[3:], "norm": v["norma_type"], "swap": v["color_cvt_code"] != "COLOR_NO_CHANGE",
        }  # fmt: skip
    c = _v3_config(vdsp)
    return {
        "resize": (c["ResizeHeight"], c["ResizeWidth"]), "crop": (c["OimageHeight"], c["OimageWidth"]),
        "at": (c["CropY"], c["CropX"]), "mean": c["Mean"], "std": c["Std"], "norm": c["NormaType"],
        "swap": c["ColorCvtCode"] != "NO_CHANGE",
    }  # fmt: skip


def _dsp(dsp: dict[str, Any], image: Any, where: str) -> np.ndarray:
    """The card's fused op on a full-size uint8 RGB (3, H, W) image: resize, colour, crop, normalise."""
    import cv2

    if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[0] == 3):
        raise Invalid(f"{where}: input_0 must be uint8 (3, H, W) RGB planar, got {image.dtype} {image.shape}")
    (rh, rw), (ch, cw), (y0, x0) = dsp["resize"], dsp["crop"], dsp["at"]
    hwc = cv2.resize(np.ascontiguousarray(image.transpose(1, 2, 0)), (rw, rh), interpolation=cv2.INTER_LINEAR)
    if dsp["swap"]:
        hwc = hwc[..., ::-1]
    chw = hwc[y0 : y0 + ch, x0 : x0 + cw].transpose(2, 0, 1).astype(np.float32)
    if dsp["norm"] == "EQUAL":
        return chw
    if dsp["norm"].startswith("DIV255"):
        chw = chw / np.float32(255)
    if dsp["norm"] == "DIV255":
        return chw
    return (chw - np.array(dsp["mean"], np.float32)[:, None, None]) / np.array(dsp["std"], np.float32)[:, None, None]


def vamp_main(argv: list[str]) -> int:
    """``vamp -m PREFIX --vdsp_params JSON -i N -p N -b N [-s [3,H,W]] [--datalist F --path_output D] [-d N]``.

    ``-s`` is optional (the seed passes none); where given it must be the model's input [C,H,W],
    as the zoo's vamp doc shows it (``-s [3,224,224]`` for a 224 model fed full-size images).
    """
    if argv == ["--version"]:
        return _version()
    parser = argparse.ArgumentParser(prog="vamp", add_help=False)
    parser.add_argument("-m", required=True)
    parser.add_argument("--vdsp_params", required=True)
    parser.add_argument("-i", type=int, required=True)
    parser.add_argument("-p", type=int, required=True)
    parser.add_argument("-b", type=int, required=True)
    parser.add_argument("-s")
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
        for suffix in (".so", ".json", ".params"):
            if not Path(args.m + suffix).is_file() or Path(args.m + suffix).stat().st_size == 0:
                raise Invalid(f"-m {args.m}: {args.m + suffix} is missing or empty")
        dsp = validate_vdsp(json.loads(Path(args.vdsp_params).read_text()))
        import onnxruntime as ort

        session = ort.InferenceSession(Path(args.m + ".so").read_bytes(), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        model_input = list(session.get_inputs()[0].shape[1:])
        if [3, *dsp["crop"]] != model_input:
            raise Invalid(f"vdsp_params crop {list(dsp['crop'])} does not make the model's input {model_input}")
        if args.s is not None:
            try:
                shape = json.loads(args.s)
            except ValueError:
                shape = None
            if shape != model_input:
                raise Invalid(f"-s {args.s}: expected the model's input shape {model_input}")
        started = time.perf_counter()
        count = 0
        if args.datalist:
            lines = [line.strip() for line in Path(args.datalist).read_text().splitlines() if line.strip()]
            out = Path(args.path_output)
            out.mkdir(parents=True, exist_ok=True)
            for i, line in enumerate(lines):
                if FAULT == "missing" and i == len(lines) // 2:
                    continue
                with np.load(line, allow_pickle=False) as data:
                    if list(data.keys()) != ["input_0"]:
                        raise Invalid(f"{line}: expected one array input_0, found {list(data.keys())}")
                    image = data["input_0"]
                logits = session.run(None, {name: _dsp(dsp, image, line)[None]})[0].astype(np.float16)
                np.savez(out / f"output_{i:06d}.npz", output_0=logits)
                count += 1
            if FAULT == "stale":
                np.savez(out / f"output_{len(lines):06d}.npz", output_0=np.zeros((1, 1000), np.float16))
        else:
            image = np.random.default_rng(0).integers(0, 255, (3, 375, 500), dtype=np.uint8)  # an ImageNet size
            for _ in range(args.iterations):
                session.run(None, {name: _dsp(dsp, image, "speed run")[None]})
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
