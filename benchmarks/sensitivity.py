"""Per-layer sensitivity cost: ShuffleNetV1 on 100 probe images in <= 2 minutes on 2 cores (issue 14).

Builds a locally initialised ShuffleNetV1, compiles it int8-max on the embedded toolchain
(calibrated on 110 seeded crops of real photographs), then times, in one process:
- the sensitivity stage itself (`zooflow.sensitivity_report.measure`, what the flow's task runs):
  the first 100 calibration images preprocessed, every quantised tensor's SQNR, one
  leave-one-layer-in-float model per quantised layer run over them, the table, plot and JSON stored;
- the baseline: one pass of the int8 model over the same images (what one layer's model costs).

Prints seconds, the ratio to the baseline and to the per-layer count, and the target.
Usage: ``uv run python benchmarks/sensitivity.py [--images 100]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.support: the photographs

from tests.support.images import PHOTOS_11, write_crops
from zooflow import calibration, datasets, export, models, registry, sensitivity_report, toolchains
from zooflow.config import CalibrationOptions, DataSpec, ExportOptions, QuantSpec, ToolchainOptions
from zooflow.fetch import fetch_checkpoint
from zooflow.store import Store
from zooflow.toolchains import sensitivity
from zooflow.toolchains.onnxruntime import OnnxRuntimeToolchain

MODEL = "shufflenet-v1-1x_16xb64_in1k"
TARGET_SECONDS = 120.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=100)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="zooflow-bench-sensitivity-"))
    info = registry.resolve(MODEL)
    models.init_checkpoint(info, root / "c.pth", seed=7)
    store = Store(root / "store")
    ckpt = fetch_checkpoint(str(root / "c.pth"), store, model=MODEL, show_progress=False)
    onnx_ref = export.export_checkpoint(
        ckpt, store, model=MODEL, options=ExportOptions(logits=True, dynamic_batch=True)
    )
    crops = write_crops(root / "calib", PHOTOS_11, 110, seed=7)
    calib = calibration.build_calibration(
        datasets.scan(DataSpec(path=str(crops), num_classes=len(PHOTOS_11))),
        store,
        CalibrationOptions(per_class=10),
        seed=0,
    )
    compiled = toolchains.get("onnxruntime", ToolchainOptions()).compile(
        onnx_ref, calib, QuantSpec.from_preset("int8-max"), store
    )
    toolchain = OnnxRuntimeToolchain(ToolchainOptions())
    views = next(toolchain.calibration_batches(calib, onnx_ref, store, chunk=args.images)).astype(np.float32)
    qdq = onnx.load(str(store.path(compiled, "model.onnx")))

    started = time.perf_counter()
    sensitivity.outputs(qdq, views)
    baseline = time.perf_counter() - started
    started = time.perf_counter()
    ref = sensitivity_report.measure(store, compiled, onnx_ref, calib, images=args.images)
    took = time.perf_counter() - started
    result = sensitivity_report.load(store, ref)
    layers = len(result["layers"])
    print(f"probe images: {result['images']} (calibration images), quantised layers: {layers}")
    print(f"baseline (one int8 pass over the images): {baseline:.2f} s")
    print(
        f"sensitivity stage: {took:.1f} s = {took / baseline:.1f}x the baseline ({took / baseline / layers:.2f}x per layer)"
    )
    print(f"target: <= {TARGET_SECONDS:.0f} s -> {'met' if took <= TARGET_SECONDS else 'MISSED'}")
    top = result["layers"][0]
    print(
        f"most sensitive: {top['module']} (+{top['gain_db']:.2f} dB kept in float; int8 {result['int8_sqnr_db']:.1f} dB)"
    )


if __name__ == "__main__":
    main()
