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

from collections import Counter
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
from zooflow.errors import ZooflowError
from zooflow.fetch import fetch_checkpoint
from zooflow.metrics import sqnr_db
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


# the second seed (20 s to build) runs in the slow tier: `-m "not slow"` keeps one
@pytest.fixture(scope="module", params=[7, pytest.param(11, marks=pytest.mark.slow)], ids=["seed7", "seed11"])
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
    return {
        "qdq": qdq,
        "prepared": prepared,
        "views": views,
        "result": sensitivity.rank(qdq, prepared, views),
        "store": store,
        "onnx": onnx_ref,
        "calibration": calib,
        "compiled": compiled,
    }


def test_the_ill_conditioned_layer_ranks_first_and_keeping_it_float_recovers_10_db(ranked: dict[str, Any]) -> None:
    result, views = ranked["result"], ranked["views"]
    top = result["layers"][0]
    table = [(r["module"], round(r["gain_db"], 1)) for r in result["layers"][:5]]
    assert top["module"] == f"{ILL}.conv", table  # named as in the mmcls model, not by ONNX node
    assert result["images"] == len(views)
    # int8-mixed with K=1, measured again here against the float graph's own outputs
    reference = sensitivity.outputs(ranked["prepared"], views)
    int8 = sensitivity.outputs(ranked["qdq"], views)
    mixed = sensitivity.outputs(sensitivity.leave_float(ranked["qdq"], ranked["prepared"], [top["node"]]), views)
    recovered = sqnr_db(mixed, reference) - sqnr_db(int8, reference)
    assert recovered >= 10.0, (recovered, table)
    assert abs(top["float_sqnr_db"] - sqnr_db(mixed, reference)) < 0.1 and abs(top["gain_db"] - recovered) < 0.1
    # the next layer down gains far less: the ranking separates the cause from the rest
    assert result["layers"][1]["gain_db"] < top["gain_db"] / 4, table


def test_every_quantised_tensor_has_one_owning_layer(ranked: dict[str, Any]) -> None:
    """The ranking covers every source of int8 noise: each tensor the QDQ model quantises (activations,
    not weights) is owned by exactly one layer (ShuffleNetV1: 49 convs, the fc, 13 residual adds, 3
    concats, 3 average pools, the global pool and the input; this export gives logits, so no softmax), and the channel shuffle's
    reshapes and transposes, which re-quantise exactly, follow the depthwise conv before them."""
    qdq = ranked["qdq"]
    weights = {i.name for i in qdq.graph.initializer}
    quantised = [n.input[0] for n in qdq.graph.node if n.op_type == "QuantizeLinear" and n.input[0] not in weights]
    layers = sensitivity.Graph(qdq).layers()
    owned = [t for layer in layers for t in layer.tensors]
    assert sorted(owned) == sorted(quantised) and len(set(owned)) == len(owned)
    ops = Counter(layer.op for layer in layers)
    assert ops == {
        "Conv": 49,
        "Gemm": 1,
        "Add": 13,
        "Concat": 3,
        "AveragePool": 3,
        "GlobalAveragePool": 1,
        "Input": 1,
    }, ops
    depthwise = next(layer for layer in layers if layer.module == f"{UNIT}.depthwise_conv3x3_bn.conv")
    assert len(depthwise.followers) == 3  # the channel shuffle after it: reshape, transpose, reshape
    assert {r["node"] for r in ranked["result"]["layers"]} == {layer.node for layer in layers}


def test_the_split_separates_weights_from_activations(ranked: dict[str, Any]) -> None:
    """Only-weights-int8 and only-activations-int8, measured again here: the ill layer's loss is in its
    output activation (its per-channel weights take the 1000x), so float weights recover nothing of it
    and float activations nearly all."""
    from zooflow import sensitivity_report

    result, qdq, prepared, views = ranked["result"], ranked["qdq"], ranked["prepared"], ranked["views"]
    every = [r["node"] for r in result["layers"]]
    reference = sensitivity.outputs(prepared, views)
    weights_only = sensitivity.leave_float(qdq, prepared, every, parts=("tensors",))
    activations_only = sensitivity.leave_float(qdq, prepared, every, parts=("weights",))
    split = result["split"]
    assert split["weights_only"]["sqnr_db"] == pytest.approx(
        sqnr_db(sensitivity.outputs(weights_only, views), reference), abs=0.05
    )
    assert split["activations_only"]["sqnr_db"] == pytest.approx(
        sqnr_db(sensitivity.outputs(activations_only, views), reference), abs=0.05
    )
    assert split["weights_only"]["sqnr_db"] > result["int8_sqnr_db"] + 15.0, split
    assert split["activations_only"]["sqnr_db"] < result["int8_sqnr_db"] + 3.0, split
    lines = sensitivity_report.diagnosis(result)
    assert lines[0].startswith("Only the weights int8") and not any("spread" in line for line in lines)
    spread = {**result, "layers": [{**r, "gain_db": min(r["gain_db"], 0.4)} for r in result["layers"]]}
    assert any("The loss is spread over the model" in line for line in sensitivity_report.diagnosis(spread))


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
    assert name("/Softmax") == "Softmax"  # an op at the top level: its own name


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


def test_int8_mixed_k1_compiled_by_the_toolchain_recovers_10_db_on_the_photos(ranked: dict[str, Any]) -> None:
    """The preset itself: the embedded toolchain's int8-mixed compile with K=1 (the ranking's first layer),
    measured against the fp32 graph on the photographs, independently of the ranking's own numbers."""
    store, top = ranked["store"], ranked["result"]["layers"][0]
    quant = QuantSpec.from_preset("int8-mixed").model_copy(update={"keep_float": 1})
    tc = toolchains.get("onnxruntime", ToolchainOptions())
    mixed = tc.compile(ranked["onnx"], ranked["calibration"], quant, store, float_layers=[top["node"]])
    assert mixed.meta["float_layers"] == [{"node": top["node"], "module": f"{ILL}.conv", "op": "Conv"}]
    assert mixed.name.endswith("/onnxruntime/int8-mixed-k1") and mixed.digest != ranked["compiled"].digest
    model = onnx.load(str(store.path(mixed, "model.onnx")))
    reference = sensitivity.outputs(ranked["prepared"], ranked["views"])
    recovered = sqnr_db(sensitivity.outputs(model, ranked["views"]), reference) - sqnr_db(
        sensitivity.outputs(ranked["qdq"], ranked["views"]), reference
    )
    assert recovered >= 10.0, recovered
    # the layer really computes in float: its weights are a float initializer, no DequantizeLinear feeds them
    node = next(n for n in model.graph.node if n.name == top["node"])
    floats = {i.name for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT}
    assert node.input[1] in floats
    # every other layer is still int8
    assert len(sensitivity.Graph(model).layers()) == len(ranked["result"]["layers"]) - 1


def test_int8_mixed_with_every_layer_in_float_is_the_float_graph(ranked: dict[str, Any]) -> None:
    """K = all layers leaves nothing int8: the compiled model computes what the float graph does (checked
    against that graph's own outputs on the photos), so `auto` always ends at a model meeting its goal."""
    store, names = ranked["store"], [r["node"] for r in ranked["result"]["layers"]]
    quant = QuantSpec.from_preset("int8-mixed").model_copy(update={"keep_float": len(names)})
    tc = toolchains.get("onnxruntime", ToolchainOptions())
    every = tc.compile(ranked["onnx"], ranked["calibration"], quant, store, float_layers=names)
    model = onnx.load(str(store.path(every, "model.onnx")))
    assert not [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    np.testing.assert_allclose(
        sensitivity.outputs(model, ranked["views"]),
        sensitivity.outputs(ranked["prepared"], ranked["views"]),
        rtol=1e-5,
        atol=1e-5,
    )
    # one layer short of all: int8 is still computed somewhere
    short = quant.model_copy(update={"keep_float": len(names) - 1})
    almost = tc.compile(ranked["onnx"], ranked["calibration"], short, store, float_layers=names[:-1])
    kept = onnx.load(str(store.path(almost, "model.onnx")))
    assert [n for n in kept.graph.node if n.op_type == "QuantizeLinear"]


def test_int8_mixed_refuses_layers_of_another_model(ranked: dict[str, Any]) -> None:
    quant = QuantSpec.from_preset("int8-mixed").model_copy(update={"keep_float": 1})
    tc = toolchains.get("onnxruntime", ToolchainOptions())
    with pytest.raises(ZooflowError, match="layers not in the quantised model: /no/such/Conv"):
        tc.compile(ranked["onnx"], ranked["calibration"], quant, ranked["store"], float_layers=["/no/such/Conv"])
    names = [r["node"] for r in ranked["result"]["layers"][:2]]
    with pytest.raises(ZooflowError, match="keeps 1 layer\\(s\\) in float, but 2 were named"):
        tc.compile(ranked["onnx"], ranked["calibration"], quant, ranked["store"], float_layers=names)


@pytest.mark.slow  # 15 s per seed
def test_the_sensitivity_stage_stores_the_ranking_table_and_plot(ranked: dict[str, Any]) -> None:
    """`measure` on the stored artifacts (calibration images as probes) finds the same culprit and stores
    JSON, markdown and the depth plot; an fp32 model is refused with the fix."""
    from PIL import Image

    from zooflow import sensitivity_report

    store = ranked["store"]
    ref = sensitivity_report.measure(store, ranked["compiled"], ranked["onnx"], ranked["calibration"], images=20)
    assert ref.kind == "sensitivity" and ref.meta["images"] == 20
    assert sensitivity.module_name(ref.meta["ranking"][0]) == f"{ILL}.conv"
    assert set(ref.meta["ranking"]) == {r["node"] for r in ranked["result"]["layers"]}
    text = store.path(ref, sensitivity_report.TABLE_FILE).read_text()
    assert f"| 1 | `{ILL}.conv` |" in text and "![per-layer SQNR along depth](sensitivity_depth.png)" in text
    with Image.open(store.path(ref, sensitivity_report.PLOT_FILE)) as image:
        assert image.size[0] > 1000
    assert sensitivity_report.load(store, ref)["layers"][0]["module"] == f"{ILL}.conv"
    fp32 = toolchains.get("onnxruntime", ToolchainOptions()).compile(
        ranked["onnx"], None, QuantSpec(dtype="fp32"), store
    )
    with pytest.raises(ZooflowError, match="not an embedded-toolchain int8 model"):
        sensitivity_report.measure(store, fp32, ranked["onnx"], ranked["calibration"], images=4)


def test_the_mixed_section_reads_an_exact_match_as_the_evaluation_stores_it() -> None:
    """K = every layer is the float graph: its SQNR vs fp32 can be exact, which the evaluation stores as
    the text ``inf``; the report's search table prints it and says what that K is."""
    from zooflow import sensitivity_report

    mixed = {
        "keep_float": 50,
        "auto": True,
        "target": 99.0,
        "met": True,
        "images": 2000,
        "layers": 50,
        "tried": [
            {"keep_float": 32, "agreement": 97.5, "sqnr_db": 23.61, "top1": 0.1},
            {"keep_float": 50, "agreement": 100.0, "sqnr_db": "inf", "top1": 0.1, "throughput": 185.66},
        ],
        "float_layers": [{"node": "/fc/Gemm", "module": "fc", "op": "Gemm"}],
    }
    lines = sensitivity_report.mixed_section(mixed)
    assert "| 32 | 97.50 | 23.6 | 0.10 | n/a |" in lines and "| 50 | 100.00 | inf | 0.10 | 185.7 |" in lines
    assert any(line.startswith("K = 50 is every quantised layer: the model is the float graph") for line in lines)
