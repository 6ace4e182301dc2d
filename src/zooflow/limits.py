"""The bounds every numeric option is checked against before any work: image sizes the decoders and
resizers take, threads and workers per core, batch sizes, and the range of each gate metric."""

from __future__ import annotations

import os
from typing import Any

# Sizes an image may be resized to on the host: at least the largest crop mmcls models take, at most
# PIL's decompression-bomb limit (Image.MAX_IMAGE_PIXELS, about 89 megapixels) and 16384 a side.
MIN_SIDE, MAX_SIDE, MAX_PIXELS = 32, 16384, 89_478_485


def parse_size(value: Any) -> Any:
    """``HEIGHTxWIDTH`` text -> (height, width), each side within what the decoders and resizers take."""
    if isinstance(value, str):
        parts = value.lower().split("x")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            raise ValueError("use HEIGHTxWIDTH, e.g. 256x256")
        value = (int(parts[0]), int(parts[1]))
    if isinstance(value, tuple | list) and len(value) == 2 and all(isinstance(v, int) for v in value):
        height, width = value
        if not (MIN_SIDE <= height <= MAX_SIDE and MIN_SIDE <= width <= MAX_SIDE) or height * width > MAX_PIXELS:
            raise ValueError(
                f"{height}x{width} is outside what images are resized to here: each side {MIN_SIDE}..{MAX_SIDE} "
                f"and at most {MAX_PIXELS:,} pixels (e.g. 256x256)"
            )
    return value


def max_threads() -> int:
    """The most threads (or worker processes) an option may ask for: 4 per core, at least 8. More only
    thrash (and each ONNX Runtime thread holds its own arena: 100000 threads grew a run to 17.5 GB)."""
    return max(8, 4 * (os.cpu_count() or 1))


MAX_BATCH = 1024

# what each metric can be: a threshold outside it is a typo (agreement:min=150 could never pass)
GATE_RANGES: dict[str, tuple[float, float, str]] = {
    "top1": (0.0, 100.0, "a percentage"),
    "top5": (0.0, 100.0, "a percentage"),
    "agreement": (0.0, 100.0, "a percentage"),
    "cosine": (-1.0, 1.0, "a cosine similarity"),
    "sqnr_db": (-100.0, 400.0, "a signal-to-noise ratio in dB (float32 arithmetic tops out near 150)"),
}
