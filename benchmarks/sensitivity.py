"""Per-layer sensitivity cost: ShuffleNetV1 on 100 probe images in <= 2 minutes on 2 cores (issue 14).

Builds a locally initialised ShuffleNetV1, compiles it int8-max on the embedded toolchain
(calibrated on crops of real photographs), then times, in one process on the same 100 probe
images (seeded crops of the photographs):
- `zooflow.toolchains.sensitivity.rank`: the tensor SQNRs and one leave-one-layer-in-float model
  per quantised layer, each run over the probe images;
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
from zooflow import calibration, datasets, export, models, registry, toolchains
from zooflow.config import CalibrationOptions, DataSpec, ExportOptions, QuantSpec, ToolchainOptions
from zooflow.fetch import fetch_checkpoint
from zooflow.preprocess import Transform, load_rgb
from zooflow.store import Store
from zooflow.toolchains import sensitivity
from zooflow.toolchains.onnxruntime import prepare_for_qdq, slim_model

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
    crops = write_crops(root / "calib", PHOTOS_11, 33, seed=7)
    calib = calibration.build_calibration(
        datasets.scan(DataSpec(path=str(crops), num_classes=len(PHOTOS_11))),
        store,
        CalibrationOptions(per_class=3),
        seed=0,
    )
    compiled = toolchains.get("onnxruntime", ToolchainOptions()).compile(
        onnx_ref, calib, QuantSpec.from_preset("int8-max"), store
    )
    probe = write_crops(root / "probe", PHOTOS_11, args.images, seed=8)
    transform = Transform.from_spec(onnx_ref.meta["preprocess"])
    files = sorted(probe.glob("*"))[: args.images]
    views = np.stack([transform.normalize(transform.crop_uint8(load_rgb(f)[0])) for f in files]).astype(np.float32)
    prepared_path, _ = prepare_for_qdq(slim_model(store.path(onnx_ref), root / "slim.onnx"), root)
    qdq, prepared = onnx.load(str(store.path(compiled, "model.onnx"))), onnx.load(str(prepared_path))

    started = time.perf_counter()
    sensitivity.outputs(qdq, views)
    baseline = time.perf_counter() - started
    started = time.perf_counter()
    result = sensitivity.rank(qdq, prepared, views)
    took = time.perf_counter() - started
    layers = len(result["layers"])
    print(f"probe images: {len(views)}, quantised layers: {layers}")
    print(f"baseline (one int8 pass over the images): {baseline:.2f} s")
    print(
        f"sensitivity rank: {took:.1f} s = {took / baseline:.1f}x the baseline ({took / baseline / layers:.2f}x per layer)"
    )
    print(f"target: <= {TARGET_SECONDS:.0f} s -> {'met' if took <= TARGET_SECONDS else 'MISSED'}")
    top = result["layers"][0]
    print(
        f"most sensitive: {top['module']} (+{top['gain_db']:.2f} dB kept in float; int8 {result['int8_sqnr_db']:.1f} dB)"
    )


if __name__ == "__main__":
    main()
