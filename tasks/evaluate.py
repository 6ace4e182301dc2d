"""Evaluation tasks: PyTorch probe, preprocessing parity, evaluate (metrics, fidelity, verdict), report, gates.

The evaluation artifact (verdict included) and the report are stored before `check_gates` runs,
so a run that fails its gates still leaves both behind to look at.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from tasks._cache import ArtifactCachePolicy, remember, resumable
from tasks.ui import artifact_key, publish_document, rounded
from zooflow import evaluate as evaluate_mod
from zooflow import registry
from zooflow import report as report_mod
from zooflow.config import Gate
from zooflow.datasets import DatasetHandle
from zooflow.gates import Baselines, raise_on_failure
from zooflow.store import ArtifactRef, open_store


def _baseline_digests(inputs: Mapping[str, Any]) -> Mapping[str, Any]:
    """A named baseline is resolved to the digest it names now: a new baseline version misses the cache."""
    store = open_store(inputs["store_url"])
    specs = [g.baseline for g in inputs.get("gates") or () if getattr(g, "baseline", None)]
    resolved = {}
    for spec in specs:
        try:
            resolved[spec] = store.resolve(spec).digest
        except Exception:  # noqa: BLE001 - reported by the task itself, with the fix
            resolved[spec] = None
    return {"baselines": resolved}


PROBE_POLICY = ArtifactCachePolicy(stage="probe", stage_version=evaluate_mod.STAGE_VERSION)
PARITY_POLICY = ArtifactCachePolicy(stage="parity", stage_version=evaluate_mod.STAGE_VERSION)
EVALUATE_POLICY = ArtifactCachePolicy(
    stage="evaluate", stage_version=evaluate_mod.STAGE_VERSION, extra=_baseline_digests
)
REPORT_POLICY = ArtifactCachePolicy(stage="report", stage_version=report_mod.STAGE_VERSION)


@task(name="torch-probe", cache_policy=PROBE_POLICY, persist_result=True, result_serializer="json")
@resumable
def torch_probe(
    checkpoint: ArtifactRef, npz: ArtifactRef, model: str, images: int, trust_checkpoint: bool, store_url: str
) -> ArtifactRef:
    """PyTorch outputs on the first images: the compiled model is also checked against the framework."""
    store = open_store(store_url)
    return remember(
        evaluate_mod.torch_probe(store, checkpoint, npz, model=model, images=images, trust=trust_checkpoint)
    )


@task(name="preprocess-parity", cache_policy=PARITY_POLICY, persist_result=True, result_serializer="json")
@resumable
def preprocess_parity(framework: ArtifactRef, device: ArtifactRef, store_url: str) -> ArtifactRef:
    """Accuracy of the seed's preprocessing vs the card's DSP, both through the fp32 reference."""
    store = open_store(store_url)
    return remember(evaluate_mod.preprocess_parity(store, framework, device))


@task(name="evaluate", cache_policy=EVALUATE_POLICY, persist_result=True, result_serializer="json")
@resumable
def evaluate(
    outputs: ArtifactRef,
    reference: ArtifactRef | None,
    probe: ArtifactRef | None,
    parity: ArtifactRef | None,
    dataset: DatasetHandle,
    gates: tuple[Gate, ...],
    context: dict[str, Any],
    demo_data: bool,
    max_flips: int,
    store_url: str,
) -> ArtifactRef:
    """Top-1/top-5, per-class accuracy, fidelity vs fp32 and PyTorch, and the verdict against the gates."""
    store = open_store(store_url)
    info = registry.resolve(context["model"])
    against = Baselines(
        published={"top1": info.top1, "top5": info.top5},
        published_note="demo data is not ImageNet, so the published numbers do not apply" if demo_data else None,
        baseline=evaluate_mod.baseline_lookup(store),
    )
    ref = evaluate_mod.evaluate_run(
        store,
        outputs,
        reference=reference,
        gates=gates,
        against=against,
        probe=probe,
        parity=parity,
        class_names=json.loads(store.path(dataset.index, "index.json").read_text()).get("class_names"),
        max_flips=max_flips,
        context=context,
    )
    remember(ref)  # first: a kill while publishing must not lose the record
    metrics = evaluate_mod.load_metrics(store, ref)
    rows = [
        {"metric": "top-1 (%)", "value": metrics["top1"], "fp32 reference": metrics.get("reference", {}).get("top1")},
        {"metric": "top-5 (%)", "value": metrics["top5"], "fp32 reference": metrics.get("reference", {}).get("top5")},
    ]
    for key, label in (("agreement", "top-1 agreement with fp32 (%)"), ("sqnr_db", "SQNR vs fp32 (dB)")):
        if key in metrics:
            rows.append({"metric": label, "value": metrics[key], "fp32 reference": None})
    rows.append(
        {"metric": "verdict", "value": "pass" if metrics["verdict"]["passed"] else "FAIL", "fp32 reference": None}
    )
    rows = [{k: rounded(v) for k, v in row.items()} for row in rows]
    create_table_artifact(rows, key=artifact_key("metrics", ref.name or "evaluation"), description="Evaluation metrics")
    return ref


@task(name="report", cache_policy=REPORT_POLICY, persist_result=True, result_serializer="json")
@resumable
def report(
    evaluation: ArtifactRef,
    benchmark: ArtifactRef | None,
    store_url: str,
    sensitivity: ArtifactRef | None = None,
    mixed: dict[str, Any] | None = None,
) -> ArtifactRef:
    """Markdown + HTML report with the per-class plot (int8: the sensitivity table and depth plot), stored;
    also as a Prefect markdown artifact."""
    store = open_store(store_url)
    ref = report_mod.render(store, evaluation, benchmark=benchmark, sensitivity=sensitivity, mixed=mixed)
    remember(ref)  # first: a kill while publishing must not lose the record
    publish_document(
        store,
        ref,
        "report.md",
        key=artifact_key("report", ref.name or "report"),
        description=ref.meta.get("title", "report"),
        footer=f"The same report as one HTML file (plots embedded): `{store.path(ref, 'report.html')}`",
    )
    return ref


@task(name="gates", cache_policy=NO_CACHE)
def check_gates(evaluation: ArtifactRef, report: ArtifactRef | None, store_url: str) -> dict[str, Any]:
    """Fail the run when any gate failed; the message names metric, value, limit and baseline."""
    store = open_store(store_url)
    verdict: dict[str, Any] = evaluate_mod.load_metrics(store, evaluation)["verdict"]
    what = (evaluation.name or "the run").removesuffix("/evaluation")
    raise_on_failure(verdict, what, report.name if report is not None else None)
    return verdict
