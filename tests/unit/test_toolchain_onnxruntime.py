"""The embedded toolchain: every preset compiles and runs; int8 stays close to fp32 on real photos."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from zooflow import toolchains
from zooflow.cli import app
from zooflow.config import BASE_PRESETS as PRESETS
from zooflow.config import BenchmarkSpec, QuantSpec, ToolchainOptions
from zooflow.errors import ConfigError
from zooflow.toolchains import outputs

# every preset compiled and run over every record (21 s to build): the slow tier
pytestmark = pytest.mark.slow


def _run_all(tc, compiled, ctx):  # type: ignore[no-untyped-def]
    store, npz_ref = ctx["store"], ctx["npz"]
    shards = [store.ref(s["digest"]) for s in json.loads(store.path(npz_ref, "index.json").read_text())["shards"]]
    done = outputs.assemble(
        store,
        [tc.run_shard(compiled, s, store) for s in shards],
        compiled=compiled,
        npz=npz_ref,
        toolchain=tc.fingerprint(),
    )
    return outputs.read(store, done)


@pytest.fixture(scope="module")
def results(toolchain_store):  # type: ignore[no-untyped-def]
    tc = toolchains.require("onnxruntime", ToolchainOptions(calibration_chunk=8, run_batch=8))
    store = toolchain_store["store"]
    compiled, outs = {}, {}
    for preset in PRESETS:
        compiled[preset] = tc.compile(
            toolchain_store["onnx"], toolchain_store["calibration"], QuantSpec.from_preset(preset), store
        )
        outs[preset] = _run_all(tc, compiled[preset], toolchain_store)
    return compiled, outs


def test_every_preset_compiles_and_runs_over_every_record(results, toolchain_store) -> None:  # type: ignore[no-untyped-def]
    compiled, outs = results
    names = [r.name for r in toolchain_store["dataset"].records]
    for preset in PRESETS:
        index, got, rows = outs[preset]
        assert list(index) == list(range(len(names))) and got == names, preset
        assert rows.shape == (len(names), 1000) and np.isfinite(rows).all(), preset
        assert compiled[preset].name == f"shufflenet-v1-1x_16xb64_in1k/onnxruntime/{preset}"


def test_fp16_agrees_with_fp32_on_real_photos(results, toolchain_store) -> None:  # type: ignore[no-untyped-def]
    _, outs = results
    _, names, reference = outs["fp32"]
    photos = [i for i, n in enumerate(names) if n.startswith("photo_")]
    assert len(photos) == 4
    rows = outs["fp16"][2]
    sqnr = 10 * np.log10(np.sum(reference[photos] ** 2) / np.sum((reference[photos] - rows[photos]) ** 2))
    assert sqnr > 40, sqnr  # int8 has its own tests (tests/unit/test_int8.py), against float maths


def test_compile_records_calibration_count_mode_and_percentile(results, toolchain_store) -> None:  # type: ignore[no-untyped-def]
    compiled, _ = results
    count = json.loads(toolchain_store["store"].path(toolchain_store["calibration"], "calibration.json").read_text())[
        "count"
    ]
    for preset in PRESETS[2:]:
        meta = compiled[preset].meta
        assert meta["calibration_images"] == count == 36  # 3 per class x 12 classes, all used (in chunks of 8)
        assert meta["calibrate"] == preset.removeprefix("int8-") and meta["opset"] == 13
    assert compiled["int8-percentile"].meta["percentile"] == 99.999
    assert "percentile of |x| (99.999)" in compiled["int8-percentile"].meta["calibration_method"]
    assert "KL search over 2048 bins" in compiled["int8-kl_divergence"].meta["calibration_method"]
    assert "MSE search" in compiled["int8-mse"].meta["calibration_method"]
    for preset in PRESETS[2:]:  # the scheme, what it was based on, and the kernel check travel with the model
        meta = compiled[preset].meta
        scheme = meta["int8_scheme"]
        assert meta["int8_weights"] == scheme["weights"] in ("int8", "int8-reduced", "uint8")
        assert scheme["cpu"] and scheme["kernels"] and scheme["onnxruntime"]["onnxruntime"]
        assert meta["kernel_check"]["images"] == 16 and "gap_db" in meta["kernel_check"]
        assert meta["format"].startswith("QDQ, uint8 activations, ")
    manifest = toolchain_store["store"].manifest(compiled["int8-max"].digest)
    assert {i.role for i in manifest.inputs} == {"onnx", "calibration"}
    assert manifest.producer.toolchain and manifest.producer.toolchain["toolchain"] == "onnxruntime"
    assert {i.role for i in toolchain_store["store"].manifest(compiled["fp16"].digest).inputs} == {"onnx"}


def test_per_tensor_is_its_own_artifact(toolchain_store) -> None:  # type: ignore[no-untyped-def]
    tc = toolchains.require("onnxruntime", ToolchainOptions(calibration_chunk=8))
    ref = tc.compile(
        toolchain_store["onnx"],
        toolchain_store["calibration"],
        QuantSpec.from_preset("int8-max", per_channel=False),
        toolchain_store["store"],
    )
    assert ref.name.endswith("/int8-max-per-tensor") and ref.meta["per_channel"] is False


def test_outputs_export_in_vamps_layout(results, toolchain_store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    compiled, _ = results
    store = toolchain_store["store"]
    tc = toolchains.get("onnxruntime")
    npz_ref = toolchain_store["npz"]
    shards = [store.ref(s["digest"]) for s in json.loads(store.path(npz_ref, "index.json").read_text())["shards"]]
    done = outputs.assemble(
        store,
        [tc.run_shard(compiled["fp32"], s, store) for s in shards],
        compiled=compiled["fp32"],
        npz=npz_ref,
        toolchain=tc.fingerprint(),
    )
    assert outputs.export_vamp_layout(store, done, tmp_path / "vamp") == 40
    first = np.load(tmp_path / "vamp" / "output_000000.npz")["output_0"]
    assert first.shape == (1, 1000)
    # only vamp's files in the folder (the zoo's vamp_npz_decode.py pairs its sorted listing with the datalist)
    assert sorted(p.name for p in (tmp_path / "vamp").iterdir()) == [f"output_{i:06d}.npz" for i in range(40)]
    assert (tmp_path / "vamp.zooflow-out.json").is_file()
    # an earlier export of zooflow's is replaced whole (no stale file can shift pairs); a user's folder is refused
    assert outputs.export_vamp_layout(store, done, tmp_path / "vamp") == 40
    assert len(list((tmp_path / "vamp").glob("output_*.npz"))) == 40
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("my notes")
    with pytest.raises(ConfigError, match="not empty and zooflow did not write it"):
        outputs.export_vamp_layout(store, done, tmp_path / "mine")
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]
    # the same through the CLI, by digest; a reference to another kind of artifact is refused by name
    cli = CliRunner()
    result = cli.invoke(
        app,
        ["export-outputs", "--outputs", done.digest, "--out", str(tmp_path / "cli"), "--store", store.url, "--json"],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["count"] == 40
    again = np.load(tmp_path / "cli" / "output_000000.npz")["output_0"]
    np.testing.assert_array_equal(again, first)
    wrong = cli.invoke(
        app, ["export-outputs", "--outputs", npz_ref.digest, "--out", str(tmp_path / "x"), "--store", store.url]
    )
    assert wrong.exit_code != 0 and "not outputs" in wrong.stderr and not (tmp_path / "x").exists()


def test_benchmark_reports_throughput_spread_latency_cpu_and_version(results, toolchain_store) -> None:  # type: ignore[no-untyped-def]
    compiled, _ = results
    ref = toolchains.get("onnxruntime").benchmark(
        compiled["int8-max"],
        BenchmarkSpec(batch_sizes=(1, 4), threads=(1,), warmup=1, trials=3, iterations=3),
        toolchain_store["store"],
    )
    doc = json.loads(toolchain_store["store"].path(ref, "benchmark.json").read_text())
    assert doc["cpu"] and doc["onnxruntime"] and len(doc["results"]) == 2
    for row in doc["results"]:
        assert row["throughput"] > 0 and row["throughput_min"] <= row["throughput"] <= row["throughput_max"]
        assert row["throughput_p25"] <= row["throughput"] <= row["throughput_p75"]
        assert row["throughput_iqr"] == pytest.approx(row["throughput_p75"] - row["throughput_p25"])
        assert set(row["latency_ms"]) == {"p50", "p90", "p95", "p99", "mean"}
        assert row["latency_ms"]["p50"] <= row["latency_ms"]["p99"]


def test_unavailable_toolchain_names_reason_and_alternative(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(toolchains.ToolchainUnavailableError) as exc:
        toolchains.require("vastai")
    assert "vamc and vamp not found on PATH" in exc.value.problem
    assert exc.value.fix == "use --toolchain onnxruntime"
    with pytest.raises(toolchains.ToolchainUnavailableError, match="unknown toolchain 'tensorrt'"):
        toolchains.get("tensorrt")
