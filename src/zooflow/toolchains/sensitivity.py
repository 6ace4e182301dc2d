"""Which layers cost int8 its accuracy: per-tensor quantisation noise and a leave-one-layer-in-float ranking.

Works on the QDQ model the embedded toolchain compiles and the float graph it was quantised from
(`prepare_for_qdq`'s output, whose tensor and node names the QDQ model keeps):

- `tensor_sqnr`: for every tensor the QDQ model quantises, the SQNR of its int8 value against
  its fp32 value, each tensor alone (its scale and zero point applied to the fp32 model's values),
  so the number is that tensor's own rounding and clipping, not what upstream layers did to it;
- `rank`: for every layer, the model's output SQNR and top-1 agreement against fp32 when that one
  layer computes in float (all others int8), ranked by the SQNR it wins back. A layer is every source
  of int8 noise: a Conv/Gemm/MatMul (its weights and output tensor), and every other op whose output
  the model quantises with a scale of its own (a residual Add, a Concat, a pool, the Softmax), and the
  model's input. So every quantised tensor has one owner, and every layer in float is the float graph.

The surgery is on the ONNX graph itself (rewiring past Q/DQ nodes), so the model measured is the one
a mixed-precision compile produces, not an estimate.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zooflow.errors import ZooflowError
from zooflow.metrics import sqnr_db

FLOAT_FILE = "float.onnx"  # in an int8 compiled artifact: the float graph its QDQ model was quantised from
LAYER_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
PASS_THROUGH = ("Relu", "Clip")  # a layer's output is quantised after its activation
# ORT's QDQ quantiser gives these ops' outputs their input's scale and zero point (its Direct8Bit ops:
# they move or select values), so re-quantising there is exact: they are not a source of noise, and a
# layer left in float must carry its float value through them (their Q/DQ pairs bypassed with its own).
SAME_SCALE = ("Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Slice", "MaxPool", "Identity")
INPUT_OP = "Input"  # the layer that owns the quantisation of the model's input
CHUNK = 8  # images per inference call: bounds memory when every tensor is an output


def module_name(node_name: str) -> str:
    """The mmcls module of an exported node: ``/backbone/layers.2/layers.2.3/conv2/conv/Conv`` ->
    ``backbone.layers.2.3.conv2.conv`` (torch's exporter writes one scope per module, each spelled
    from its parent; zooflow's export wrapper adds an ``inner`` scope, dropped)."""
    parts = [p for p in node_name.strip("/").split("/")[:-1] if p]
    out: list[str] = []
    for part in parts:
        if out and part.startswith(out[-1] + "."):
            out[-1] = part
        else:
            out.append(part)
    if out and out[0] == "inner":
        out = out[1:]
    return ".".join(out) or node_name.strip("/")


@dataclass(frozen=True)
class Layer:
    """A source of int8 noise: its node (the input's name for the model input), mmcls module, op, depth
    (graph order), its quantised weights if any, and the tensors whose Q/DQ pairs it owns."""

    node: str
    module: str
    op: str
    depth: int
    weight_dq: str | None  # the DequantizeLinear node feeding its weights (None: an op without weights)
    bias_dq: str | None
    output: str | None  # the float tensor the model quantises as this layer's output (after Relu/Clip)
    followers: tuple[str, ...] = ()  # same-scale ops' outputs downstream, re-quantised with its output's scale

    @property
    def tensors(self) -> tuple[str, ...]:
        """Every tensor whose quantisation this layer owns."""
        return ((self.output,) if self.output else ()) + self.followers


class Graph:
    """Producer and consumer maps of a QDQ model, and its layers in graph order."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.nodes = list(model.graph.node)
        self.producer = {out: n for n in self.nodes for out in n.output}
        self.consumers: dict[str, list[Any]] = {}
        for node in self.nodes:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)

    def _dq(self, tensor: str) -> Any | None:
        node = self.producer.get(tensor)
        return node if node is not None and node.op_type == "DequantizeLinear" else None

    def quantised_output(self, tensor: str) -> str | None:
        """The tensor a QuantizeLinear reads, following `tensor` through single-consumer activations."""
        while True:
            users = self.consumers.get(tensor, [])
            if any(u.op_type == "QuantizeLinear" for u in users):
                return tensor
            if len(users) == 1 and users[0].op_type in PASS_THROUGH:
                tensor = users[0].output[0]
                continue
            return None

    def readers(self, tensor: str) -> list[Any]:
        """The nodes that read `tensor`'s value: directly, or through its Q/DQ pair."""
        found = [u for u in self.consumers.get(tensor, []) if u.op_type != "QuantizeLinear"]
        for q in (u for u in self.consumers.get(tensor, []) if u.op_type == "QuantizeLinear"):
            for dq in (u for u in self.consumers.get(q.output[0], []) if u.op_type == "DequantizeLinear"):
                found += self.consumers.get(dq.output[0], [])
        return found

    def followers(self, tensor: str) -> tuple[str, ...]:
        """The quantised outputs of same-scale ops reading `tensor` (and theirs, transitively)."""
        found: list[str] = []
        todo = [tensor]
        while todo:
            for user in self.readers(todo.pop()):
                out = self.quantised_output(user.output[0]) if user.op_type in SAME_SCALE else None
                if out is not None and out not in found:
                    found.append(out)
                    todo.append(out)
        return tuple(found)

    def is_layer(self, node: Any) -> bool:
        """A Conv/Gemm/MatMul with quantised weights."""
        return node.op_type in LAYER_OPS and len(node.input) >= 2 and self._dq(node.input[1]) is not None

    def layers(self) -> list[Layer]:
        """Every source of int8 noise in graph order: the model's input, then each weighted layer and each
        op that quantises its output with a scale of its own."""
        found = []
        for tensor in (i.name for i in self.model.graph.input):
            if self.quantised_output(tensor) == tensor:
                found.append(Layer(tensor, "input", INPUT_OP, -1, None, None, tensor, self.followers(tensor)))
        skipped = ("QuantizeLinear", "DequantizeLinear", *PASS_THROUGH, *SAME_SCALE)
        for depth, node in enumerate(self.nodes):
            if node.op_type in skipped or not node.output:
                continue
            weight = self._dq(node.input[1]) if self.is_layer(node) else None
            output = self.quantised_output(node.output[0])
            if weight is None and output is None:
                continue
            bias = self._dq(node.input[2]) if weight is not None and len(node.input) > 2 and node.input[2] else None
            found.append(
                Layer(
                    node=node.name,
                    module=module_name(node.name),
                    op=node.op_type,
                    depth=depth,
                    weight_dq=weight.name if weight is not None else None,
                    bias_dq=bias.name if bias is not None else None,
                    output=output,
                    followers=self.followers(output) if output else (),
                )
            )
        return found


def _initializers(model: Any) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    return {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}


def leave_float(
    qdq: Any,
    prepared: Any,
    nodes: Iterable[str],
    weights: dict[str, np.ndarray] | None = None,
    *,
    parts: tuple[str, ...] = ("weights", "tensors"),
) -> Any:
    """A copy of `qdq` in which the named layers compute in float: weights and bias from `prepared`
    (the float graph, same node names; `weights`: its initializers, when already read), and the
    tensors they own read by every consumer unquantised (`parts` picks one of the two)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.ModelProto()
    model.CopyFrom(qdq)
    graph = Graph(model)
    floats = {n.name: n for n in prepared.graph.node}
    weights = weights if weights is not None else _initializers(prepared)
    by_node = {layer.node: layer for layer in graph.layers()}
    outputs = {o.name for o in model.graph.output}
    for name in nodes:
        layer = by_node[name]
        if layer.weight_dq is not None and "weights" in parts:
            source = floats[name]
            node = next(n for n in model.graph.node if n.name == name)
            for slot in (1, 2):
                if slot < len(source.input) and source.input[slot] in weights and slot < len(node.input):
                    kept = f"{name}/float_input_{slot}"
                    model.graph.initializer.append(numpy_helper.from_array(weights[source.input[slot]], kept))
                    node.input[slot] = kept
        if "tensors" not in parts:
            continue
        for tensor in layer.tensors:
            value = _restore_activation(model, graph, prepared, tensor, weights)
            for q in [u for u in graph.consumers.get(tensor, []) if u.op_type == "QuantizeLinear"]:
                for dq in [u for u in graph.consumers.get(q.output[0], []) if u.op_type == "DequantizeLinear"]:
                    for user in graph.consumers.get(dq.output[0], []):
                        for i, read in enumerate(user.input):
                            if read == dq.output[0]:
                                user.input[i] = value
                    if dq.output[0] in outputs:  # the model's output itself: keep its name, drop the rounding
                        dq.op_type, dq.domain = "Identity", ""
                        del dq.input[:], dq.attribute[:]
                        dq.input.append(value)
    return _prune(model)


def keep_in_float(qdq_path: Path, float_path: Path, quant: Any, nodes: Sequence[str]) -> list[dict[str, Any]]:
    """Rewrite the QDQ model at `qdq_path` with `nodes` computing in float (int8-mixed's compile); the
    layers kept in float, in the order given (most sensitive first), as the compile metadata records them.
    With every layer in float nothing is left quantised: the model is the float graph."""
    import onnx

    if isinstance(quant.keep_float, int) and len(nodes) != quant.keep_float:
        raise ZooflowError(
            f"{quant.preset} keeps {quant.keep_float} layer(s) in float, but {len(nodes)} were named",
            "pass the sensitivity ranking's first K layers (the flow does this)",
        )
    if not nodes:
        raise ZooflowError(
            f"{quant.preset} needs the layers to keep in float", "run the sensitivity stage first (the flow does)"
        )
    qdq, prepared = onnx.load(str(qdq_path)), onnx.load(str(float_path))
    layers = {layer.node: layer for layer in Graph(qdq).layers()}
    unknown = [n for n in nodes if n not in layers]
    if unknown:
        raise ZooflowError(
            f"layers not in the quantised model: {', '.join(unknown)}",
            "rank this model's layers again (a sensitivity result of another model was given)",
        )
    onnx.save(leave_float(qdq, prepared, nodes), str(qdq_path))
    return [{"node": n, "module": layers[n].module, "op": layers[n].op} for n in nodes]


def _restore_activation(model: Any, graph: Graph, prepared: Any, tensor: str, weights: dict[str, np.ndarray]) -> str:
    """The float value of `tensor` once its Q/DQ pair is bypassed.

    ORT's QDQ graphs drop a Relu (or Clip) that the quantiser's clamp already does (uint8 with
    zero point 0), so the tensor there is the layer's pre-activation; bypassing the pair must put
    the activation back, copied from the float graph."""
    import onnx
    from onnx import numpy_helper

    float_producer = next((n for n in prepared.graph.node if tensor in n.output), None)
    qdq_producer = graph.producer.get(tensor)
    if float_producer is None or float_producer.op_type not in PASS_THROUGH:
        return tensor
    if qdq_producer is not None and qdq_producer.op_type == float_producer.op_type:
        return tensor  # the activation is still there
    restored = f"{tensor}/float_activation"
    if any(restored in n.output for n in model.graph.node):
        return restored  # put back already (another float layer reads or writes the same tensor)
    extra = []
    for name in float_producer.input[1:]:
        if name and name in weights and name not in {i.name for i in model.graph.initializer}:
            model.graph.initializer.append(numpy_helper.from_array(weights[name], name))
        extra.append(name)
    node = onnx.helper.make_node(
        float_producer.op_type, [tensor, *extra], [restored], name=f"{tensor}/float_{float_producer.op_type}"
    )
    node.attribute.extend(float_producer.attribute)
    position = next(i for i, n in enumerate(model.graph.node) if tensor in n.output) + 1
    model.graph.node.insert(position, node)
    return restored


def _prune(model: Any) -> Any:
    """Drop nodes and initializers nothing reads any more (the bypassed Q/DQ pairs and weights)."""
    needed = {o.name for o in model.graph.output}
    kept = []
    for node in reversed(list(model.graph.node)):
        if any(o in needed for o in node.output):
            kept.append(node)
            needed.update(i for i in node.input if i)
    del model.graph.node[:]
    model.graph.node.extend(reversed(kept))
    unused = [i for i in model.graph.initializer if i.name not in needed]
    for init in unused:
        model.graph.initializer.remove(init)
    return model


def _session(model: Any) -> Any:
    import onnxruntime as ort

    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _run(model: Any, batch: np.ndarray, outputs: list[str] | None = None) -> Iterator[list[np.ndarray]]:
    sess = _session(model)
    name, size = sess.get_inputs()[0].name, sess.get_inputs()[0].shape[0]
    chunk = size if isinstance(size, int) and size > 0 else CHUNK  # a static-batch export takes its own batch
    for start in range(0, len(batch), chunk):
        yield list(sess.run(outputs, {name: batch[start : start + chunk]}))


def outputs(model: Any, batch: np.ndarray) -> np.ndarray:
    """The model's first output on `batch`, run in chunks."""
    return np.concatenate([part[0] for part in _run(model, batch)])


def _sqnr(signal: float, noise: float) -> float:
    if noise == 0.0:
        return float("inf")
    return float(10.0 * np.log10(signal / noise)) if signal > 0 else float("-inf")


def _fake_quant(x: np.ndarray, scale: np.ndarray, zero: np.ndarray) -> np.ndarray:
    """ONNX per-tensor QuantizeLinear then DequantizeLinear (round half to even, saturate to the zero
    point's type): what the model does to an activation."""
    info = np.iinfo(zero.dtype)
    q = np.clip(np.rint(x / scale) + zero.astype(np.float64), info.min, info.max)
    restored: np.ndarray = (q - zero.astype(np.float64)) * scale
    return restored


def tensor_sqnr(qdq: Any, prepared: Any, batch: np.ndarray) -> dict[str, float]:
    """SQNR (dB) of every activation tensor the QDQ model quantises, each alone, on `batch`."""
    import onnx

    inits = _initializers(qdq)
    known = {o for n in prepared.graph.node for o in n.output} | {i.name for i in prepared.graph.input}
    quantisers = {
        n.input[0]: (inits[n.input[1]], inits[n.input[2]])
        for n in qdq.graph.node
        if n.op_type == "QuantizeLinear" and n.input[0] in known and n.input[1] in inits
    }
    names = sorted(quantisers)
    probe = onnx.ModelProto()
    probe.CopyFrom(prepared)
    present = {o.name for o in probe.graph.output}
    probe.graph.output.extend(
        onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None) for t in names if t not in present
    )
    signal = dict.fromkeys(names, 0.0)
    noise = dict.fromkeys(names, 0.0)
    for values in _run(probe, batch, names):
        for tensor, value in zip(names, values, strict=True):
            scale, zero = quantisers[tensor]
            value = value.astype(np.float64)
            diff = value - _fake_quant(value, scale, zero)
            signal[tensor] += float(np.sum(value * value))
            noise[tensor] += float(np.sum(diff * diff))
    return {t: _sqnr(signal[t], noise[t]) for t in names}


def weight_sqnr(
    qdq: Any, prepared: Any, layer: Layer, inits: tuple[dict[str, np.ndarray], dict[str, np.ndarray]] | None = None
) -> float:
    """SQNR (dB) of a layer's int8 weights against the float ones (`inits`: both models' initializers,
    float first, when already read)."""
    floats, inits_q = inits if inits is not None else (_initializers(prepared), _initializers(qdq))
    source = next(n for n in prepared.graph.node if n.name == layer.node)
    dq = next(n for n in qdq.graph.node if n.name == layer.weight_dq)
    weight = floats[source.input[1]].astype(np.float64)
    quantised, scale = inits_q[dq.input[0]], inits_q[dq.input[1]].astype(np.float64)
    zero = inits_q[dq.input[2]] if len(dq.input) > 2 else np.zeros_like(quantised)
    axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
    if scale.ndim == 1 and scale.size > 1:
        shape = [1] * quantised.ndim
        shape[axis] = -1
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    restored = (quantised.astype(np.float64) - zero.astype(np.float64)) * scale
    diff = weight - restored
    return _sqnr(float(np.sum(weight * weight)), float(np.sum(diff * diff)))


def _agreement(rows: np.ndarray, reference: np.ndarray) -> float:
    return float(np.mean(rows.argmax(axis=1) == reference.argmax(axis=1)) * 100.0)


def _score(model: Any, batch: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    out = outputs(model, batch)
    return {"sqnr_db": sqnr_db(out, reference), "agreement": _agreement(out, reference)}


def rank(qdq: Any, prepared: Any, batch: np.ndarray) -> dict[str, Any]:
    """Every layer with its tensor SQNRs and the model's output SQNR and top-1 agreement when only it is
    left in float; ranked by the output SQNR won back over the all-int8 model (best first). Also the
    model with only its weights int8 and with only its activations int8: which of the two costs more."""
    reference = outputs(prepared, batch)
    base = _score(qdq, batch, reference)
    tensors = tensor_sqnr(qdq, prepared, batch)
    inits = (_initializers(prepared), _initializers(qdq))  # read once for every layer
    layers = Graph(qdq).layers()
    every = [layer.node for layer in layers]
    split = {
        "weights_only": _score(leave_float(qdq, prepared, every, inits[0], parts=("tensors",)), batch, reference),
        "activations_only": _score(leave_float(qdq, prepared, every, inits[0], parts=("weights",)), batch, reference),
    }
    rows: list[dict[str, Any]] = []
    for layer in layers:
        mixed = _score(leave_float(qdq, prepared, [layer.node], weights=inits[0]), batch, reference)
        rows.append(
            {
                "module": layer.module,
                "node": layer.node,
                "op": layer.op,
                "depth": layer.depth,
                "output_tensor": layer.output,
                "output_tensor_sqnr_db": tensors.get(layer.output) if layer.output else None,
                "weight_sqnr_db": weight_sqnr(qdq, prepared, layer, inits) if layer.weight_dq else None,
                "float_sqnr_db": mixed["sqnr_db"],
                "float_agreement": mixed["agreement"],
                "gain_db": mixed["sqnr_db"] - base["sqnr_db"],
            }
        )
    rows.sort(key=lambda r: (-r["gain_db"], r["depth"]))
    return {
        "images": len(batch),
        "int8_sqnr_db": base["sqnr_db"],
        "int8_agreement": base["agreement"],
        "split": split,
        "layers": rows,
        "tensors": tensors,
        "method": (
            "each layer in turn computed in float (float weights and bias, the tensors it quantises read "
            "unquantised), every other layer int8; output SQNR and top-1 agreement against the fp32 graph on the "
            "probe images. A layer is every source of int8 noise: each Conv/Gemm/MatMul, each other op that "
            "quantises its output with a scale of its own (add, concat, pool, softmax) and the model's input"
        ),
    }
