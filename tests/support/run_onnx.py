"""Run an ONNX model on a saved batch with ONNX Runtime (default optimisation: integer kernels), 1 thread.

    python tests/support/run_onnx.py MODEL.onnx INPUT.npy OUTPUT.npy

A separate program so that a test can run it under an emulated CPU (qemu-x86_64 -cpu ...).
"""

from __future__ import annotations

import sys

import numpy as np
import onnxruntime as ort


def main() -> None:
    model, given, out = sys.argv[1:4]
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    np.save(out, session.run(None, {session.get_inputs()[0].name: np.load(given)})[0])


if __name__ == "__main__":
    main()
