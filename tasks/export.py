"""Export task: checkpoint artifact -> verified ONNX artifact."""

from __future__ import annotations

from prefect import task

from tasks._cache import ArtifactCachePolicy, remember, resumable
from tasks.ui import publish
from zooflow import export
from zooflow.config import ExportOptions
from zooflow.store import ArtifactRef, open_store

EXPORT_POLICY = ArtifactCachePolicy(stage=export.STAGE, stage_version=export.STAGE_VERSION, libraries=export.LIBRARIES)


@task(name="export-onnx", cache_policy=EXPORT_POLICY, persist_result=True, result_serializer="json")
@resumable
def export_onnx(
    checkpoint: ArtifactRef, model: str, options: ExportOptions, trust_checkpoint: bool, store_url: str
) -> ArtifactRef:
    """Export to ONNX and check it against PyTorch."""
    store = open_store(store_url)
    ref = export.export_checkpoint(checkpoint, store, model=model, options=options, trust=trust_checkpoint)
    remember(ref)  # first: a kill while publishing must not lose the record
    parity = ref.meta["parity"]
    publish(
        ref,
        f"ONNX export of {model}",
        {
            "opset": ref.meta["opset"],
            "output": f"{ref.meta['output']['name']} ({ref.meta['output']['semantics']})",
            "max abs diff vs PyTorch": f"{parity['max_abs_diff']:.3g} (limit {parity['tolerance']})",
            "probe": parity["probe"],
            "checkpoint": f"`{checkpoint.digest[:12]}`",
        },
        warning=ref.meta.get("warning"),
    )
    return ref
