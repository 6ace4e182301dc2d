"""quant_sweep and nightly_regression under a real Prefect API."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from tests.conftest import MODEL
from tests.flows.test_deploy_classifier import _run_flow, _ui
from zooflow.runconfig import NightlyConfig, SweepConfig
from zooflow.store import Store

# whole flows under a Prefect API, 20-80 s each: the slow tier (docs/development.md)
pytestmark = [pytest.mark.usefixtures("prefect_api"), pytest.mark.slow]

SMALL: dict[str, Any] = {
    "calibration": {"allow_short": True},
    "npz": {"shard_size": 20},
    "benchmark": {"batch_sizes": (1,), "trials": 1, "iterations": 2, "warmup": 0},
    "evaluation": {"probe_images": 0, "preprocess_parity": False},
}


def test_sweep_computes_upstream_once_and_writes_table_and_pareto_plot(tmp_path: Path) -> None:
    from flows.quant_sweep import quant_sweep

    root = tmp_path / "store"
    config = SweepConfig(
        demo=True,
        store=str(root),
        presets=("fp32", "fp16", "int8-max"),
        data={"demo": {"classes": 10}},
        **{**SMALL, "benchmark": {**SMALL["benchmark"], "batch_sizes": (1, 8)}},
    )
    state, tasks = _run_flow(quant_sweep, config)
    assert state.is_completed(), state.message
    # the UI's "State Message" is the sweep's summary line (it read "None")
    assert re.fullmatch(
        rf"{MODEL} · onnxruntime · quantisation sweep: 3 preset\(s\); best top-1 \S+ [\d.]+%, fastest \S+ "
        r"[\d.]+ images/s; all gates pass",
        state.message,
    ), state.message
    for upstream in ("fetch-checkpoint", "calibration-set", "npz-index"):
        assert tasks[(upstream, "Completed")] == 1, upstream  # shared by every preset
    # fp32 is the reference itself: its compile and run are the reference's, Cached within the run; int8-max's
    # compile is the one its sensitivity ranking made first, Cached too
    assert tasks[("compile", "Completed")] == 3 and tasks[("compile", "Cached")] == 2
    assert tasks[("benchmark", "Completed")] == 3 and tasks[("evaluate", "Completed")] == 3
    result = state.result()
    assert [row["preset"] for row in result["table"]] == ["fp32", "fp16", "int8-max"]
    fp32, fp16, int8 = result["table"]
    assert fp32["agreement"] == 100.0 and fp32["drop_top1"] == 0.0
    assert all(row["throughput"] > 0 and row["latency_p99_ms"] > 0 for row in result["table"])
    assert int8["sqnr_db"] < fp16["sqnr_db"]  # int8 is further from fp32 than fp16
    # int8: the weight scheme and the kernel check (integer vs float) in its row; speed vs fp32 at batch 8, 1 thread
    assert int8["int8_weights"] in ("int8", "int8-reduced") and int8["int8_gap_db"] <= 3.0
    assert fp32["int8_gap_db"] is None and fp32["fixed_vs_fp32"] == 1.0
    assert all(row["throughput_fixed"] > 0 and row["fixed_vs_fp32"] > 0 for row in result["table"])
    store = Store(root)
    sweep = store.ref(result["artifacts"]["sweep"]["digest"])
    assert sweep.kind == "sweep" and {"sweep.md", "sweep.json", "pareto.png", "sweep.html"} <= set(sweep.files)
    table_md = store.path(sweep, "sweep.md").read_text()
    assert "| int8-max |" in table_md and "integer vs float dB" in table_md and "batch 8, 1 thread" in table_md
    assert store.path(sweep, "pareto.png").stat().st_size > 10_000
    # the UI's copy of the comparison shows the Pareto plot itself, not a path on the worker's disk
    ui = _ui(state)
    shown = next(v for k, v in ui["artifacts"].items() if k.startswith("sweep-summary-"))
    # the table and the report sit under "Flow run" (not among the task runs' artifacts), numbers rounded
    assert {k for k in ui["artifacts"] if k.startswith("sweep")} <= ui["flow_level"], ui["flow_level"]
    table = json.loads(next(v for k, v in ui["artifacts"].items() if k.startswith("sweep-") and "summary" not in k))
    assert all(len(str(v).partition(".")[2]) <= 2 for row in table for v in row.values() if isinstance(v, float)), table
    (inlined,) = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", shown)
    assert base64.b64decode(inlined) == store.path(sweep, "pareto.png").read_bytes()
    assert {"fp32/report", "fp16/report", "int8-max/report"} <= set(result["artifacts"])

    again, tasks = _run_flow(quant_sweep, config)
    assert again.is_completed()
    assert tasks[("compile", "Completed")] == 0 and tasks[("evaluate", "Completed")] == 0  # all cached


def test_sweep_of_int8_max_and_int8_mixed_shows_both_rows_k_and_the_sensitivity(tmp_path: Path) -> None:
    """`zooflow sweep --demo --presets int8-max,int8-mixed` as a flow: both rows; int8-mixed's K is the
    smallest the search found meeting its agreement goal (the K below it was tried and fell short); its
    float layers are the ranking's first K; the int8-max report shows the sensitivity table and plot."""
    from PIL import Image

    from flows.quant_sweep import quant_sweep
    from zooflow import sensitivity_report

    root = tmp_path / "store"
    config = SweepConfig(
        demo=True, store=str(root), presets=("int8-max", "int8-mixed"), data={"demo": {"classes": 10}}, **SMALL
    )
    state, tasks = _run_flow(quant_sweep, config)
    assert state.is_completed(), state.message
    result = state.result()
    int8, mixed = result["table"]
    k = mixed["float_layers"]
    assert int8["preset"] == "int8-max" and mixed["preset"] == f"int8-mixed-k{k}" and int8["float_layers"] is None
    tried = {t["keep_float"]: t for t in mixed["mixed_search"]}
    assert tried[k]["agreement"] >= 99.0 and mixed["agreement"] == tried[k]["agreement"]
    assert k == 1 or tried[k - 1]["agreement"] < 99.0  # the smallest K: the one below it fails
    assert all(t["throughput"] > 0 for t in tried.values())  # every K tried was benchmarked: K vs speed
    assert tasks[("sensitivity", "Completed")] == 1  # int8-max and int8-mixed share one ranking
    store = Store(root)
    ranking = store.ref(result["artifacts"]["sensitivity"]["digest"]).meta["ranking"]
    compiled = store.ref(result["artifacts"][f"int8-mixed-k{k}/compiled"]["digest"])
    assert [layer["node"] for layer in compiled.meta["float_layers"]] == ranking[:k]
    sweep = store.ref(result["artifacts"]["sweep"]["digest"])
    table_md = store.path(sweep, "sweep.md").read_text()
    assert f"| int8-mixed-k{k} |" in table_md and "| int8-max |" in table_md and "K chosen by agreement" in table_md
    # the int8-max report: the ten most sensitive layers and the depth plot, in the markdown and the HTML
    report = store.ref(result["artifacts"]["int8-max/report"]["digest"])
    text = store.path(report, "report.md").read_text()
    assert "## Per-layer int8 sensitivity" in text and "| 10 | `backbone." in text
    assert f"![per-layer SQNR along depth]({sensitivity_report.PLOT_FILE})" in text
    with Image.open(store.path(report, sensitivity_report.PLOT_FILE)) as image:
        assert image.size[0] > 1000
    assert store.path(report, "report.html").read_text().count("data:image/png;base64,") == 2
    mixed_report = store.path(store.ref(result["artifacts"][f"int8-mixed-k{k}/report"]["digest"]), "report.md")
    assert f"## int8-mixed: {k} layer(s) kept in float" in mixed_report.read_text()
    # the UI: the sensitivity table with its plot inlined
    shown = next(v for key, v in _ui(state)["artifacts"].items() if key.startswith("sensitivity-"))
    assert "most sensitive layers" in shown and "data:image/png;base64," in shown


def _labelled_by_the_model(tmp_path: Path, checkpoint: Path, info: Any) -> Path:
    """Demo images labelled with the good checkpoint's own predictions: a set it scores 100% on,
    so a degraded checkpoint shows up as an accuracy regression (demo weights know no ImageNet)."""
    import torch

    from zooflow import models
    from zooflow.demo import write_demo_dataset
    from zooflow.export import export_module
    from zooflow.preprocess import Transform, load_rgb

    write_demo_dataset(tmp_path / "data", classes=10, per_class=2)
    val = tmp_path / "data" / "val"
    net = models.build_model(info)
    models.load_strict(net, checkpoint, info)
    module = export_module(net, logits=True)
    transform = Transform.from_spec(models.preprocess_spec(info))
    files = sorted(p.name for p in val.iterdir())
    batch = np.stack([transform.normalize(transform.crop_uint8(load_rgb(val / f)[0])) for f in files])
    with torch.no_grad():
        predicted = module(torch.from_numpy(batch)).numpy().argmax(1)
    (tmp_path / "data" / "val_label.txt").write_text(
        "".join(f"{f} {c}\n" for f, c in zip(files, predicted, strict=True))
    )
    return val


def _degraded(checkpoint: Path, out: Path) -> Path:
    """The same weights with the classifier head's rows rotated by one class: a mis-converted head."""
    import torch

    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    state = ckpt["state_dict"]
    for key in ("head.fc.weight", "head.fc.bias"):
        state[key] = torch.roll(state[key], shifts=1, dims=0)
    torch.save(ckpt, out)
    return out


def test_two_nights_with_an_injected_regression_name_the_first_bad_night_and_the_change(
    tmp_path: Path, checkpoint_file: Path, model_info: Any
) -> None:
    from flows.nightly_regression import nightly_regression

    val = _labelled_by_the_model(tmp_path, checkpoint_file, model_info)
    bad = _degraded(checkpoint_file, tmp_path / "shufflenet_v1_degraded.pth")
    root = tmp_path / "store"

    def night(date: str, checkpoint: Path) -> Any:
        matrix = {
            "name": "test-nightly",
            "defaults": {"data": {"path": str(val)}, **SMALL},
            "models": [
                {
                    "model": MODEL,
                    "checkpoint": str(checkpoint),
                    "presets": ["fp32", "fp16"],
                    "gates": [{"metric": "top1", "min": 90.0}],
                }
            ],
        }
        path = tmp_path / f"matrix-{date}.yaml"
        path.write_text(yaml.safe_dump(matrix))
        return _run_flow(nightly_regression, NightlyConfig(matrix=str(path), night=date, store=str(root)))

    first, _ = night("2026-11-26", checkpoint_file)
    assert first.is_completed(), first.message
    assert first.result()["regressions"] == []
    assert first.message.startswith("night 2026-11-26 of test-nightly: 2 model/preset result(s), no regressions")
    second, tasks = night("2026-11-27", bad)
    assert second.is_failed() and tasks[("regression-gates", "Failed")] == 1
    with pytest.raises(Exception, match="failing since 2026-11-27, last good 2026-11-26") as info:
        second.result()
    message = str(info.value)
    assert "top1 = " in message and "below the minimum 90.00" in message and "changed checkpoint: " in message

    store = Store(root)
    history = store.resolve("regression/test-nightly/history")
    rows = json.loads(store.path(history, "history.json").read_text())
    assert [(r["night"], r["preset"], r["passed"]) for r in rows] == [
        ("2026-11-26", "fp16", True),
        ("2026-11-26", "fp32", True),
        ("2026-11-27", "fp16", False),
        ("2026-11-27", "fp32", False),
    ]
    assert [v.version for v in store.versions("regression/test-nightly/history")] == [1, 2]
    assert store.resolve("regression/test-nightly/history@nightly-2026-11-26").version == 1
    trend = store.resolve("regression/test-nightly/trend")
    found = json.loads(store.path(trend, "regressions.json").read_text())
    assert {r["preset"] for r in found} == {"fp32", "fp16"}
    for reg in found:
        assert reg["first_bad_night"] == "2026-11-27" and reg["last_good_night"] == "2026-11-26"
        assert {"checkpoint", "onnx"} <= set(reg["changed"]) and "calibration" not in reg["changed"]
        assert "toolchain" not in reg["changed"] and "dataset" not in reg["changed"]
    md = store.path(trend, "trend.md").read_text()
    assert (
        "REGRESSION: shufflenet-v1-1x_16xb64_in1k fp32: first bad night 2026-11-27 (last good night 2026-11-26)" in md
    )
    assert "| checkpoint |" in md and store.path(trend, "trend.png").stat().st_size > 10_000
    ui = _ui(second)  # the failed night's trend and table sit under "Flow run", its name says matrix and night
    assert {k for k in ui["artifacts"] if k.startswith(("trend-", "night-"))} <= ui["flow_level"], ui["flow_level"]
    assert any(k.startswith("trend-") for k in ui["flow_level"]) and ui["name"] == "nightly test-nightly 2026-11-27"


def test_a_matrix_whose_data_is_not_on_this_host_is_refused_in_a_sentence_before_any_work(tmp_path: Path) -> None:
    """The nightly's default Run on a fresh clone: deployments/regression.yaml reads /data/imagenet/val.
    The run fails at once, naming the matrix, the path and the way out (no CLI flag), with no task run."""
    from flows.nightly_regression import nightly_regression

    missing = tmp_path / "no-such-val"
    matrix = {"name": "elsewhere", "defaults": {"data": {"path": str(missing)}}, "models": [{"model": MODEL}]}
    path = tmp_path / "matrix.yaml"
    path.write_text(yaml.safe_dump(matrix))
    state, tasks = _run_flow(nightly_regression, NightlyConfig(matrix=str(path), store=str(tmp_path / "store")))
    assert state.is_failed() and not tasks
    with pytest.raises(Exception, match=r"data\.path") as info:
        state.result()
    said = str(info.value)
    assert f"regression matrix 'elsewhere' ({path})" in said and f"{missing}, which does not exist" in said
    assert "regression-demo.yaml runs anywhere" in said and "--" not in said
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").rglob("*.json"))
