"""What an int8 compile's activation ranges cost: the values they clip, and a warning when they lose too much.

TensorRT's KL search prefers to clip a tensor whose histogram is a row of spikes (flat image
regions give per-channel constants): on the project's photos it clipped 14% of one depthwise
convolution's values and the model fell to 4.7 dB SQNR. The search is right by its own
criterion, so the compile keeps it and says so, naming the tensor and the fix, instead of
handing over a bad model in silence.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from zooflow.toolchains import ranges

RANGE_FLOOR_DB = 22.0  # SQNR vs fp32 of the quantised model computed in float: below it, the ranges warn
CLIP_NOTE = 0.01  # ranges clipping more than this share of their tensor's values are counted
# a tensor whose clipping error alone caps its SQNR below this warns. Measured on the project's photos over
# 9 weight seeds: mse's worst tensor 40-44 dB, percentile (99.999) 47-55 dB, kl_divergence 4.1-23.9 dB
CLIP_FLOOR_DB = 30.0
WORST = 3


def _db(ratio: float) -> float | None:
    return round(-10.0 * math.log10(ratio), 2) if ratio > 0 else None


def range_check(stats: ranges.Statistics, found: Mapping[str, tuple[float, float]]) -> dict[str, Any]:
    """Per compile, over the whole calibration set: what each measured tensor's range clips (share of its
    values; clipping SQNR, its energy over the clipping error's), the tensors clipping most."""
    low = np.array([found[n][0] for n in stats.names])
    high = np.array([found[n][1] for n in stats.names])
    shares, errors = ranges.clipping(stats, low, high)
    order = np.argsort(-errors, kind="stable")[:WORST]
    return {
        "tensors": len(stats.names),
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
