"""What an int8 compile's activation ranges cost: the values they clip, and a warning when they lose too much.

TensorRT's KL search prefers to clip a tensor whose histogram is a row of spikes (flat image
regions give per-channel constants): on the project's photos it clipped 14% of one depthwise
convolution's values and the model fell to 4.7 dB SQNR. The search is right by its own
criterion, so the compile keeps it and says so, naming the tensor and the fix, instead of
handing over a bad model in silence.

The ranges checked are the ones the compiled model applies, read from its QuantizeLinear nodes, not
the ones calibration asked for: ONNX Runtime fixes a Softmax output's range to [0, 1], moves every
range so that zero is exact, and int8-mixed takes the quantisation off the layers it keeps in float.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from zooflow.toolchains import ranges

RANGE_FLOOR_DB = 22.0  # SQNR vs fp32 of the quantised model computed in float: below it, the ranges warn
CLIP_NOTE = 0.01  # ranges clipping more than this share of their tensor's values are counted
# a tensor whose clipping error alone caps its SQNR below this warns. Measured on the project's photos over
# 9 weight seeds: mse's worst tensor 40-44 dB, percentile (99.999) 47-55 dB, kl_divergence 4.1-23.8 dB (ranges as applied)
CLIP_FLOOR_DB = 30.0
WORST = 3


def _db(ratio: float) -> float | None:
    return round(-10.0 * math.log10(ratio), 2) if ratio > 0 else None


_ORT_OUTPUT_SUFFIX = "_QuantizeLinear_Input"  # ORT renames a graph output it quantises: `<name>` + this


def used_ranges(model: Path) -> dict[str, tuple[float, float]]:
    """Per activation tensor the QDQ model quantises, the range its QuantizeLinear represents:
    [(qmin - zero_point) x scale, (qmax - zero_point) x scale] for its uint8 (or int8) zero point."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(model), load_external_data=False).graph
    constants = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    found: dict[str, tuple[float, float]] = {}
    for node in graph.node:
        if node.op_type != "QuantizeLinear" or node.input[0] in constants or len(node.input) < 3:
            continue
        scale = float(np.asarray(constants[node.input[1]], np.float64).reshape(-1)[0])
        zero_point = np.asarray(constants[node.input[2]])
        info = np.iinfo(zero_point.dtype)
        zp = int(zero_point.reshape(-1)[0])
        found[node.input[0].removesuffix(_ORT_OUTPUT_SUFFIX)] = ((info.min - zp) * scale, (info.max - zp) * scale)
    return found


def range_check(
    stats: ranges.Statistics, used: Mapping[str, tuple[float, float]], aliases: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Per compile, over the whole calibration set: what the range the compiled model applies to each measured
    tensor clips (share of its values; clipping SQNR, its energy over the clipping error's), the tensors
    clipping most. `used`: `used_ranges` of the model; `aliases`: tensor -> the measured tensor it equals
    (their ranges all apply to its values). A tensor the model leaves in float clips nothing."""
    applied: dict[str, list[tuple[float, float]]] = {}
    for name, bounds in used.items():
        applied.setdefault((aliases or {}).get(name, name), []).append(bounds)
    low = np.array([max((b[0] for b in applied.get(n, ())), default=-np.inf) for n in stats.names])
    high = np.array([min((b[1] for b in applied.get(n, ())), default=np.inf) for n in stats.names])
    shares, errors = ranges.clipping(stats, low, high)
    order = np.argsort(-errors, kind="stable")[:WORST]
    return {
        "tensors": len(stats.names),
        # measured tensors with no quantiser of their own: fused into the Relu after them (whose range is
        # checked) or kept in float by int8-mixed
        "fused_or_float": sum(n not in applied for n in stats.names),
        "ranges_from": "the compiled model's QuantizeLinear nodes",
        "clip_over_1pct": int(np.count_nonzero(shares > CLIP_NOTE)),
        "min_clip_sqnr_db": _db(float(errors.max())) if errors.any() else None,
        "worst": [
            {
                "tensor": stats.names[i],
                "clipped_pct": round(float(shares[i]) * 100, 3),
                "clip_sqnr_db": _db(float(errors[i])),
                "range": [float(low[i]), float(high[i])],
                "observed": [float(stats.lo[i]), float(stats.hi[i])],
            }
            for i in order
            if errors[i] > 0
        ],
        "floor_db": RANGE_FLOOR_DB,
    }


def range_warning(calibrate: str, kernel: Mapping[str, Any], check: Mapping[str, Any]) -> str | None:
    """The warning for ranges that cost too much: the model keeps under the floor's SQNR on the kernel check
    (computed in float, so the kernels are not to blame), or one tensor's clipping alone caps it under
    CLIP_FLOOR_DB; it names the tensor and the fix. None when neither."""
    sqnr = kernel.get("sqnr_float_db")
    worst = check["worst"][0] if check["worst"] else None  # listed only when it clips: its SQNR is a number
    clips = worst is not None and worst["clip_sqnr_db"] < CLIP_FLOOR_DB
    if not clips and (sqnr is None or sqnr >= check["floor_db"]):
        return None
    said = (
        f"int8-{calibrate} keeps {sqnr:.1f} dB SQNR vs fp32 on the first {kernel.get('images')} calibration "
        f"images (computed in float; floor {check['floor_db']:.0f} dB)"
    )
    if worst is None or not clips:
        return (
            f"{said}, and no range clips much (the loss is rounding): keep the most sensitive layers in float "
            "with int8-mixed, or compile fp16"
        )
    fix = {
        "kl_divergence": "compile with int8-mse or int8-max (TensorRT's KL search misjudges spiky histograms)",
        "percentile": "raise --percentile, or compile with int8-mse or int8-max",
    }.get(calibrate, "compile with int8-mse or int8-max")
    but = "" if sqnr is not None and sqnr < check["floor_db"] else "but "  # the 16 images can miss what clips
    return (
        f"{said}; {but}the range of {worst['tensor']} clips {worst['clipped_pct']:.2f}% of its calibration values, "
        f"which alone caps that tensor at {worst['clip_sqnr_db']:.1f} dB SQNR (floor {CLIP_FLOOR_DB:.0f} dB): "
        f"{fix}, or keep that layer in float with int8-mixed"
    )
