"""Export stage: ONNX that matches mmcls's own PyTorch forward on real photographs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from tests.conftest import MODEL
from zooflow import export, models
from zooflow.config import ExportOptions
from zooflow.errors import CheckpointError, ExportError
from zooflow.fetch import fetch_checkpoint
from zooflow.store import Store


@pytest.fixture(scope="module")
def export_store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    return Store(tmp_path_factory.mktemp("export-store"))


@pytest.fixture(scope="module")
def ckpt_ref(export_store: Store, checkpoint_file: Path):  # type: ignore[no-untyped-def]
    return fetch_checkpoint(str(checkpoint_file), export_store, model=MODEL, show_progress=False)


def _mmcls_reference(model_info, checkpoint_file: Path, photos: list[Path]) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
    """Inputs and softmax outputs from mmcls's own test-mode forward (not zooflow's wrapper)."""
    import torch

    model = models.build_model(model_info)
    models.load_strict(model, checkpoint_file, model_info)
    batch = export.load_images(models.load_config(model_info), photos)
    with torch.no_grad():
        probs = model(img=torch.from_numpy(batch), return_loss=False)  # list of per-image arrays
    return batch, np.stack(probs)


def test_onnx_matches_mmcls_on_real_photos(
    export_store: Store, ckpt_ref, model_info, checkpoint_file: Path, photos: list[Path]
) -> None:  # type: ignore[no-untyped-def]
    ref = export.export_checkpoint(ckpt_ref, export_store, model=MODEL, options=ExportOptions(), probe_images=photos)
    onnx_path = export_store.path(ref)
    batch, expected = _mmcls_reference(model_info, checkpoint_file, photos)
    actual = export.run_onnx(onnx_path, batch, per_sample=True)
    assert actual.shape == (len(photos), 1000)
    np.testing.assert_allclose(actual.sum(1), 1.0, atol=1e-5)  # softmax probabilities, like pytorch2onnx.py
    assert np.max(np.abs(actual - expected)) <= 1e-4
    assert ref.meta["parity"]["max_abs_diff"] <= 1e-4
    assert ref.meta["parity"]["probe"] == f"{len(photos)} photo(s) + 4 seeded noise inputs"


def test_graph_follows_the_seed_contract(export_store: Store, ckpt_ref) -> None:  # type: ignore[no-untyped-def]
    ref = export.export_checkpoint(ckpt_ref, export_store, model=MODEL, options=ExportOptions())
    proto = onnx.load(str(export_store.path(ref)))
    assert proto.opset_import[0].version == 11
    assert [i.name for i in proto.graph.input] == ["input"]
    assert [o.name for o in proto.graph.output] == ["probs"]
    dims = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 224, 224]
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["zooflow.model"] == MODEL
    assert '"crop": [224, 224]' in props["zooflow.preprocess"]
    manifest = export_store.manifest(ref.digest)
    assert manifest.inputs[0].digest == ckpt_ref.digest
    assert set(export.LIBRARIES) <= set(manifest.producer.libraries)
    assert manifest.meta["preprocess"]["mean"] == [123.675, 116.28, 103.53]


def test_logits_and_dynamic_batch(
    export_store: Store, ckpt_ref, model_info, checkpoint_file: Path, photos: list[Path]
) -> None:  # type: ignore[no-untyped-def]
    ref = export.export_checkpoint(
        ckpt_ref, export_store, model=MODEL, options=ExportOptions(logits=True, dynamic_batch=True), probe_images=photos
    )
    path = export_store.path(ref)
    proto = onnx.load(str(path))
    assert proto.graph.output[0].name == "logits"
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    batch, probs = _mmcls_reference(model_info, checkpoint_file, photos)
    logits = export.run_onnx(path, batch, per_sample=False)  # whole batch at once
    assert logits.shape == (len(photos), 1000)
    softmax = np.exp(logits - logits.max(1, keepdims=True))
    softmax /= softmax.sum(1, keepdims=True)
    assert np.max(np.abs(softmax - probs)) <= 1e-5
    assert not np.allclose(logits.sum(1), 1.0)


def test_opset_10_fails_with_the_seeds_pad_explanation(export_store: Store, ckpt_ref) -> None:  # type: ignore[no-untyped-def]
    before = export_store.versions(f"{MODEL}/onnx")
    with pytest.raises(ExportError) as exc:
        export.export_checkpoint(ckpt_ref, export_store, model=MODEL, options=ExportOptions(opset=10))
    assert "Pad" in exc.value.problem
    assert "input size 2 not in range [min=1, max=1]" in exc.value.problem
    assert exc.value.fix == "export with --opset 11"
    assert export_store.versions(f"{MODEL}/onnx") == before  # the failed export published nothing


def test_checkpoint_with_wrong_keys_lists_them(export_store: Store, checkpoint_file: Path, tmp_path: Path) -> None:
    import torch

    ckpt = torch.load(checkpoint_file, weights_only=True)
    state = ckpt["state_dict"]
    state.pop("head.fc.bias")
    state["head.extra.weight"] = torch.zeros(3)
    state["head.fc.weight"] = torch.zeros(10, 960)
    bad = tmp_path / "bad.pth"
    torch.save(ckpt, bad)
    ref = fetch_checkpoint(str(bad), export_store, model=MODEL, show_progress=False)
    before = export_store.digests()
    with pytest.raises(CheckpointError) as exc:
        export.export_checkpoint(ref, export_store, model=MODEL, options=ExportOptions())
    text = exc.value.problem
    assert "1 missing key(s): head.fc.bias" in text
    assert "1 unexpected key(s): head.extra.weight" in text
    assert "head.fc.weight (10, 960) vs (1000, 960)" in text
    assert "--model" in (exc.value.fix or "")
    assert export_store.digests() == before  # nothing half-written


def test_file_that_is_not_a_checkpoint_is_never_published(export_store: Store, tmp_path: Path) -> None:
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"this is not a checkpoint")
    before = (export_store.digests(), {n: export_store.versions(n) for n in export_store.names()})
    with pytest.raises(CheckpointError, match=r"junk\.pth is not a readable PyTorch checkpoint.*nothing was published"):
        fetch_checkpoint(str(junk), export_store, model=MODEL, show_progress=False)
    assert (export_store.digests(), {n: export_store.versions(n) for n in export_store.names()}) == before
    assert junk.read_bytes() == b"this is not a checkpoint"  # the user's file is untouched
