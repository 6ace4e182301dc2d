"""Sensitivity task: which layers cost int8 its accuracy, ranked on the embedded toolchain's int8 model.

Cached on the compiled model (whose float graph is the fp32 reference it is measured against), the
calibration set the probe images come from, and their number.
"""

from __future__ import annotations

from prefect import task

from tasks._cache import ArtifactCachePolicy, remember, resumable
from tasks.ui import artifact_key, publish_document
from zooflow import sensitivity_report
from zooflow.store import ArtifactRef, open_store

SENSITIVITY_POLICY = ArtifactCachePolicy(
    stage=sensitivity_report.STAGE,
    stage_version=sensitivity_report.STAGE_VERSION,
    libraries=("onnxruntime", "onnx"),
)


@task(name="sensitivity", cache_policy=SENSITIVITY_POLICY, persist_result=True, result_serializer="json")
@resumable
def sensitivity(
    compiled: ArtifactRef, onnx: ArtifactRef, calibration: ArtifactRef, images: int, store_url: str
) -> ArtifactRef:
    """Rank every quantised layer by the output SQNR it wins back alone in float; table and plot in the UI."""
    store = open_store(store_url)
    ref = remember(sensitivity_report.measure(store, compiled, onnx, calibration, images))
    publish_document(
        store,
        ref,
        sensitivity_report.TABLE_FILE,
        key=artifact_key("sensitivity", ref.name or "sensitivity"),
        description=f"Per-layer int8 sensitivity ({ref.meta.get('on')})",
        footer=f"The ranking as JSON: `{store.path(ref, sensitivity_report.JSON_FILE)}`",
    )
    return ref
