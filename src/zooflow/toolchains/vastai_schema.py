"""What zooflow writes for Vastai's tools: ``vamc`` configs (v2 and v3) and ``vdsp_params`` (v2 and v3).

Every value set here is the vendor's published one (shared/docs/vastai-toolchain.md, checked
against the public model zoo's files): enum strings and DTypes are typed `Literal`s, so a value
the real tools would not know cannot be written. The public zoo ships misspelled keys
(``alibrate_mode``) that vamc silently ignores; writing from these models makes that impossible.
Where the public material does not say a value, the choice is marked "inferred".
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from zooflow.config import QuantSpec
from zooflow.preprocess import Transform
from zooflow.toolchains.base import ToolError, quant_label

Generation = Literal["v2", "v3"]
DEFAULT_PERCENTILE = QuantSpec.model_fields["percentile"].default


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ------------------------------------------------------------------ vamc v2 (`vamc build`)
class V2Model(_Strict):
    name: str
    inputs: dict[str, list[int]]
    checkpoint: str


class V2Calibration(_Strict):
    quant_mode: Literal["max", "percentile", "kl_divergence", "mse"]
    per_channel: bool
    # convs left unquantised, by index (the zoo's classification/mobilenet_v3/.../showlo_mobilenetv3.yaml)
    skip_conv_layers: list[int] | None = None


class V2Engine(_Strict):
    type: Literal["vacc", "debug"] = "vacc"
    common: dict[Literal["do_quantization"], bool]
    add_extra_ops_to_graph: dict[Literal["type"], Literal["softmax"] | None] = {"type": None}
    calibration: V2Calibration  # kept for fp16 too, as every public v2 fp16 config does (vamc ignores it)


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
    dataset: V2Dataset
    workspace: V2Workspace


# ---------------------------------------------------------------- vamc v3 (`vamc compile`)
class V3Frontend(_Strict):
    shape: dict[str, list[int]]
    type: Literal["onnx"] = "onnx"
    checkpoint: str
    dtype: Literal["fp32"] = "fp32"


class V3Quantize(_Strict):
    calibrate_mode: Literal["max", "percentile", "kl_divergence", "mse"]
    quantize_per_channel: bool
    # layers left unquantised, by index (the zoo's cv/detection/yolov12/.../official_yolov12_int8.yaml and
    # cv/classification/yolov11_cls/.../official_yolov11_cls_int8.yaml)
    skip_conv_layers: list[int] | None = None
    skip_matmul_layers: list[int] | None = None
    # only when the user passes it (--vamc-calibrate-range): the zoo's v3 NLP configs have it, with
    # calibrate_mode max; no published classification config does
    calibrate_range: float | None = None


class V3Backend(_Strict):
    type: Literal["tvm_vacc"] = "tvm_vacc"
    dtype: Literal["fp16", "int8"]
    compile: dict[Literal["cluster_mode"], int] = {"cluster_mode": 0}
    quantize: V3Quantize | None = None  # omitted for fp16, as most public v3 fp16 configs do


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
    resize = resize_side(preprocess)
    return [
        {"type": "DecodeImage"},
        {"type": "Resize", "size": [resize, resize]},
        {"type": "CenterCrop", "crop_size": list(preprocess["crop"])},
        {"type": "Normalize", "div255": False, "mean": list(preprocess["mean"]), "std": list(preprocess["std"])},
        {"type": "ToTensor"},
    ]


def resize_side(preprocess: dict[str, Any]) -> int:
    """The DSP's square resize: the model's short-side resize (or its crop when it has none)."""
    return Transform.from_spec(preprocess).resize


SKIP_INDEX = (
    "0-based position among the ONNX file's nodes of that op type, in graph order (inferred: the public configs "
    "list 0-based indices and do not define them)"
)


def skip_lists(generation: Generation, onnx_path: Path, float_layers: list[str]) -> dict[str, Any]:
    """The vamc skip lists for the layers int8-mixed keeps in float, and each layer vamc cannot take, with why.

    The public configs have ``skip_conv_layers`` (v2: engine.calibration; v3: backend.quantize) and
    ``skip_matmul_layers`` (v3 only); nothing published skips a Gemm (a fully connected layer)."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    nodes, inputs = list(graph.node), {i.name for i in graph.input}
    index = {op: {n.name: i for i, n in enumerate(m for m in nodes if m.op_type == op)} for op in ("Conv", "MatMul")}
    keys = {"Conv": "skip_conv_layers", **({"MatMul": "skip_matmul_layers"} if generation == "v3" else {})}
    lists: dict[str, list[int]] = {}
    passed, refused = [], []
    for layer in float_layers:
        op = next((n.op_type for n in nodes if n.name == layer), None)
        if op in keys and layer in index[op]:
            lists.setdefault(keys[op], []).append(index[op][layer])
            passed.append({"node": layer, "key": keys[op], "index": index[op][layer]})
        else:
            if layer in inputs:
                why = f"vamc {generation} configs have no key to leave the model's input in float"
            elif op is not None:
                why = f"vamc {generation} configs have no key to keep a {op} node in float (their skip lists take {' and '.join(keys)} nodes only)"
            else:
                why = "no node of that name in the ONNX file vamc compiles"
            refused.append({"node": layer, "op": op, "reason": why})
    return {
        "lists": {k: sorted(v) for k, v in lists.items()},
        "passed": passed,
        "refused": refused,
        "index": SKIP_INDEX,
    }


def vamc_config(
    generation: Generation,
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
    skip: dict[str, list[int]] | None = None,
    calibrate_range: float | None = None,
) -> BaseModel:
    """The compile config for one model and quantisation spec (`skip`: `skip_lists`' lists, int8-mixed;
    `calibrate_range`: the v3 key, written only when the user passed it)."""
    skip = skip or {}
    int8 = quant.dtype == "int8"
    if calibrate_range is not None:
        _check_calibrate_range(generation, quant, calibrate_range)
    if quant.dtype not in ("int8", "fp16"):
        raise ToolError(
            "vamc compiles fp16 and int8 only", "use --quant fp16 or an int8 preset with --toolchain vastai"
        )
    if calibration_dir is None and (int8 or generation == "v2"):
        need = "int8 compilation" if int8 else "a v2 fp16 config (its dataset block is kept, as the vendor's are)"
        raise ToolError(f"{need} needs a calibration set", "run the calibration stage first (or pass --calibration)")
    ops = transform_ops(preprocess)
    sampler = Sampler(suffix=suffix, get_data_num=calibration_count)
    if quant.calibrate == "percentile" and quant.percentile != DEFAULT_PERCENTILE and calibrate_range is None:
        where = (
            "calibration block has only quant_mode and per_channel"
            if generation == "v2"
            else (
                "quantize block has no key for it (calibrate_range appears only in the zoo's NLP configs, with "
                "calibrate_mode max, so what it means for percentile is not published)"
            )
        )
        raise ToolError(
            f"vamc {generation} classification configs cannot express a percentile of {quant.percentile:g}: their "
            f"{where}, so vamc applies its own built-in percentile",
            f"leave the percentile at its default {DEFAULT_PERCENTILE:g} to accept vamc's built-in value, use "
            "another calibration mode (int8-max, int8-mse, int8-kl_divergence)"
            + (
                f", or on v3 pass the key yourself: --vamc-calibrate-range {quant.percentile / 100:g} (unpublished for "
                "classification: only if your vamc release documents it)"
                if generation == "v3"
                else ""
            ),
        )
    if generation == "v2":
        return V2Config(
            model=V2Model(name=name, inputs={"input": input_shape}, checkpoint=str(onnx_path)),
            engine=V2Engine(
                common={"do_quantization": int8},
                # fp16: vamc ignores the block; "max" is the mode of the vendor's own mmcls ShuffleNetV1 config
                calibration=V2Calibration(
                    quant_mode=quant.calibrate or "max",
                    per_channel=quant.per_channel,
                    skip_conv_layers=skip.get("skip_conv_layers") if int8 else None,
                ),
            ),
            dataset=V2Dataset(path=str(calibration_dir), sampler=sampler, transform_ops=ops),
            workspace=V2Workspace(work_dir=str(workspace)),
        )
    return V3Config(
        name=f"{name}_{quant_label(quant).replace('-', '_')}",
        frontend=V3Frontend(checkpoint=str(onnx_path), shape={"input": input_shape}),
        backend=V3Backend(
            dtype="int8" if int8 else "fp16",
            quantize=V3Quantize(
                calibrate_mode=quant.calibrate,
                quantize_per_channel=quant.per_channel,
                skip_conv_layers=skip.get("skip_conv_layers"),
                skip_matmul_layers=skip.get("skip_matmul_layers"),
                calibrate_range=calibrate_range,
            )
            if int8 and quant.calibrate
            else None,
        ),
        dataset=V3Dataset(path=str(calibration_dir), sampler=sampler, process_ops=ops) if int8 else None,
        workspace={"path": str(workspace)},
    )


def _check_calibrate_range(generation: Generation, quant: QuantSpec, value: float) -> None:
    """The explicit v3 key is refused where it cannot be written, or where it would contradict --percentile."""
    if generation != "v3":
        raise ToolError(
            "--vamc-calibrate-range is a key of vamc v3's quantize block; a v2 config has no such key",
            "add --vamc-generation v3, or leave --vamc-calibrate-range out",
        )
    if quant.dtype != "int8":
        raise ToolError(
            f"--vamc-calibrate-range applies to int8 compiles; {quant.dtype} has no quantize block",
            "use an int8 preset, or leave --vamc-calibrate-range out",
        )
    if (
        quant.calibrate == "percentile"
        and quant.percentile != DEFAULT_PERCENTILE
        and not math.isclose(quant.percentile / 100, value, rel_tol=1e-9)
    ):
        raise ToolError(
            f"--percentile {quant.percentile:g} and --vamc-calibrate-range {value:g} disagree "
            f"(the key is a fraction: {quant.percentile / 100:g} for that percentile)",
            "pass one of them, or make them agree",
        )


def percentile_used(
    generation: Generation, quant: QuantSpec, calibrate_range: float | None = None
) -> float | str | None:
    """What the compiled model's percentile really is: vamc's own (no published classification config,
    v2 or v3, has a key for it), unless the user wrote v3's calibrate_range themselves."""
    if quant.calibrate != "percentile":
        return None
    if calibrate_range is not None and generation == "v3":
        return f"calibrate_range {calibrate_range:g}, written as the user passed it (--vamc-calibrate-range)"
    return f"vamc {generation} built-in (a {generation} classification config has no key for it)"


def dump(config: BaseModel) -> dict[str, Any]:
    """The config as YAML-ready data: absent optional blocks left out, null values inside blocks kept."""
    data = config.model_dump(mode="json", exclude_none=True)
    if isinstance(
        config, V2Config
    ):  # `exclude_none` also drops ``{type: null}``, which the vendor's v2 files spell out
        data["engine"]["add_extra_ops_to_graph"] = dict(config.engine.add_extra_ops_to_graph)
    return data


# -------------------------------------------------------------------------- vdsp_params
def fp16_bits(value: float) -> int:
    """The IEEE float16 bit pattern of `value`, as vdsp_params v2 stores mean/std."""
    return int(np.float16(value).view(np.uint16))


V2DType = Literal["UINT_32", "INT", "UINT_16"]
# (property, DType) in the fixed order of every public v2 file (e.g. mmcls-shufflenet_v1-vdsp_params.json)
V2_LAYOUT: tuple[tuple[str, V2DType], ...] = (
    ("iimage_format", "UINT_32"),
    ("iimage_width", "INT"),
    ("iimage_height", "INT"),
    ("iimage_width_pitch", "UINT_32"),
    ("iimage_height_pitch", "UINT_32"),
    ("short_edge_threshold", "INT"),
    ("crop_size", "UINT_32"),
    ("meanr", "UINT_16"),
    ("meang", "UINT_16"),
    ("meanb", "UINT_16"),
    ("stdr", "UINT_16"),
    ("stdg", "UINT_16"),
    ("stdb", "UINT_16"),
    ("norma_type", "INT"),
    ("resize_type", "INT"),
    ("color_cvt_code", "UINT_16"),
    ("color_space", "UINT_16"),
)
V2_PROPERTIES = tuple(p for p, _ in V2_LAYOUT)


class V2Values(_Strict):
    """The values of a v2 file, typed by the enum strings the public files use."""

    iimage_format: Literal["RGB_PLANAR"]
    iimage_width: int
    iimage_height: int
    iimage_width_pitch: int
    iimage_height_pitch: int
    short_edge_threshold: int
    crop_size: int
    meanr: int
    meang: int
    meanb: int
    stdr: int
    stdg: int
    stdb: int
    norma_type: Literal["MINUSMEAN_DIVSTD", "DIV255_MINUSMEAN_DIVSTD"]
    resize_type: Literal["BILINEAR_CV"]
    # COLOR_BGR2RGB is what the vendor writes for a BGR-trained model fed RGB planar images
    # (megvii shufflenet_v2): the swap is symmetric
    color_cvt_code: Literal["COLOR_NO_CHANGE", "COLOR_BGR2RGB"]
    color_space: Literal["COLOR_SPACE_BT709"]


class V3OpConfig(_Strict):
    """The v3 fused op's config, fields in the order of the vendor's mmcls ShuffleNetV1 file."""

    IimageFormat: Literal["RGB_PLANAR"]
    IimageWidth: int
    IimageHeight: int
    OimageWidth: int
    OimageHeight: int
    CropX: int
    CropY: int
    ResizeWidth: int
    ResizeHeight: int
    IimageWidthPitch: int
    IimageHeightPitch: int
    Mean: list[float]
    Std: list[float]
    NormaType: Literal["MINUSMEAN_DIVSTD", "DIV255_MINUSMEAN_DIVSTD", "EQUAL", "DIV255"]
    ColorCvtCode: Literal["NO_CHANGE", "RGB2BGR", "BGR2RGB"]
    ResizeType: Literal["BILINEAR_CV", "BILINEAR_PILLOW"]


def vdsp_params(generation: Generation, preprocess: dict[str, Any]) -> dict[str, Any]:
    """The card's DSP preprocessing (fixed square resize, centre crop, normalise) for this model.

    The input size fields hold the resize size, as the vendor's files do, although vamp is fed
    full-resolution images: the DSP resizes each from its own size.
    """
    side = resize_side(preprocess)
    crop_h, crop_w = (int(v) for v in preprocess["crop"])
    mean, std = preprocess["mean"], preprocess["std"]
    bgr = not preprocess.get("to_rgb", True)  # mmcls to_rgb=False: the model was trained on BGR
    if generation == "v2":
        values = V2Values(
            iimage_format="RGB_PLANAR",
            iimage_width=side,
            iimage_height=side,
            iimage_width_pitch=side,
            iimage_height_pitch=side,
            short_edge_threshold=side,
            crop_size=crop_h,
            meanr=fp16_bits(mean[0]),
            meang=fp16_bits(mean[1]),
            meanb=fp16_bits(mean[2]),
            stdr=fp16_bits(std[0]),
            stdg=fp16_bits(std[1]),
            stdb=fp16_bits(std[2]),
            norma_type="MINUSMEAN_DIVSTD",
            resize_type="BILINEAR_CV",
            color_cvt_code="COLOR_BGR2RGB" if bgr else "COLOR_NO_CHANGE",
            color_space="COLOR_SPACE_BT709",
        ).model_dump()
        return {
            "vdsp_op_type": "RGB_RESIZE_CVTCOLOR_CROP_NORMALIZATION_TENSORIZATION_U8",
            "config": [
                {"Property": p, "DType": dtype, "ParamType": "ELEMENT", "Value": values[p]} for p, dtype in V2_LAYOUT
            ],
        }
    config = V3OpConfig(
        IimageFormat="RGB_PLANAR",
        IimageWidth=side,
        IimageHeight=side,
        OimageWidth=crop_w,
        OimageHeight=crop_h,
        CropX=(side - crop_w) // 2,
        CropY=(side - crop_h) // 2,
        ResizeWidth=side,
        ResizeHeight=side,
        IimageWidthPitch=side,
        IimageHeightPitch=side,
        Mean=[float(np.float16(v)) for v in mean],
        Std=[float(np.float16(v)) for v in std],
        NormaType="MINUSMEAN_DIVSTD",
        ColorCvtCode="BGR2RGB" if bgr else "NO_CHANGE",
        ResizeType="BILINEAR_CV",
    )
    return {"OpType": "FUSION_OP_RGB_RESIZE_CVTCOLOR_CROP_NORM_TENSOR", "OpConfig": config.model_dump()}
