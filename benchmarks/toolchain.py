"""Benchmark: the embedded toolchain's compiled artifacts, calibration cost, and harness overhead.

1. Throughput of every preset's compiled model vs plain ONNX Runtime on the unmodified fp32
   export, batch 8, 1 thread, measured in this run (best of 3 round-robin rounds over all models).
2. Calibration time and peak RSS per calibrate mode at 50 / 200 / 1000 images, each run in a
   fresh process so its peak memory is its own.
3. zooflow's benchmark harness (`measure`) vs a bare ``session.run`` loop on the same session.

Targets (issue 4): best artifact >= 1.25x the plain export; every mode on 1000 images <= 3 GB
peak RSS; harness within 3% of the bare loop.

    uv run python benchmarks/toolchain.py [--quick]     # --quick: 50 and 200 images only
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MODEL = "shufflenet-v1-1x_16xb64_in1k"
MODES = ("max", "percentile", "kl_divergence", "mse")


def prepare(root: Path, images: int) -> dict[str, str]:
    """A store with a dynamic-batch export and a calibration set of `images` classes (1 image each)."""
    from zooflow import calibration, datasets, demo, export
    from zooflow.config import CalibrationOptions, DataSpec, ExportOptions
    from zooflow.fetch import fetch_checkpoint
    from zooflow.store import Store

    store = Store(root / "store")
    demo.write_demo_dataset(root / "data", classes=1000, per_class=1, seed=0)
    ckpt = fetch_checkpoint("local-init", store, model=MODEL, show_progress=False)
    onnx = export.export_checkpoint(ckpt, store, model=MODEL, options=ExportOptions(dynamic_batch=True))
    dataset = datasets.scan(DataSpec(path=str(root / "data" / "val")))
    refs = {"store": str(root / "store"), "onnx": onnx.digest}
    for n in sorted({50, 200, images}):
        records = tuple(r for r in dataset.records if r.label < n)  # classes 0..n-1, one image each
        subset = datasets.Dataset(dataset.root, dataset.layout, records, n, None, dataset.labels_file, None)
        ref = calibration.build_calibration(subset, store, CalibrationOptions(per_class=1), seed=0)
        refs[f"calibration-{n}"] = ref.digest
    return refs


def _peak_rss_mb() -> float:
    """This process's own peak RSS. (`ru_maxrss` would include the parent's peak: Linux keeps it across exec.)"""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def calibrate_once(store_url: str, onnx: str, calib: str, mode: str) -> None:
    """Child process: compile int8-<mode>; print seconds and peak RSS."""
    from zooflow import toolchains
    from zooflow.config import QuantSpec
    from zooflow.store import Store

    store = Store(store_url)
    started = time.perf_counter()
    ref = toolchains.get("onnxruntime").compile(
        store.ref(onnx), store.ref(calib), QuantSpec.from_preset(f"int8-{mode}"), store
    )
    seconds = time.perf_counter() - started
    peak = _peak_rss_mb()
    print(
        json.dumps(
            {"seconds": seconds, "peak_mb": peak, "images": ref.meta["calibration_images"], "digest": ref.digest}
        )
    )


def throughput(path: Path, batch: int = 8, repeats: int = 5, iterations: int = 30) -> float:
    """Best images/s of a bare loop, 1 thread."""
    from zooflow.toolchains.onnxruntime import session

    sess = session(path, 1)
    feed = {sess.get_inputs()[0].name: np.random.default_rng(0).standard_normal((batch, 3, 224, 224), dtype=np.float32)}
    for _ in range(3):
        sess.run(None, feed)
    best = 0.0
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(iterations):
            sess.run(None, feed)
        best = max(best, batch * iterations / (time.perf_counter() - started))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="calibrate on 50 and 200 images only")
    parser.add_argument(
        "--calibrate", nargs=4, metavar=("STORE", "ONNX", "CALIBRATION", "MODE"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.calibrate:
        calibrate_once(*args.calibrate)
        return

    from zooflow import toolchains
    from zooflow.config import PRESETS, BenchmarkSpec, QuantSpec
    from zooflow.store import Store
    from zooflow.toolchains.onnxruntime import measure, session

    sizes = (50, 200) if args.quick else (50, 200, 1000)
    with tempfile.TemporaryDirectory() as tmp:
        refs = prepare(Path(tmp), max(sizes))
        store = Store(refs["store"])
        plain = store.path(refs["onnx"])

        print("1. throughput at batch 8, 1 thread, vs plain ONNX Runtime on the fp32 export (same run)")
        tc = toolchains.get("onnxruntime")
        compiled = {
            p: tc.compile(store.ref(refs["onnx"]), store.ref(refs["calibration-200"]), QuantSpec.from_preset(p), store)
            for p in PRESETS
        }
        paths = {"plain export": plain, **{p: store.path(ref, "model.onnx") for p, ref in compiled.items()}}
        rates = dict.fromkeys(paths, 0.0)
        for _ in range(3):  # round-robin rounds: drift on a shared machine hits every model alike
            for name, path in paths.items():
                rates[name] = max(rates[name], throughput(path, repeats=2))
        base = rates["plain export"]
        for name, rate in rates.items():
            print(f"   {name:22s} {rate:7.1f} images/s  {rate / base:5.2f}x")
        best = max((r / base, p) for p, r in rates.items() if not p.startswith("plain"))
        print(
            f"   best artifact: {best[1]} at {best[0]:.2f}x (target >= 1.25x)  {'PASS' if best[0] >= 1.25 else 'FAIL'}"
        )

        print("2. int8 calibration per mode (fresh process each): seconds, peak RSS")
        worst = 0.0
        for n in sizes:
            for mode in MODES:
                out = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--calibrate",
                        refs["store"],
                        refs["onnx"],
                        refs[f"calibration-{n}"],
                        mode,
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                row = json.loads(out.stdout.strip().splitlines()[-1])
                if n == max(sizes):
                    worst = max(worst, row["peak_mb"])
                print(f"   {n:5d} images  {mode:14s} {row['seconds']:7.1f} s  {row['peak_mb']:7.0f} MiB")
        print(
            f"   worst peak at {max(sizes)} images: {worst:.0f} MiB (target <= 3072)  {'PASS' if worst <= 3072 else 'FAIL'}"
        )

        print("3. benchmark harness vs bare session.run loop (int8-max, batch 8, 1 thread)")
        path = store.path(compiled["int8-max"], "model.onnx")
        spec = BenchmarkSpec(batch_sizes=(8,), threads=(1,), warmup=3, trials=5, iterations=30)
        harness, bare = [], []
        for _ in range(3):  # interleaved, so drift affects both
            harness.append(measure(path, [8, 3, 224, 224], spec, dynamic=True)[0]["throughput"])
            sess = session(path, 1)
            feed = {
                sess.get_inputs()[0].name: np.random.default_rng(0).standard_normal((8, 3, 224, 224), dtype=np.float32)
            }
            for _ in range(3):
                sess.run(None, feed)
            started = time.perf_counter()
            for _ in range(spec.trials * spec.iterations):
                sess.run(None, feed)
            bare.append(8 * spec.trials * spec.iterations / (time.perf_counter() - started))
        ratio = float(np.median(harness) / np.median(bare))
        print(f"   harness {np.median(harness):.1f} images/s, bare loop {np.median(bare):.1f} images/s: {ratio:.3f}x")
        print(f"   within 3%: {'PASS' if abs(1 - ratio) <= 0.03 else 'FAIL'}")


if __name__ == "__main__":
    main()
