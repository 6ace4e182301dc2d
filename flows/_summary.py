"""What a run says about itself in the Prefect UI: its name and tags, a run-level summary artifact
and a short log line with the numbers, published by every run, computed or cached."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from prefect.artifacts import create_markdown_artifact
from prefect.logging import get_run_logger
from prefect.runtime import flow_run
from prefect.states import Completed, State

from tasks.ui import artifact_key, rounded
from zooflow import evaluate as evaluate_mod
from zooflow import toolchains
from zooflow.runconfig import PipelineConfig
from zooflow.store import ArtifactRef, open_store


def data_label(config: PipelineConfig) -> str:
    """The data a run reads, in a word: ``demo`` or the folder's name (``val``)."""
    if config.data.path is None:
        return "demo"
    return PurePosixPath(config.data.path.rstrip("/")).name or config.data.path


def _config(cls: type[PipelineConfig]) -> PipelineConfig | None:
    value = flow_run.parameters.get("config")
    if isinstance(value, cls):
        return value
    try:
        return cls.model_validate(value) if value is not None else cls(demo=True)
    except Exception:  # noqa: BLE001 - a name must never fail a run; validation reports the problem itself
        return None


def run_name(kind: str, cls: type[PipelineConfig]) -> Any:
    """A `flow_run_name` callable: ``<model> <preset> <data>`` (``<model> sweep <data>`` for sweeps)."""

    def name() -> str:
        config = _config(cls)
        if config is None:
            return f"{kind} (invalid parameters)"
        quant = getattr(config, "quant", None)
        what = toolchains.quant_label(quant) if quant is not None else "sweep"
        return f"{config.model} {what} {data_label(config)} ({config.toolchain})"

    return name


def nightly_name() -> str:
    """A nightly run's name: ``nightly <matrix name> <night>`` (the matrix file's stem if it cannot be read)."""
    import datetime as dt

    from zooflow.runconfig import NightlyConfig, RegressionMatrix

    value = flow_run.parameters.get("config")
    try:
        config = value if isinstance(value, NightlyConfig) else NightlyConfig.model_validate(value or {})
    except Exception:  # noqa: BLE001 - a name must never fail a run; validation reports the problem itself
        return "nightly (invalid parameters)"
    night = config.night or dt.datetime.now(dt.UTC).date().isoformat()
    try:
        name = RegressionMatrix.load(config.matrix).name
    except Exception:  # noqa: BLE001 - as above: the run itself says what is wrong with the matrix
        name = PurePosixPath(config.matrix).stem
    return f"nightly {name} {night}"


def tag_run(config: PipelineConfig, *extra: str) -> None:
    """Tag the current flow run with its model, toolchain and presets, so the runs list filters by them."""
    from prefect.client.orchestration import get_client

    run_id = flow_run.id
    if run_id is None:
        return
    tags = {f"model:{config.model}", f"toolchain:{config.toolchain}", *extra}
    with get_client(sync_client=True) as client:
        current = client.read_flow_run(run_id).tags or []
        client.update_flow_run(run_id, tags=sorted(set(current) | tags))


def report_link(report_key: str, evaluation_digest: str) -> str:
    """The UI path of the newest report artifact showing this evaluation (its lineage table names the
    evaluation's digest), else of the key's history page; a cached run republishes no report."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    try:
        with get_client(sync_client=True) as client:
            found = client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[report_key])),
                sort=ArtifactSort.CREATED_DESC,
                limit=50,
            )
    except Exception:  # noqa: BLE001 - a link must never fail a run; the key's page still lists the report
        found = []
    shown = f"`{evaluation_digest[:12]}`"
    return next((f"/artifacts/artifact/{a.id}" for a in found if shown in str(a.data)), f"/artifacts/key/{report_key}")


def publish_summary(store_url: str, config: PipelineConfig, result: dict[str, Any], state: str) -> str:
    """The run-level summary artifact (metrics, verdict, where the report is) and a log line saying the same
    (returned too: the flow's result carries it)."""
    store = open_store(store_url)
    evaluation: ArtifactRef = result["evaluation"]
    report: ArtifactRef = result["report"]
    metrics = evaluate_mod.load_metrics(store, evaluation)
    ref = metrics.get("reference") or {}
    verdict = "PASS" if metrics["verdict"]["passed"] else "FAIL"
    preset = result["preset"]
    report_key = artifact_key("report", report.name or "report")
    rows = [
        ("top-1 (%)", metrics["top1"], ref.get("top1")),
        ("top-5 (%)", metrics["top5"], ref.get("top5")),
        ("top-1 agreement with fp32 (%)", metrics.get("agreement"), None),
        ("SQNR vs fp32 (dB)", metrics.get("sqnr_db"), None),
    ]
    lines = [
        f"## {config.model} {preset} on {data_label(config)}: {verdict}",
        "",
        f"Toolchain `{config.toolchain}`, {metrics['images']} images; stages {state}.",
        "",
        "| metric | this run | fp32 reference |",
        "|---|---|---|",
        *(f"| {m} | {rounded(v)} | {rounded(r) if r is not None else ''} |" for m, v, r in rows if v is not None),
        "",
        *(f"- {'pass' if c['passed'] else '**FAIL**'}: {c['reason']}" for c in metrics["verdict"]["checks"]),
        "",
        f"Report (tables and plots): [{report_key}]({report_link(report_key, evaluation.digest)}) "
        f"([all its versions](/artifacts/key/{report_key})); stored as `{report.name}` "
        f"(`{store.path(report, 'report.html')}`).",
    ]
    create_markdown_artifact(
        "\n".join(lines),
        key=artifact_key("run", config.model, preset, config.toolchain),
        description=f"{config.model} {preset}: {verdict}",
    )
    extra = "".join(
        f", {label} {rounded(metrics[k])}{unit}"
        for k, label, unit in (("agreement", "agreement", "%"), ("sqnr_db", "SQNR", " dB"))
        if metrics.get(k) is not None
    )
    line = (
        f"{config.model} {preset}: {verdict}, top-1 {rounded(metrics['top1'])}% top-5 {rounded(metrics['top5'])}% "
        f"(fp32 {rounded(ref.get('top1'))}%){extra}; report {store.path(report, 'report.html')}"
    )
    get_run_logger().info(line)
    return line


def completed(result: dict[str, Any], line: str) -> State[dict[str, Any]]:
    """The flow's final state: Completed with its summary line as the state's message (the UI's "State
    Message" read "None" on every run otherwise); callers still get `result` as the flow's return value."""
    return Completed(message=line, data=result)
