"""Per-layer int8 sensitivity, checked on a ShuffleNetV1 with one deliberately ill-conditioned layer.

One channel of ``backbone.layers.1.2.g_conv_1x1_compress`` is scaled by 1000 (its BatchNorm's
weight and bias) and the depthwise conv that reads it divides that channel by 1000, so the float
model computes the same function (checked in PyTorch) while that layer's output range is 1000x the
others: per-tensor uint8 activations then round every other channel of that tensor to almost
nothing. The ranking must name that layer first, and leaving it alone in float (int8-mixed with
K=1) must win back at least 10 dB of output SQNR on real photographs, measured against the float
graph.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch

from tests.conftest import MODEL
from tests.support.images import PHOTOS_11, photo, write_crops
from zooflow import calibration, datasets, export, models, toolchains
from zooflow.config import CalibrationOptions, DataSpec, ExportOptions, QuantSpec, ToolchainOptions
from zooflow.evaluate import sqnr_db
from zooflow.fetch import fetch_checkpoint
from zooflow.preprocess import Transform
from zooflow.store import Store
from zooflow.toolchains import sensitivity
from zooflow.toolchains.onnxruntime import prepare_for_qdq, slim_model

UNIT = "backbone.layers.1.2"
ILL = f"{UNIT}.g_conv_1x1_compress"


def _views(transform: Transform) -> np.ndarray:
    return np.stack([transform.normalize(transform.crop_uint8(photo(n))) for n in PHOTOS_11]).astype(np.float32)


def _ill_conditioned(root: Path, seed: int, model_info: Any, views: np.ndarray) -> Path:
    """The seed's checkpoint with one channel of ILL scaled by 1000 and compensated downstream."""
    models.init_checkpoint(model_info, root / "plain.pth", seed=seed)
    checkpoint = torch.load(root / "plain.pth", weights_only=True)
    state = checkpoint["state_dict"]
    model = models.build_model(model_info)
    model.load_state_dict(state)
    model.eval()
    seen: dict[str, torch.Tensor] = {}
    module = dict(model.named_modules())[ILL]
    hook = module.register_forward_hook(lambda _m, _i, out: seen.__setitem__("out", out))
    with torch.no_grad():
        before = model.extract_feat(torch.from_numpy(views))[-1]
    hook.remove()
    channel = int(seen["out"].mean(dim=(0, 2, 3)).argmax())  # the most active channel: the range it sets is used
    state[f"{ILL}.bn.weight"][channel] *= 1000.0
    state[f"{ILL}.bn.bias"][channel] *= 1000.0
    state[f"{UNIT}.depthwise_conv3x3_bn.conv.weight"][channel] /= 1000.0
    model.load_state_dict(state)
    with torch.no_grad():
        after = model.extract_feat(torch.from_numpy(views))[-1]
    np.testing.assert_allclose(after.numpy(), before.numpy(), rtol=1e-3, atol=1e-3)  # the same function in float
    torch.save(checkpoint, root / "ill.pth")
    return root / "ill.pth"


@pytest.fixture(scope="module", params=[7, 11], ids=["seed7", "seed11"])
def ranked(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, model_info: Any) -> dict[str, Any]:
    root = tmp_path_factory.mktemp(f"sensitivity-{request.param}")
    store = Store(root / "store")
    views = _views(Transform.from_spec(models.preprocess_spec(model_info)))
    path = _ill_conditioned(root, request.param, model_info, views)
    ckpt = fetch_checkpoint(str(path), store, model=MODEL, show_progress=False)
    onnx_ref = export.export_checkpoint(
        ckpt, store, model=MODEL, options=ExportOptions(logits=True, dynamic_batch=True)
    )
    crops = write_crops(root / "crops", PHOTOS_11, 33, seed=request.param)
    dataset = datasets.scan(DataSpec(path=str(crops), num_classes=len(PHOTOS_11)))
    calib = calibration.build_calibration(dataset, store, CalibrationOptions(per_class=3), seed=0)
    compiled = toolchains.get("onnxruntime", ToolchainOptions()).compile(
        onnx_ref, calib, QuantSpec.from_preset("int8-max"), store
    )
    prepared_path, _ = prepare_for_qdq(slim_model(store.path(onnx_ref), root / "slim.onnx"), root)
    qdq, prepared = onnx.load(str(store.path(compiled, "model.onnx"))), onnx.load(str(prepared_path))
    return {"qdq": qdq, "prepared": prepared, "views": views, "result": sensitivity.rank(qdq, prepared, views)}


def test_the_ill_conditioned_layer_ranks_first_and_keeping_it_float_recovers_10_db(ranked: dict[str, Any]) -> None:
    result, views = ranked["result"], ranked["views"]
    top = result["layers"][0]
    table = [(r["module"], round(r["gain_db"], 1)) for r in result["layers"][:5]]
    assert top["module"] == f"{ILL}.conv", table  # named as in the mmcls model, not by ONNX node
    assert len(result["layers"]) == 50 and result["images"] == len(views)
    # int8-mixed with K=1, measured again here against the float graph's own outputs
    reference = sensitivity.outputs(ranked["prepared"], views)
    int8 = sensitivity.outputs(ranked["qdq"], views)
    mixed = sensitivity.outputs(sensitivity.leave_float(ranked["qdq"], ranked["prepared"], [top["node"]]), views)
    recovered = sqnr_db(mixed, reference) - sqnr_db(int8, reference)
    assert recovered >= 10.0, (recovered, table)
    assert abs(top["float_sqnr_db"] - sqnr_db(mixed, reference)) < 0.1 and abs(top["gain_db"] - recovered) < 0.1
    # the next layer down gains far less: the ranking separates the cause from the rest
    assert result["layers"][1]["gain_db"] < top["gain_db"] / 4, table


def test_tensor_sqnr_is_each_tensors_own_rounding(ranked: dict[str, Any]) -> None:
    """A tensor's number is its quantisation alone (its scale applied to fp32 values), checked by hand for one."""
    qdq, prepared, views = ranked["qdq"], ranked["prepared"], ranked["views"]
    tensors = ranked["result"]["tensors"]
    top = ranked["result"]["layers"][0]
    assert top["output_tensor"] in tensors and top["weight_sqnr_db"] > 30.0  # per-channel weights take the 1000x
    name = top["output_tensor"]
    q = next(n for n in qdq.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == name)
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in qdq.graph.initializer}
    scale, zero = float(inits[q.input[1]]), int(inits[q.input[2]])
    probe = onnx.ModelProto()
    probe.CopyFrom(prepared)
    probe.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    value = np.concatenate([part[-1] for part in sensitivity._run(probe, views)]).astype(np.float64)
    restored = (np.clip(np.rint(value / scale) + zero, 0, 255) - zero) * scale
    expected = 10 * np.log10(np.sum(value**2) / np.sum((value - restored) ** 2))
    assert tensors[name] == pytest.approx(expected, abs=0.01)


def test_module_names_follow_the_mmcls_model() -> None:
    name = sensitivity.module_name
    assert name("/backbone/layers.2/layers.2.3/conv2/conv/Conv") == "backbone.layers.2.3.conv2.conv"
    assert name("/inner/head/fc/Gemm") == "head.fc"  # zooflow's export wrapper scope dropped
    assert name("/backbone/conv1/conv/Conv") == "backbone.conv1.conv"


def test_the_report_table_and_depth_plot_name_the_layer(ranked: dict[str, Any], tmp_path: Path) -> None:
    import json

    from PIL import Image

    from zooflow import sensitivity_report

    result = json.loads(json.dumps(ranked["result"]))  # what the stored JSON gives back (inf -> Infinity)
    lines = sensitivity_report.table(result)
    rows = [line for line in lines if line.startswith("| 1 |") or line.startswith("| 10 |")]
    assert len(rows) == 2 and f"`{ILL}.conv`" in rows[0], lines
    plot = sensitivity_report.depth_plot(result, tmp_path / "depth.png", "ShuffleNetV1 int8-max")
    with Image.open(plot) as image:
        assert image.size[0] > 1000 and image.size[1] > 600
