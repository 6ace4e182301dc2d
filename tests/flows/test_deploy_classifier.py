"""deploy_classifier under a real Prefect API: caching, verify-on-hit, results in the store."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import MODEL
from tests.support.http import FileServer
from zooflow.config import ToolchainOptions
from zooflow.runconfig import RunConfig
from zooflow.store import Store

# whole flows under a Prefect API, 20-80 s each: the slow tier (docs/development.md)
pytestmark = [pytest.mark.usefixtures("prefect_api"), pytest.mark.slow]

# A first fp32 run: the fp32 reference repeats the run's own export/npz/compile/run tasks, so those
# are Cached within the same run; the DSP-preprocessing parity adds its own npz and run shards.
ALL_COMPUTED = Counter(
    {
        ("scan-dataset", "Completed"): 1,
        ("fetch-checkpoint", "Completed"): 1,
        ("export-onnx", "Completed"): 1,
        ("export-onnx", "Cached"): 1,
        ("calibration-set", "Completed"): 1,
        ("npz-shard", "Completed"): 6,
        ("npz-shard", "Cached"): 3,
        ("npz-index", "Completed"): 2,
        ("npz-index", "Cached"): 1,
        ("compile", "Completed"): 1,
        ("compile", "Cached"): 1,
        ("run-shard", "Completed"): 6,
        ("run-shard", "Cached"): 3,
        ("outputs", "Completed"): 2,
        ("outputs", "Cached"): 1,
        ("benchmark", "Completed"): 1,
        ("torch-probe", "Completed"): 1,
        ("preprocess-parity", "Completed"): 1,
        ("evaluate", "Completed"): 1,
        ("report", "Completed"): 1,
        ("gates", "Completed"): 1,
    }
)
# the folder is rescanned and gates are checked each run (a benchmark is reused on the same host)
ALWAYS_RUN = ("scan-dataset", "gates")
STAGES = {
    "dataset",
    "checkpoint",
    "onnx",
    "calibration",
    "npz",
    "compiled",
    "outputs",
    "benchmark",
    "reference-onnx",
    "reference-npz",
    "reference-compiled",
    "reference-outputs",
    "probe",
    "dsp-npz",
    "dsp-outputs",
    "parity",
    "evaluation",
    "report",
}


def demo_config(root: Path, **overrides: Any) -> RunConfig:
    """A small demo run: 10 classes x 2 images (calibration allows the 990 empty classes), 3 npz shards."""
    values: dict[str, Any] = {
        "demo": True,
        "store": str(root),
        "data": {"demo": {"classes": 10, "per_class": 2}},
        "calibration": {"allow_short": True},
        "npz": {"shard_size": 8},
        "benchmark": {"batch_sizes": (1,), "trials": 1, "iterations": 2, "warmup": 0},
        "evaluation": {"probe_images": 4},
    }
    return RunConfig(**{**values, **overrides})


def _run(config: RunConfig) -> tuple[Any, Counter[tuple[str, str]]]:
    """Run deploy_classifier; return its final state and a count of (task name, state name)."""
    from flows.deploy_classifier import deploy_classifier

    return _run_flow(deploy_classifier, config)


def _run_flow(flow: Any, config: Any) -> tuple[Any, Counter[tuple[str, str]]]:
    """Run a flow; return its final state and a count of (task name, state name)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    state = flow(config, return_state=True)
    # Task-run states reach the API as events, a moment after the flow returns: read until two
    # consecutive reads agree and no run is still shown as pending or running.
    previous: Counter[tuple[str, str]] | None = None
    deadline = time.monotonic() + 30
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
            )
            counts = Counter((_task_of(r.name), r.state.name) for r in runs if r.state is not None)
            settled = all(r.state is not None and r.state.is_final() for r in runs)
            if (settled and counts == previous) or time.monotonic() > deadline:
                return state, counts
            previous = counts
            time.sleep(0.5)


def _ui(state: Any) -> dict[str, Any]:
    """What the Prefect UI shows of a flow run: its name, tags, task-run names and artifacts (key -> data)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
        artifacts = client.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
    return {
        "name": run.name,
        "tags": run.tags,
        "tasks": [r.name for r in runs],
        "artifacts": {a.key: str(a.data) for a in artifacts if a.key},
        "ids": {a.key: str(a.id) for a in artifacts if a.key},
        "flow_level": {a.key for a in artifacts if a.key and a.task_run_id is None},  # under "Flow run"
    }


def _task_of(run_name: str) -> str:
    """The task of a task run: ``compile int8-max`` (a labelled run) or ``npz-shard-3f2`` (Prefect's default)."""
    return run_name.split(" ", 1)[0] if " " in run_name else run_name.rsplit("-", 1)[0]


def _snapshot(root: Path) -> dict[str, float]:
    """Every file under objects/ and names/ with its modification time."""
    return {
        str(p): p.stat().st_mtime_ns for sub in ("objects", "names") for p in (root / sub).rglob("*") if p.is_file()
    }


def _cached(tasks: Counter[tuple[str, str]], *recomputed: str) -> Counter[tuple[str, str]]:
    """The expected states of a rerun: ALWAYS_RUN and `recomputed` computed again, the rest Cached."""
    expected: Counter[tuple[str, str]] = Counter()
    for (name, first), n in ALL_COMPUTED.items():
        redo = first == "Completed" and (name in ALWAYS_RUN or name in recomputed)
        expected[(name, "Completed" if redo else "Cached")] += n
    return expected


def test_second_run_is_cached_and_a_corrupted_onnx_recomputes_export_only(
    tmp_path: Path, default_results_dir: Path
) -> None:
    root = tmp_path / "store"
    config = demo_config(root)
    # what other tests' failed flow runs left there (Prefect persists a failed flow's exception in its
    # default storage); these runs must add nothing
    before = set(default_results_dir.rglob("*"))

    first, tasks = _run(config)
    assert first.is_completed(), first.message
    assert tasks == ALL_COMPUTED
    result = first.result()
    assert result["status"] == "completed"
    assert first.message == result["summary"] and ": PASS, top-1 " in first.message  # the UI's State Message
    assert set(result["artifacts"]) == STAGES
    assert result["verdict"] == {"passed": True, "checks": [], "failures": []}  # fp32: no default gates
    metrics = json.loads(Store(root).path(result["artifacts"]["evaluation"]["digest"], "metrics.json").read_text())
    assert metrics["agreement"] == 100.0 and metrics["reference"]["top1"] == metrics["top1"]  # fp32 is the reference
    assert metrics["probe"]["images"] == 4 and metrics["probe"]["max_abs_diff"] < 1e-4  # vs PyTorch itself
    parity = metrics["preprocess_parity"]
    assert parity["framework"]["top1"] == metrics["top1"] and parity["images"] == 20
    assert parity["input_mean_abs_diff"] > 0.01 and parity["device_dsp"]["transform"]["resize_mode"] == "fixed"
    onnx_digest = result["artifacts"]["onnx"]["digest"]
    snapshot = _snapshot(root)

    ui = _ui(first)
    assert ui["name"] == f"{MODEL} fp32 demo (onnxruntime)"  # the runs list says what a run is
    assert {f"model:{MODEL}", "toolchain:onnxruntime", "preset:fp32"} <= set(ui["tags"])
    assert {"compile fp32", "compile fp32-reference", "evaluate fp32", "report fp32"} <= set(ui["tasks"])
    assert "run-shard fp32 shard 0" in ui["tasks"] and "run-shard fp32-reference shard 2" in ui["tasks"]
    assert {"npz-shard model 0", "npz-shard dsp 2", "npz-index model", "npz-index dsp"} <= set(ui["tasks"])
    summary_key = f"run-{MODEL.replace('_', '-')}-fp32-onnxruntime"
    assert summary_key in ui["artifacts"], sorted(ui["artifacts"])
    assert (
        f"## {MODEL} fp32 on demo: PASS" in ui["artifacts"][summary_key]
        and "| top-1 (%) |" in ui["artifacts"][summary_key]
    )
    report_key = f"report-{MODEL.replace('_', '-')}-onnxruntime-fp32-report"
    # a link in the UI to the report artifact itself
    assert f"[{report_key}](/artifacts/artifact/{ui['ids'][report_key]})" in ui["artifacts"][summary_key]
    # the report's plot is in the artifact itself (the store's files are out of the browser's reach)
    (inlined,) = re.findall(r"!\[[^\]]*\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", ui["artifacts"][report_key])
    report_ref = result["artifacts"]["report"]["digest"]
    assert base64.b64decode(inlined) == Store(root).path(report_ref, "per_class.png").read_bytes()
    bench = [k for k in ui["artifacts"] if k.startswith("benchmark-")]
    assert bench == [f"benchmark-{MODEL.replace('_', '-')}-onnxruntime-fp32-benchmark"], bench  # one line per setting
    assert "None" not in ui["artifacts"][bench[0]]
    metrics_table = next(v for k, v in ui["artifacts"].items() if k.startswith("metrics-"))
    assert all(
        len(str(x).split(".")[-1]) <= 2
        for row in json.loads(metrics_table)
        for x in row.values()
        if isinstance(x, float)
    )
    # the run's log line (also in its result): the numbers, the verdict and where the report is
    assert result["summary"].startswith(f"{MODEL} fp32: PASS, top-1 ") and result["summary"].endswith("report.html")

    second, tasks = _run(config)
    assert tasks == _cached(tasks)
    again = _ui(second)  # a cached run still says what it found, and where the report is
    assert summary_key in again["artifacts"] and "cached" in again["artifacts"][summary_key]
    assert report_key not in again["artifacts"]  # a cached report is not republished: the summary links the first
    assert f"[{report_key}](/artifacts/artifact/{ui['ids'][report_key]})" in again["artifacts"][summary_key]
    assert second.result()["summary"] == result["summary"]
    digests = {k: v["digest"] for k, v in result["artifacts"].items()}
    assert {k: v["digest"] for k, v in second.result()["artifacts"].items()} == digests
    fresh = {p for p in _snapshot(root).items() if p not in snapshot.items()}
    assert not [p for p, _ in fresh if p.endswith("manifest.json")], "a cached run writes no artifacts"

    remeasured, tasks = _run(demo_config(root, benchmark={**config.benchmark.model_dump(), "fresh": True}))
    assert tasks[("benchmark", "Completed")] == 1 and tasks[("report", "Completed")] == 1  # new timings, new report
    assert tasks[("evaluate", "Cached")] == 1 and tasks[("compile", "Cached")] == 2
    assert remeasured.result()["artifacts"]["benchmark"]["digest"] != digests["benchmark"]

    store = Store(root)
    onnx_file = store.path(onnx_digest)
    os.chmod(onnx_file, 0o644)
    with open(onnx_file, "r+b") as fh:  # flip bytes in the middle of the stored ONNX
        fh.seek(onnx_file.stat().st_size // 2)
        fh.write(b"\x00corrupt\x00")
    assert store.verify(onnx_digest)

    third, tasks = _run(config)
    assert tasks == _cached(tasks, "export-onnx")  # same ONNX bytes again: everything downstream stays cached
    assert third.result()["artifacts"]["onnx"]["digest"] == onnx_digest  # deterministic export, repaired object
    assert store.verify(onnx_digest) == []

    # Prefect's results for these tasks live under the store, not in the default location.
    assert any((root / "prefect").iterdir())
    assert set(default_results_dir.rglob("*")) == before


def test_a_damaged_npz_shard_recomputes_that_shard_only(tmp_path: Path) -> None:
    root = tmp_path / "store"
    first, _ = _run(demo_config(root))
    store = Store(root)
    npz_ref = store.ref(first.result()["artifacts"]["npz"]["digest"])
    shard = json.loads(store.path(npz_ref, "index.json").read_text())["shards"][1]["digest"]
    victim = next((Path(store.object_dir(shard)) / "files").rglob("*.npz"))
    victim.chmod(0o644)
    victim.unlink()
    second, tasks = _run(demo_config(root))
    assert tasks[("npz-shard", "Completed")] == 1 and tasks[("npz-shard", "Cached")] == 8
    assert tasks[("npz-index", "Cached")] == 3  # same shard content, same index (model, reference, dsp)
    assert second.result()["artifacts"]["npz"]["digest"] == npz_ref.digest
    assert store.verify(shard) == []


def test_changed_export_options_miss_the_cache_but_reuse_the_rest(tmp_path: Path) -> None:
    root = tmp_path / "store"
    first, _ = _run(demo_config(root))
    assert first.is_completed()
    second, tasks = _run(demo_config(root, export={"logits": True}))
    # a new ONNX: everything downstream of it is redone; the data stages and the PyTorch probe are not
    redone = ("export-onnx", "compile", "run-shard", "outputs", "benchmark", "preprocess-parity", "evaluate", "report")
    assert tasks == _cached(tasks, *redone)
    assert second.result()["artifacts"]["onnx"]["digest"] != first.result()["artifacts"]["onnx"]["digest"]
    assert [v.version for v in Store(root).versions(f"{MODEL}/onnx")] == [1, 2]
    _, tasks = _run(demo_config(root, seed=1, data={"demo": {"classes": 10, "per_class": 2}}))
    assert tasks[("calibration-set", "Completed")] == 1  # another seed: other demo data, other calibration set


def test_http_checkpoint_is_fetched_once_and_cached(tmp_path: Path, checkpoint_file: Path) -> None:
    data = checkpoint_file.read_bytes()
    name = f"/shufflenet_v1_local-{hashlib.sha256(data).hexdigest()[:8]}.pth"
    from zooflow.demo import write_demo_dataset  # a non-demo run needs data on disk

    write_demo_dataset(tmp_path / "data", classes=10, per_class=2)
    with FileServer({name: data}) as srv:
        config = demo_config(
            tmp_path / "store", demo=False, checkpoint=srv.url(name), data={"path": str(tmp_path / "data" / "val")}
        )
        first, tasks = _run(config)
        assert first.is_completed(), first.message
        assert tasks[("fetch-checkpoint", "Completed")] == 1
        _, tasks = _run(config)
        assert tasks[("fetch-checkpoint", "Cached")] == 1
        assert len(srv.behaviour.requests) == 1, "the cached run must not download again"


def test_library_upgrade_changes_the_cache_key(monkeypatch: pytest.MonkeyPatch) -> None:
    import tasks._cache as cache
    from tasks.export import EXPORT_POLICY

    inputs = {"model": MODEL, "options": {"opset": 11}, "store_url": "/a"}
    key = EXPORT_POLICY.base_key("export-onnx", inputs)
    assert EXPORT_POLICY.base_key("export-onnx", {**inputs, "store_url": "/elsewhere"}) == key
    assert EXPORT_POLICY.base_key("other-task", inputs) != key
    real = cache.library_versions
    monkeypatch.setattr(cache, "library_versions", lambda *names: {**real(*names), "onnx": "99.0"})
    assert EXPORT_POLICY.base_key("export-onnx", inputs) != key


def test_a_toolchain_stage_version_bump_misses_its_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bumping the core's COMPILE_VERSION (or BENCH_VERSION) means cached compiles lack what a compile now
    records: the flow's compile (benchmark) key changes with it, and the other stage's key does not."""
    from tasks.toolchain import BENCH_POLICY, COMPILE_POLICY
    from zooflow.config import BenchmarkSpec, QuantSpec
    from zooflow.store import ArtifactRef
    from zooflow.toolchains import onnxruntime as ort

    onnx = ArtifactRef(kind="onnx", digest="a" * 64, store="/a", files=("model.onnx",))
    calibration = ArtifactRef(kind="calibration", digest="b" * 64, store="/a", files=("list.txt",))
    common = {"toolchain": "onnxruntime", "toolchain_options": ToolchainOptions(), "store_url": "/a"}
    compile_inputs = {"onnx": onnx, "calibration": calibration, "quant": QuantSpec.from_preset("int8-max"), **common}
    bench_inputs = {"compiled": onnx, "spec": BenchmarkSpec(), **common}
    compile_key = COMPILE_POLICY.base_key("compile", compile_inputs)
    bench_key = BENCH_POLICY.base_key("benchmark", bench_inputs)
    versions = dict(ort.OnnxRuntimeToolchain.stage_versions)
    monkeypatch.setattr(ort.OnnxRuntimeToolchain, "stage_versions", {**versions, "compile": "next"})
    assert COMPILE_POLICY.base_key("compile", compile_inputs) != compile_key
    assert BENCH_POLICY.base_key("benchmark", bench_inputs) == bench_key
    monkeypatch.setattr(ort.OnnxRuntimeToolchain, "stage_versions", {**versions, "benchmark": "next"})
    assert COMPILE_POLICY.base_key("compile", compile_inputs) == compile_key
    assert BENCH_POLICY.base_key("benchmark", bench_inputs) != bench_key


def test_failing_stage_fails_the_run_and_keeps_earlier_artifacts(tmp_path: Path) -> None:
    root = tmp_path / "store"
    state, tasks = _run(demo_config(root, export={"opset": 10}))
    assert state.is_failed()
    assert tasks[("export-onnx", "Failed")] == 1 and tasks[("fetch-checkpoint", "Completed")] == 1
    with pytest.raises(Exception, match="opset 10 cannot express this model"):
        state.result()
    kinds = {Store(root).ref(d).kind for d in Store(root).digests()}
    assert {"checkpoint", "dataset", "dataset-index"} <= kinds and "onnx" not in kinds


def test_bad_data_fails_before_the_checkpoint_is_fetched(tmp_path: Path) -> None:
    (tmp_path / "val").mkdir()
    (tmp_path / "val" / "a.JPEG").write_bytes(b"x")
    state, tasks = _run(demo_config(tmp_path / "store", demo=False, data={"path": str(tmp_path / "val")}))
    assert state.is_failed()
    assert tasks == Counter({("scan-dataset", "Failed"): 1})
    with pytest.raises(Exception, match="needs a labels file"):
        state.result()


def test_unwritable_store_fails_before_any_task(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    state, tasks = _run(demo_config(blocker / "store"))
    assert state.is_failed() and not tasks
    with pytest.raises(Exception, match="is not writable"):
        state.result()


def test_int8_preset_through_the_flow_records_calibration(tmp_path: Path) -> None:
    state, _ = _run(
        demo_config(tmp_path / "store", quant="int8-percentile", toolchain_options={"calibration_chunk": 8})
    )
    assert state.is_completed(), state.message
    result = state.result()
    store = Store(tmp_path / "store")
    compiled = store.manifest(result["artifacts"]["compiled"]["digest"])
    assert compiled.meta["calibration_images"] == 10 and compiled.meta["percentile"] == 99.999
    assert result["quant"] == "int8-percentile" and result["toolchain"] == "onnxruntime"
    # the report says how the model was quantised, on what CPU and why, and what the kernel check found
    report = store.path(store.ref(result["artifacts"]["report"]["digest"]), "report.md").read_text()
    scheme = compiled.meta["int8_scheme"]
    assert "## int8 quantisation" in report and f"Weight scheme `{scheme['weights']}`" in report
    assert scheme["reason"] in report and scheme["cpu"] in report and "percentile of |x| (99.999)" in report
    assert f"gap {compiled.meta['kernel_check']['gap_db']:.1f} dB" in report


def test_vastai_flow_full_resolution_every_layout_and_a_pip_vamc_upgrade(
    tmp_path: Path, emulators: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole vastai flow against the emulators: full-size npz inputs, each known compiled-model
    layout, and a pip-installed vamc (no --version) whose upgrade makes the compile miss the cache."""
    from tests.support import pip_tool

    if pip_tool.uv() is None:
        pytest.skip("uv is not installed here (CI installs it): cannot pip-install the packaged vamc emulator")
    venv = pip_tool.make_venv(tmp_path / "venv")
    pip_tool.install(venv, pip_tool.build_wheel(tmp_path / "wheels", "1.0"))
    monkeypatch.setenv("PATH", f"{venv}{os.pathsep}{os.environ['PATH']}")  # the pip vamc first, the emulated vamp
    config = demo_config(tmp_path / "store", toolchain="vastai")  # no quant: the seed's int8-percentile
    store = Store(tmp_path / "store")

    def compiled_of(state: Any) -> Any:
        return store.manifest(state.result()["artifacts"]["compiled"]["digest"])

    first, tasks = _run(config)
    assert first.is_completed(), first.message
    result = first.result()
    assert result["quant"] == "int8-percentile"
    # the vastai export (static batch), npz format, compile and runs are the toolchain's; the fp32
    # reference and DSP parity go through the embedded toolchain: nothing is shared, nothing Cached
    assert {state for _, state in tasks} == {"Completed"}
    assert tasks[("export-onnx", "Completed")] == 2 and tasks[("npz-shard", "Completed")] == 9
    assert result["artifacts"]["reference-compiled"]["name"] == f"{MODEL}/onnxruntime/fp32"
    compiled = compiled_of(first)
    assert compiled.meta["layout"].endswith("-int8-percentile-3_224_224-vacc/shufflenet_v1_1x_16xb64_in1k")
    assert compiled.producer.toolchain["vamc"].startswith("vamc-emulated 1.0 (RECORD sha256:")
    assert compiled.producer.toolchain["vamc_source"] == "installed distribution (importlib.metadata)"
    assert compiled.meta["percentile"] == "vamc v2 built-in (a v2 classification config has no key for it)"
    npz_index = store.ref(
        next(i.digest for i in store.manifest(result["artifacts"]["outputs"]["digest"]).inputs if i.role == "npz")
    )
    shapes = set()
    for shard in json.loads(store.path(npz_index, "index.json").read_text())["shards"]:
        for f in store.directory(store.ref(shard["digest"])).rglob("*.npz"):
            with np.load(f) as data:
                shapes.add(data["input_0"].shape)
    assert len(shapes) > 3  # full resolution: the demo's landscape, portrait, square, small and wide images
    bench = store.ref(result["artifacts"]["benchmark"]["digest"])
    command = store.path(bench, "vamp-b1.log").read_text().splitlines()[0].split()
    assert "-s" not in command and "-d" not in command
    report = store.path(store.ref(result["artifacts"]["report"]["digest"]), "report.md").read_text()
    assert "Pre-resizing on the host to 256x256 (OpenCV bilinear) would leave the DSP's crop unchanged" in report
    assert "image2npz's format: full resolution, the card's DSP resizes" in report

    for version, layout, found in (
        ("2.0", "seed", "-int8-percentile-3_256_256-vacc/shufflenet_v1_1x_16xb64_in1k"),
        ("3.0", "2024", "-int8-percentile-1_1_256_256-vacc/mod"),
    ):
        pip_tool.install(venv, pip_tool.build_wheel(tmp_path / "wheels", version))  # an upgraded vamc
        monkeypatch.setenv("VASTAI_EMULATOR_LAYOUT", layout)  # that writes another layout
        state, tasks = _run(config)
        assert state.is_completed(), state.message
        changed = {name for (name, st) in tasks if st == "Completed"} - set(ALWAYS_RUN)
        # only the toolchain's stages miss the cache (the new vamc's model is benchmarked, so the report is new)
        assert changed == {"compile", "run-shard", "outputs", "benchmark", "report"}, changed
        assert tasks[("compile", "Completed")] == 1 and tasks[("run-shard", "Completed")] == 3  # not the reference's
        assert tasks[("evaluate", "Cached")] == 1  # the same outputs: the evaluation stands
        compiled = compiled_of(state)
        assert compiled.meta["layout"].endswith(found) and compiled.producer.toolchain["vamc"].startswith(
            f"vamc-emulated {version}"
        )
    monkeypatch.delenv("VASTAI_EMULATOR_LAYOUT")
    v3, tasks = _run(config.model_copy(update={"toolchain_options": ToolchainOptions(vamc_generation="v3")}))
    assert v3.is_completed(), v3.message
    # kept: the fp32 reference and the embedded int8 model the sensitivity ranking runs on
    assert tasks[("compile", "Completed")] == 1 and tasks[("compile", "Cached")] == 2
    assert compiled_of(v3).meta["layout"] == "deploy_weights/shufflenet_v1_1x_16xb64_in1k_int8_percentile/mod"
    assert compiled_of(v3).meta["percentile"] == "vamc v3 built-in (a v3 classification config has no key for it)"


def test_int8_mixed_on_vastai_ranks_on_the_embedded_toolchain_and_tells_vamc_the_convs(
    tmp_path: Path, emulators: Path
) -> None:
    """int8-mixed K=2 on the card: the ranking comes from the embedded toolchain's int8-max of the same
    calibration set (labelled so in the report), its first two layers reach vamc as skip_conv_layers
    (the emulated vamc reads them back), and the report says what was passed."""
    import onnx

    root = tmp_path / "store"
    quant = {"dtype": "int8", "calibrate": "max", "keep_float": 2}
    # no gates: the emulator computes in fp32 after its DSP preprocessing, so agreement is the DSP's, not int8's
    evaluation = {"probe_images": 0, "gates": []}
    state, tasks = _run(demo_config(root, toolchain="vastai", quant=quant, evaluation=evaluation))
    assert state.is_completed(), state.message
    assert tasks[("sensitivity", "Completed")] == 1
    result, store = state.result(), Store(root)
    ranking = store.ref(result["artifacts"]["sensitivity"]["digest"]).meta["ranking"]
    compiled = store.ref(result["artifacts"]["compiled"]["digest"])
    assert store.resolve(f"{MODEL}/vastai/int8-mixed-k2").digest == compiled.digest
    onnx_ref = store.ref(result["artifacts"]["onnx"]["digest"])
    convs = [n.name for n in onnx.load(str(store.path(onnx_ref))).graph.node if n.op_type == "Conv"]
    expected = sorted(convs.index(n) for n in ranking[:2] if n in convs)
    assert expected, "the ranking's first two layers include a conv"
    graph = json.loads(store.path(compiled, compiled.meta["prefix"] + ".json").read_text())
    assert graph["skipped"] == {"skip_conv_layers": expected}
    text = store.path(store.ref(result["artifacts"]["report"]["digest"]), "report.md").read_text()
    assert "toolchain-independent: computed with the embedded toolchain on the same calibration set" in text
    assert f"Passed to vamc as `skip_conv_layers: {expected}`" in text


def test_a_failing_compiler_fails_the_run_and_the_fixed_rerun_resumes(
    tmp_path: Path, emulators: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = demo_config(tmp_path / "store", toolchain="vastai", quant="fp16")
    monkeypatch.setenv("VASTAI_EMULATOR_FAULT", "exit")
    state, tasks = _run(config)
    assert state.is_failed() and tasks[("compile", "Failed")] == 1
    with pytest.raises(Exception, match="vamc exited with status 3"):
        state.result()
    monkeypatch.delenv("VASTAI_EMULATOR_FAULT")
    state, tasks = _run(config)
    assert state.is_completed(), state.message
    for name in ("fetch-checkpoint", "export-onnx", "calibration-set", "npz-index"):
        assert tasks[(name, "Cached")] >= 1 and tasks[(name, "Completed")] == 0, name
    assert tasks[("compile", "Completed")] == 1 and tasks[("compile", "Cached")] == 1  # vamc again; the reference kept


def test_a_failing_gate_fails_the_run_with_a_readable_reason_and_keeps_the_report(tmp_path: Path) -> None:
    root = tmp_path / "store"
    gates = [{"metric": "top1", "min": 90.0}, {"metric": "top5", "max_drop_vs_reference": 0.0}]
    state, tasks = _run(
        demo_config(root, quant="int8-max", evaluation={"probe_images": 0, "preprocess_parity": False, "gates": gates})
    )
    assert state.is_failed() and tasks[("gates", "Failed")] == 1
    assert tasks[("evaluate", "Completed")] == 1 and tasks[("report", "Completed")] == 1
    with pytest.raises(
        Exception, match=r"int8-max failed 1 gate check\(s\):\n  top1 = \d+\.\d\d, below the minimum 90\.00"
    ):
        state.result()
    store = Store(root)
    report = store.resolve(f"{MODEL}/onnxruntime/int8-max/report")
    text = store.path(report, "report.md").read_text()
    assert ": FAIL" in text.splitlines()[0] and "**FAIL**: top1 = " in text and "pass: top5 = " in text
    assert store.path(report, "per_class.png").stat().st_size > 10_000
    # the same run with a goal it meets completes, and the verdict is recorded in the evaluation
    state, tasks = _run(demo_config(root, quant="int8-max", evaluation={"probe_images": 0, "preprocess_parity": False}))
    assert state.is_completed(), state.message
    # the preset's compile (shared with the sensitivity ranking's) and the reference's are cached; other gates: re-evaluated
    assert tasks[("compile", "Cached")] == 3 and tasks[("evaluate", "Completed")] == 1
    evaluation = store.resolve(f"{MODEL}/onnxruntime/int8-max/evaluation")
    verdict = json.loads(store.path(evaluation, "metrics.json").read_text())["verdict"]
    assert verdict["passed"] and verdict["checks"][0]["reason"].endswith("the limit is 1.50 points below")


def test_a_stage_whose_result_was_lost_returns_its_committed_artifact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kill after a compile committed its artifact but before Prefect stored the task's result:
    the rerun misses Prefect's cache, finds the artifact through the store's record, compiles nothing."""
    from zooflow.toolchains.onnxruntime import OnnxRuntimeToolchain

    root = tmp_path / "store"
    config = demo_config(root, quant="fp16", evaluation={"probe_images": 0, "preprocess_parity": False})
    first, _ = _run(config)
    assert first.is_completed(), first.message
    lost = [p for p in (root / "prefect").iterdir() if p.name.startswith("compile-")]
    assert len(lost) == 2  # fp16 and the fp32 reference
    for path in lost:
        path.unlink()

    def no_compiling(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("compiled again")

    monkeypatch.setattr(OnnxRuntimeToolchain, "compile", no_compiling)
    second, tasks = _run(config)
    assert second.is_completed(), second.message
    assert tasks[("compile", "Completed")] == 2  # ran, but returned the stored artifacts
    assert tasks[("run-shard", "Cached")] == 6  # same compiled digests: everything downstream hits the cache
    result, again = first.result()["artifacts"], second.result()["artifacts"]
    assert again["compiled"] == {**result["compiled"], "state": "Completed"}


def test_int8_ranges_that_clip_are_warned_in_the_summary_report_ui_and_cli(
    tmp_path: Path, checkpoint_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """kl_divergence on real photographs: its ranges clip a depthwise convolution's output (measured at
    weight seeds 1-13, test_int8 and README); the compile's range check names the tensor, and the run's
    summary, report, Prefect UI and CLI all pass that warning on, unchanged."""
    from tests.support.images import PHOTOS_11, write_crops
    from zooflow.cli.flows import finish_flow
    from zooflow.toolchains import rangecheck

    val = write_crops(tmp_path / "crops", PHOTOS_11, 99, seed=7)
    config = demo_config(
        tmp_path / "store",
        demo=False,
        checkpoint=str(checkpoint_file),
        data={"path": str(val), "num_classes": len(PHOTOS_11)},
        calibration={"per_class": 9},
        npz={"shard_size": 50},
        quant="int8-kl_divergence",
        evaluation={"probe_images": 0, "preprocess_parity": False},
    )
    state, _ = _run(config)
    assert state.is_completed(), state.message
    result = state.result()
    store = Store(tmp_path / "store")
    check = store.manifest(result["artifacts"]["compiled"]["digest"]).meta["range_check"]
    said = check["warning"]
    assert check["worst"][0]["tensor"] in said and "int8-mse" in said, check
    # the ranges checked are the file's: ORT fixes the Softmax output's to [0, 1], whatever KL asked for
    model = store.path(store.ref(result["artifacts"]["compiled"]["digest"]), "model.onnx")
    low, high = rangecheck.used_ranges(model)["probs"]
    assert low == 0.0 and high == pytest.approx(1.0) and "probs" not in {w["tensor"] for w in check["worst"]}
    assert said.startswith("int8-kl_divergence keeps ") and said in result["warnings"]  # the preset named once
    report = store.path(store.ref(result["artifacts"]["report"]["digest"]), "report.md").read_text()
    assert f"> **Warning:** {said}" in report
    (compile_row,) = [v for k, v in _ui(state)["artifacts"].items() if k.endswith("onnxruntime-int8-kl-divergence")]
    assert "int8 ranges" in compile_row and check["worst"][0]["tensor"] in compile_row
    finish_flow(result, False, lambda _: None)
    assert f"warning: {' '.join(said.split())}" in " ".join(capsys.readouterr().err.split())
