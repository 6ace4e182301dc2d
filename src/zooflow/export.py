"""Export stage: mmcls checkpoint -> verified ONNX.

Follows mmcls's own ``tools/deployment/pytorch2onnx.py``: the classifier's test path
(``extract_feat`` + ``head.simple_test``) with softmax probabilities as output ``probs``, mmcv's
extra ONNX symbolics registered, the TorchScript exporter (torch 2.13: ``dynamo=False``), opset 11.
Then ``onnx.checker`` and ONNX Runtime vs PyTorch on a fixed probe batch (max-abs-diff <= 1e-4).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from zooflow import models, provenance, registry
from zooflow.config import ExportOptions
from zooflow.errors import ExportError
from zooflow.store import ArtifactRef, Store

STAGE = "export"
STAGE_VERSION = "1"
LIBRARIES = ("torch", "mmcls", "mmcv", "onnx", "onnxruntime")
PARITY_TOLERANCE = 1e-4
PROBE_NOISE = 4
PROBE_SEED = 20200804

_PAD_EXPLANATION = (
    "opset {opset} cannot express this model: mmcls's ONNX symbolics (mmcv register_extra_symbolics, "
    "as in mmcls's pytorch2onnx.py) write AvgPool padding as an opset-11 Pad node with 2 inputs, which "
    "opset {opset} forbids. This is the seed's known failure: 'Node (Pad_11) has input size 2 not in "
    "range [min=1, max=1]'. Checker said: {detail}"
)


def sample_photos() -> list[Path]:
    """Real photographs shipped with installed packages, used as part of the parity probe."""
    import matplotlib

    photo = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    return [photo] if photo.is_file() else []


def load_images(cfg: Any, paths: list[Path]) -> np.ndarray:
    """Images through the model's own mmcls test pipeline -> float32 NCHW batch."""
    with models.quiet_mm():
        from mmcls.datasets.pipelines import Compose

        pipeline = Compose(cfg.data.test.pipeline)
        batch = [pipeline({"img_prefix": None, "img_info": {"filename": str(p)}})["img"].numpy() for p in paths]
    return np.stack(batch).astype(np.float32) if batch else np.zeros((0,), np.float32)


def probe_batch(cfg: Any, size: list[int], images: list[Path] | None = None) -> tuple[np.ndarray, str]:
    """The fixed parity probe: real photos (preprocessed like mmcls) plus seeded normal noise."""
    photos = list(images) if images is not None else sample_photos()
    rng = np.random.default_rng(PROBE_SEED)
    noise = rng.standard_normal((PROBE_NOISE, 3, *size), dtype=np.float32)
    real = load_images(cfg, photos)
    batch = np.concatenate([real, noise]) if len(real) else noise
    return batch, f"{len(real)} photo(s) + {PROBE_NOISE} seeded noise inputs"


def export_module(model: Any, logits: bool) -> Any:
    """mmcls's test-time forward as a plain module: image batch in, probs (or logits) out."""
    import torch
    from mmcls.models.heads import MultiLabelClsHead

    if isinstance(model.head, MultiLabelClsHead):
        raise ExportError(
            f"{type(model.head).__name__} is multi-label", "zooflow exports single-label classifiers only"
        )

    class ClassifierExport(torch.nn.Module):  # type: ignore[misc]  # torch is untyped here (follow_imports=skip)
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: Any) -> Any:
            feats = self.inner.extract_feat(x)
            return self.inner.head.simple_test(feats, softmax=not logits, post_process=False)

    return ClassifierExport(model).eval()


def run_torch(module: Any, batch: np.ndarray) -> np.ndarray:
    """PyTorch outputs for a batch."""
    import torch

    with torch.no_grad():
        return np.asarray(module(torch.from_numpy(batch)).numpy())


def run_onnx(path: Path, batch: np.ndarray, *, per_sample: bool) -> np.ndarray:
    """ONNX Runtime (CPU) outputs for a batch, one sample at a time for fixed-batch models."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    if per_sample:
        return np.concatenate([session.run(None, {name: batch[i : i + 1]})[0] for i in range(len(batch))])
    return np.asarray(session.run(None, {name: batch})[0])


def export_model(
    checkpoint: Path,
    info: registry.ModelInfo,
    out: Path,
    options: ExportOptions,
    *,
    probe_images: list[Path] | None = None,
    trust: bool = False,
) -> dict[str, Any]:
    """Export `checkpoint` for model `info` to `out`; returns what the manifest records."""
    import onnx
    import torch

    cfg = models.load_config(info)
    pre = models.preprocess_spec(info)
    model = models.build_model(info)
    load_meta = models.load_strict(model, checkpoint, info, trust=trust)
    module = export_module(model, options.logits)
    output = "logits" if options.logits else "probs"
    dummy = torch.zeros(1, 3, *pre["crop"])
    dynamic = bool(options.dynamic_batch)  # None (the toolchain's choice, unresolved) exports batch 1
    dynamic_axes = {"input": {0: "batch"}, output: {0: "batch"}} if dynamic else None
    with models.quiet_mm():
        from mmcv.onnx import register_extra_symbolics

        register_extra_symbolics(options.opset)
        try:
            torch.onnx.export(
                module,
                (dummy,),
                str(out),
                input_names=["input"],
                output_names=[output],
                opset_version=options.opset,
                dynamic_axes=dynamic_axes,
                do_constant_folding=True,
                dynamo=False,
            )
        except Exception as exc:  # noqa: BLE001 - exporter errors come in many types
            raise ExportError(
                f"torch.onnx.export failed at opset {options.opset}: {type(exc).__name__}: {str(exc)[:400]}",
                "try --opset 11 (the seed's setting) or a newer opset",
            ) from None
    proto = onnx.load(str(out))
    try:
        onnx.checker.check_model(proto, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        detail = str(exc).strip().splitlines()[0]
        if "Pad" in str(exc) and options.opset < 11:
            raise ExportError(
                _PAD_EXPLANATION.format(opset=options.opset, detail=detail), "export with --opset 11"
            ) from None
        raise ExportError(
            f"the exported ONNX fails onnx.checker: {detail}", "try --opset 11, or report the model"
        ) from None
    _annotate(proto, info, pre, output, options)
    onnx.save(proto, str(out))

    batch, probe_desc = probe_batch(cfg, pre["crop"], probe_images)
    reference = run_torch(module, batch)
    actual = run_onnx(out, batch, per_sample=not dynamic)
    diff = float(np.max(np.abs(reference - actual)))
    parity = {
        "max_abs_diff": diff,
        "tolerance": PARITY_TOLERANCE,
        "probe": probe_desc,
        "top1_agreement": float(np.mean(reference.argmax(1) == actual.argmax(1))),
    }
    if not diff <= PARITY_TOLERANCE:
        raise ExportError(
            f"ONNX Runtime disagrees with PyTorch: max abs diff {diff:.3g} > {PARITY_TOLERANCE} on {probe_desc}",
            "try another --opset; if it persists the exporter mistranslates an op of this model",
        )
    return {
        "model": info.name,
        "opset": options.opset,
        "input": {
            "name": "input",
            "shape": ["batch" if dynamic else 1, 3, *pre["crop"]],
            "layout": "NCHW",
        },
        "output": {"name": output, "semantics": "logits" if options.logits else "softmax probabilities"},
        "dynamic_batch": dynamic,
        "preprocess": pre,
        "parity": parity,
        "checkpoint_load": {
            "unpickled": load_meta.get("unpickled", False),
            "trusted_by_user": load_meta.get("trusted_by_user", False),
        },
    }


def _annotate(proto: Any, info: registry.ModelInfo, pre: dict[str, Any], output: str, options: ExportOptions) -> None:
    """Record model name and preprocessing in the ONNX file itself (metadata_props)."""
    import json

    entries = {
        "zooflow.model": info.name,
        "zooflow.output": output,
        "zooflow.preprocess": json.dumps(pre, sort_keys=True),
        "zooflow.opset": str(options.opset),
    }
    del proto.metadata_props[:]
    for key, value in entries.items():
        prop = proto.metadata_props.add()
        prop.key, prop.value = key, value


def export_checkpoint(
    checkpoint: ArtifactRef,
    store: Store,
    *,
    model: str,
    options: ExportOptions,
    probe_images: list[Path] | None = None,
    trust: bool = False,
) -> ArtifactRef:
    """The export stage: read the checkpoint artifact, export, verify, store ``<model>/onnx``."""
    info = registry.resolve(model)
    ckpt_path = store.path(checkpoint)
    with store.staging(STAGE) as staged:
        out = staged / f"{info.config.stem}.onnx"
        meta = export_model(ckpt_path, info, out, options, probe_images=probe_images, trust=trust)
        if checkpoint.meta.get("locally_initialised"):
            meta["warning"] = checkpoint.meta.get("warning", "exported from locally initialised weights")
        return store.commit(
            staged,
            kind="onnx",
            name=f"{model}/onnx",
            stage=STAGE,
            stage_version=STAGE_VERSION,
            params={"model": model, **options.model_dump()},
            inputs={"checkpoint": checkpoint},
            meta=meta,
            libraries=provenance.library_versions(*LIBRARIES),
        )
