"""Benchmark: int8 weight schemes on this CPU, int8-max on the local-init ShuffleNetV1.

Compiles int8-max with full-range int8, 7-bit int8 (``reduce_range``) and uint8 weights from one
200-image calibration set and prints, per scheme, images/s at batch 8 / 1 thread (median of
round-robin rounds, with the IQR) against the fp32 preset, and the compile's kernel check: SQNR
vs fp32 on the first 16 calibration images through ORT's integer kernels and in float, and the gap.
On x86 without VNNI this shows what `--int8-weights auto` avoids and what it picks.

    uv run python benchmarks/int8_weights.py [--rounds 15]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.toolchain import prepare, throughputs

SCHEMES = ("int8", "int8-reduced", "uint8")
SETTING = (8, 1)  # batch, threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15, help="timed round-robin rounds")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="20 calibration images, one short round: checks the script, measures nothing",
    )
    args = parser.parse_args()

    from zooflow.config import QuantSpec, ToolchainOptions
    from zooflow.store import Store
    from zooflow.toolchains.onnxruntime import OnnxRuntimeToolchain, spread

    with tempfile.TemporaryDirectory() as tmp:
        images = 20 if args.smoke else 200
        refs = prepare(Path(tmp), (images,))
        store = Store(refs["store"])
        onnx, calibration = store.ref(refs["onnx"]), store.ref(refs[f"calibration-{images}"])
        fp32 = OnnxRuntimeToolchain(ToolchainOptions()).compile(onnx, None, QuantSpec.from_preset("fp32"), store)
        paths = {"fp32": store.path(fp32, "model.onnx")}
        checks: dict[str, dict[str, Any]] = {}
        print(f"auto on this CPU: {OnnxRuntimeToolchain(ToolchainOptions()).int8_scheme().reason}")
        for scheme in SCHEMES:
            tc = OnnxRuntimeToolchain(ToolchainOptions(int8_weights=scheme))
            ref = tc.compile(onnx, calibration, QuantSpec.from_preset("int8-max"), store)
            paths[scheme], checks[scheme] = store.path(ref, "model.onnx"), ref.meta["kernel_check"]
        rates = throughputs(paths, 1 if args.smoke else args.rounds, (SETTING,), smoke=args.smoke)
        base = spread(rates[f"fp32|{SETTING[0]}|{SETTING[1]}"], "rate")["rate"]
        print(f"{'weights':14s} {'images/s':>8s} {'IQR':>6s} {'vs fp32':>7s}   SQNR integer / float / gap (dB)")
        for name in paths:
            s = spread(rates[f"{name}|{SETTING[0]}|{SETTING[1]}"], "rate")
            k = checks.get(name)
            sqnr = f"{k['sqnr_integer_db']:6.2f} / {k['sqnr_float_db']:6.2f} / {k['gap_db']:5.2f}" if k else "reference"
            print(f"{name:14s} {s['rate']:8.1f} {s['rate_iqr']:6.1f} {s['rate'] / base:6.2f}x   {sqnr}")


if __name__ == "__main__":
    main()
