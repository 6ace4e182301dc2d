"""Honest int8 on the embedded toolchain, checked against float maths on eleven real photographs.

For two weight seeds of the project's locally initialised ShuffleNetV1 (BatchNorm statistics
re-estimated), calibrated on seeded random crops of the photos and tested on their centre crops:
ORT's integer kernels against the same QDQ model computed in float (graph optimisation off),
and every calibrate mode against the fp32 model. Then that every knob does what its name says.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from tests.conftest import MODEL
from tests.support.images import PHOTOS_11, photo, write_crops
from zooflow import calibration, datasets, export, models, toolchains
from zooflow.config import CalibrationOptions, DataSpec, ExportOptions, QuantSpec, ToolchainOptions
from zooflow.fetch import fetch_checkpoint
from zooflow.metrics import sqnr_db
from zooflow.preprocess import Transform
from zooflow.store import ArtifactRef, Store
from zooflow.toolchains import rangecheck, ranges
from zooflow.toolchains.onnxruntime import STATISTICS, prepare_for_qdq, session, slim_model

# int8 numerics over several seeds of real photos (45 s to build the cases): the slow tier
pytestmark = pytest.mark.slow

SEEDS = (7, 11)
INT8 = ("int8-max", "int8-percentile", "int8-kl_divergence", "int8-mse")
CALIBRATION_IMAGES = 99  # 9 random crops per photo; the views under test are the photos' centre crops


def _outputs(path: Path, views: np.ndarray, *, optimize: bool = True) -> np.ndarray:
    sess = session(path, optimize=optimize)
    return np.asarray(sess.run(None, {sess.get_inputs()[0].name: views})[0])


def _build(root: Path, seed: int, model_info: Any) -> dict[str, Any]:
    models.init_checkpoint(model_info, root / "checkpoint.pth", seed=seed)
    store = Store(root / "store")
    ckpt = fetch_checkpoint(str(root / "checkpoint.pth"), store, model=MODEL, show_progress=False)
    onnx_ref = export.export_checkpoint(
        ckpt, store, model=MODEL, options=ExportOptions(logits=True, dynamic_batch=True)
    )
    val = write_crops(root / "crops", PHOTOS_11, CALIBRATION_IMAGES, seed=seed)
    dataset = datasets.scan(DataSpec(path=str(val), num_classes=len(PHOTOS_11)))
    per_class = CALIBRATION_IMAGES // len(PHOTOS_11)
    calib = calibration.build_calibration(dataset, store, CalibrationOptions(per_class=per_class), seed=0)
    tc = toolchains.get("onnxruntime", ToolchainOptions(calibration_chunk=16))
    compiled = {p: tc.compile(onnx_ref, calib, QuantSpec.from_preset(p), store) for p in ("fp32", *INT8)}
    transform = Transform.from_spec(onnx_ref.meta["preprocess"])
    views = np.stack([transform.normalize(transform.crop_uint8(photo(n))) for n in PHOTOS_11])
    paths = {p: store.path(ref, "model.onnx") for p, ref in compiled.items()}
    return {
        "store": store,
        "onnx": onnx_ref,
        "calibration": calib,
        "compiled": compiled,
        "views": views,
        "reference": _outputs(paths["fp32"], views),
        "integer": {p: _outputs(paths[p], views) for p in INT8},
        "float": {p: _outputs(paths[p], views, optimize=False) for p in INT8},
    }


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory, model_info: Any) -> dict[int, dict[str, Any]]:
    return {seed: _build(tmp_path_factory.mktemp(f"int8-seed{seed}"), seed, model_info) for seed in SEEDS}


def test_integer_kernels_compute_what_the_model_says(cases: dict[int, dict[str, Any]]) -> None:
    """The compiled file through ORT's integer kernels vs the same file computed in float: no saturation."""
    table = {}
    for seed, case in cases.items():
        for preset in INT8:
            integer = sqnr_db(case["integer"][preset], case["reference"])
            floating = sqnr_db(case["float"][preset], case["reference"])
            table[(seed, preset)] = (round(integer, 1), round(floating, 1))
            assert floating - integer <= 3.0, (seed, preset, integer, floating)
            check = case["compiled"][preset].meta["kernel_check"]  # the compile's own check agrees
            assert check["gap_db"] <= 3.0 and "warning" not in check, check
    print("SQNR vs fp32 (integer kernels, float):", table)


def test_every_calibrate_mode_stays_close_to_fp32_or_its_compile_says_why(cases: dict[int, dict[str, Any]]) -> None:
    """max, percentile and mse within 22 dB of fp32 at both seeds, with no warning; kl_divergence is held to
    the same floor or to a compile warning naming the tensor its ranges clip.

    TensorRT's KL search ignores where the clipped mass goes (it all lands in P's and Q's last bin),
    and the flat regions of these photos (black sky, borders) put spikes in the depthwise
    convolutions' histograms: over seeds 1-13 it scored 4.7-27.6 dB here while max scored 26-31
    (README, "int8 calibrate modes"). Its correctness is tested against the plain loop instead.
    """
    table = {}
    for seed, case in cases.items():
        for preset in INT8:
            sqnr = round(sqnr_db(case["integer"][preset], case["reference"]), 1)
            check = case["compiled"][preset].meta["range_check"]
            table[(seed, preset)] = (sqnr, check["min_clip_sqnr_db"], check.get("warning"))
            assert np.isfinite(sqnr)
            if preset != "int8-kl_divergence":
                assert sqnr >= 22.0 and "warning" not in check, (seed, preset, sqnr, check)
                continue
            assert sqnr >= 22.0 or "warning" in check, (seed, preset, sqnr, check)
            if "warning" in check:
                worst = check["worst"][0]
                assert worst["tensor"] in check["warning"] and "int8-mse" in check["warning"], check
                assert worst["clip_sqnr_db"] < rangecheck.CLIP_FLOOR_DB or check["floor_db"] > sqnr
    print("SQNR vs fp32 on 11 photos (SQNR, least clipping SQNR, warning):", table)


def _activation_scales(store: Store, ref: ArtifactRef) -> dict[str, float]:
    """Per activation tensor of a QDQ model, the scale of its QuantizeLinear."""
    model = onnx.load(str(store.path(ref, "model.onnx")))
    values = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    return {
        node.input[0]: float(values[node.input[1]])
        for node in model.graph.node
        if node.op_type == "QuantizeLinear" and node.input[0] not in values
    }


def test_the_percentile_reaches_the_calibrator(cases: dict[int, dict[str, Any]]) -> None:
    case = cases[SEEDS[0]]
    store = case["store"]
    spec = QuantSpec(dtype="int8", calibrate="percentile", percentile=99.0)
    low = toolchains.get("onnxruntime").compile(case["onnx"], case["calibration"], spec, store)
    high = case["compiled"]["int8-percentile"]
    assert low.digest != high.digest
    assert low.meta["percentile"] == 99.0 and "percentile of |x| (99.0)" in low.meta["calibration_method"]
    a, b = _activation_scales(store, low), _activation_scales(store, high)
    assert a.keys() == b.keys()
    smaller = [k for k in a if a[k] < b[k]]
    assert len(smaller) > 0.9 * len(a)  # a lower percentile clips: most ranges (and scales) shrink
    assert all(a[k] <= b[k] for k in a)


def test_chunks_change_memory_only_and_kl_is_not_max(cases: dict[int, dict[str, Any]], tmp_path: Path) -> None:
    case = cases[SEEDS[0]]
    store, onnx_ref = case["store"], case["onnx"]
    val = write_crops(tmp_path / "crops", PHOTOS_11, 22, seed=3)
    scanned = datasets.scan(DataSpec(path=str(val), num_classes=len(PHOTOS_11)))
    calib = calibration.build_calibration(scanned, store, CalibrationOptions(per_class=2), seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        prepared, _ = prepare_for_qdq(slim_model(store.path(onnx_ref), Path(tmp) / "slim.onnx"), Path(tmp))
        found = {}
        for chunk in (4, 16, 1000):
            tc = toolchains.get("onnxruntime", ToolchainOptions(calibration_chunk=chunk))
            stats, _ = tc.calibration_statistics(prepared, calib, onnx_ref, store, histograms=True)
            found[chunk] = {m: ranges.ranges(stats, m) for m in ranges.MODES}
    assert found[4] == found[16] == found[1000]  # every mode, every tensor, bit for bit

    def compile_fresh(preset: str, chunk: int) -> ArtifactRef:  # nothing reused from an earlier compile
        STATISTICS.clear()
        tc = toolchains.get("onnxruntime", ToolchainOptions(calibration_chunk=chunk))
        return tc.compile(onnx_ref, calib, QuantSpec.from_preset(preset), store)

    one_chunk, chunks_of_4 = compile_fresh("int8-kl_divergence", 1000), compile_fresh("int8-kl_divergence", 4)
    assert one_chunk.digest == chunks_of_4.digest  # the same model file, byte for byte
    kl, mx = _activation_scales(store, one_chunk), _activation_scales(store, compile_fresh("int8-max", 1000))
    clipped = [k for k in kl if kl[k] < mx[k] * 0.999]
    assert len(clipped) > len(kl) // 2, (len(clipped), len(kl))  # a real search: most thresholds below the max
    assert all(kl[k] <= mx[k] * 1.0001 for k in kl)
