"""The CLI: help with examples, artifacts commands, errors without tracebacks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import MODEL
from zooflow.cli import app
from zooflow.fetch import fetch_checkpoint
from zooflow.store import Store

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_help_lists_every_command_with_examples() -> None:
    code, out, _ = invoke("--help")
    assert code == 0
    for command in (
        "run",
        "fetch",
        "export",
        "demo-data",
        "check-data",
        "calib",
        "npz",
        "compile",
        "bench",
        "export-outputs",
        "models",
        "artifacts",
    ):
        assert f" {command} " in out
    assert "zooflow run --demo" in out
    assert "zooflow artifacts verify" in out
    code, out, _ = invoke("artifacts", "--help")
    for command in ("list", "show", "lineage", "verify", "alias", "gc"):
        assert f" {command} " in out


@pytest.fixture
def populated(tmp_path: Path, checkpoint_file: Path) -> Store:
    store = Store(tmp_path / "store")
    fetch_checkpoint(str(checkpoint_file), store, model=MODEL, show_progress=False)
    return store


def test_artifacts_list_show_lineage_verify_alias(populated: Store) -> None:
    name = f"{MODEL}/checkpoint"
    code, out, _ = invoke("artifacts", "list", "--store", populated.url, "--json")
    rows = json.loads(out)
    assert code == 0
    assert [(r["name"], r["version"], r["aliases"]) for r in rows] == [(name, 1, ["latest"])]

    code, out, _ = invoke("artifacts", "show", f"{name}@latest", "--store", populated.url)
    manifest = json.loads(out)
    assert manifest["kind"] == "checkpoint"
    assert manifest["producer"]["stage"] == "fetch"
    assert manifest["ref"] == {"name": name, "version": 1, "location": populated.object_dir(rows[0]["digest"])}

    code, out, _ = invoke("artifacts", "lineage", rows[0]["digest"][:10], "--store", populated.url, "--json")
    assert json.loads(out)["kind"] == "checkpoint"

    code, out, _ = invoke("artifacts", "alias", name, "good", "--store", populated.url)
    assert code == 0
    code, out, _ = invoke("artifacts", "show", f"{name}@good", "--store", populated.url)
    assert json.loads(out)["digest"] == rows[0]["digest"]

    code, out, _ = invoke("artifacts", "verify", "--store", populated.url, "--json")
    assert code == 0
    report = json.loads(out)
    assert report["checked"] == 1 and report["damaged"] == {}
    assert report["damaged_records"] == report["dangling_versions"] == report["incomplete"] == []


def test_verify_exits_non_zero_on_damage(populated: Store) -> None:
    digest = populated.digests()[0]
    path = populated.path(digest)
    path.chmod(0o644)
    path.write_bytes(b"damaged")
    code, out, _ = invoke("artifacts", "verify", "--store", populated.url, "--json")
    assert code == 1
    assert digest in json.loads(out)["damaged"]


def test_bad_input_prints_problem_and_fix_without_traceback(tmp_path: Path) -> None:
    code, out, err = invoke("run", "--model", "shufflenet-v1", "--store", str(tmp_path), "--json")
    assert code == 2
    assert "unknown model name 'shufflenet-v1'" in err
    assert "fix:" in err
    assert "Traceback" not in err
    assert json.loads(out.strip().splitlines()[-1])["status"] == "failed"

    code, _, err = invoke("artifacts", "show", "nothing/here", "--store", str(tmp_path))
    assert code == 2
    assert "no artifact named 'nothing/here'" in err

    code, _, err = invoke("artifacts", "list", "--store", str(tmp_path / "absent"))
    assert code == 2
    assert "no artifact store at" in err

    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = invoke("fetch", "--demo", "--store", str(blocker / "s"))
    assert code == 2
    assert "is not writable" in err


def test_sweep_takes_every_option_a_run_takes_and_checks_each_before_prefect_starts(tmp_path: Path) -> None:
    """A sweep over real data needs what a run needs (--sha256, --skip-corrupt, --per-class, gates...):
    the two commands share every option but --quant / --presets, and a bad value names its field and
    the sweep's help, with nothing started (no store written)."""
    from typer.main import get_command

    commands = get_command(app).commands
    run_options = {p.name for p in commands["run"].params}
    sweep_options = {p.name for p in commands["sweep"].params}
    assert run_options - {"quant"} == sweep_options - {"presets"}
    store = tmp_path / "store"
    for args, said in (
        (("--sha256", "xyz"), "checkpoint_sha256: must be 8 to 64 lowercase hex digits"),
        (("--per-class", "0"), "calibration.per_class: Input should be greater than or equal to 1"),
        (("--layout", "sideways"), "data.layout: Input should be 'auto', 'flat' or 'synset'"),
        (("--bench-threads", "0"), "benchmark.threads: give one or more positive integers"),
        (("--probe-images", "-1"), "evaluation.probe_images: Input should be greater than or equal to 0"),
    ):
        code, _, err = invoke("sweep", "--demo", "--store", str(store), *args)
        assert code == 2 and "invalid SweepConfig" in err and said in err, (args, err)
        assert "`zooflow sweep --help` lists the options" in err
    code, _, err = invoke("sweep", "--demo", "--store", str(store), "--gate", "top1:bogus=1")
    assert code == 2 and "bogus: unknown option" in err
    assert not store.exists()


def test_export_command_writes_the_onnx_file(tmp_path: Path, checkpoint_file: Path) -> None:
    out_file = tmp_path / "out" / "model.onnx"
    code, out, err = invoke(
        "export", "--checkpoint", str(checkpoint_file), "--out", str(out_file), "--store", str(tmp_path / "s"), "--json"
    )
    assert code == 0, err
    doc = json.loads(out.strip().splitlines()[-1])
    assert out_file.is_file()
    assert doc["parity"]["max_abs_diff"] <= 1e-4
    code, _, err = invoke(
        "export",
        "--checkpoint",
        str(checkpoint_file),
        "--out",
        str(out_file),
        "--opset",
        "10",
        "--store",
        str(tmp_path / "s"),
    )
    assert code == 2
    assert "export with --opset 11" in err


def test_models_lists_the_index() -> None:
    code, out, _ = invoke("models", "shufflenet", "--json")
    names = [m["name"] for m in json.loads(out)]
    assert code == 0
    assert "shufflenet-v1-1x_16xb64_in1k" in names
    assert all("shufflenet" in n for n in names)


def test_demo_data_check_data_calib_and_npz_commands(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    code, out, err = invoke("demo-data", "--out", str(data), "--classes", "6", "--per-class", "2", "--json")
    assert code == 0, err
    assert json.loads(out)["images"] == 12 and (data / "val_label.txt").is_file()

    code, out, err = invoke("check-data", "--data", str(data / "val"), "--workers", "1", "--json")
    report = json.loads(out)
    assert code == 0 and report["images"] == 12 and report["corrupt"] == {}
    assert sorted(report["converted_to_rgb"].values()) == ["CMYK", "L"]

    store = str(tmp_path / "store")
    code, _, err = invoke("calib", "--data", str(data / "val"), "--out", str(tmp_path / "calib"), "--store", store)
    assert code == 2 and "994 of 1000 classes have fewer than 1 image(s)" in err
    code, out, err = invoke(
        "calib",
        "--data",
        str(data / "val"),
        "--out",
        str(tmp_path / "calib"),
        "--allow-short",
        "--store",
        store,
        "--json",
    )
    assert code == 0, err
    assert json.loads(out)["count"] == 6
    assert len(list((tmp_path / "calib").glob("*.JPEG"))) == 6 and (tmp_path / "calib" / "calibration.json").is_file()

    code, out, err = invoke("npz", "--data", str(data / "val"), "--format", "vastai", "--out", str(tmp_path / "npz"), "--limit", "5",
                            "--workers", "1", "--store", store, "--json")  # fmt: skip
    assert code == 0, err
    doc = json.loads(out)
    lines = Path(doc["datalist"]).read_text().splitlines()
    assert doc["count"] == 5 and len(lines) == 5 and all(line.startswith(str(tmp_path / "npz")) for line in lines)


def test_output_folders_are_never_mixed_with_other_files(tmp_path: Path) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "mine.txt").write_text("keep me")
    code, _, err = invoke("demo-data", "--out", str(tmp_path / "busy"), "--classes", "2", "--per-class", "1")
    assert code == 2 and "is not empty" in err
    assert (tmp_path / "busy" / "mine.txt").read_text() == "keep me"


def test_dataset_problems_exit_2_with_the_list(tmp_path: Path) -> None:
    (tmp_path / "val").mkdir()
    (tmp_path / "val" / "a.JPEG").write_bytes(b"x")
    (tmp_path / "val_label.txt").write_text("a.JPEG 1\nb.JPEG 2\n")
    code, _, err = invoke("check-data", "--data", str(tmp_path / "val"))
    assert code == 2 and "files named in val_label.txt but missing" in err and "b.JPEG (line 2)" in err
    (tmp_path / "val_label.txt").write_text("a.JPEG 1\n")
    code, _, err = invoke("check-data", "--data", str(tmp_path / "val"), "--workers", "1")
    assert code == 1 and "corrupt a.JPEG" in err


def test_compile_and_bench_commands(tmp_path: Path, checkpoint_file: Path, demo_small: Path) -> None:
    store = str(tmp_path / "store")
    onnx_file = tmp_path / "model.onnx"
    code, _, err = invoke(
        "export", "--checkpoint", str(checkpoint_file), "--out", str(onnx_file), "--dynamic-batch", "--store", store
    )
    assert code == 0, err
    code, _, err = invoke("compile", "--onnx", str(onnx_file), "--quant", "int8-max", "--store", store)
    assert code == 2 and "int8 needs a calibration set" in err
    code, _, err = invoke(
        "calib", "--data", str(demo_small / "val"), "--out", str(tmp_path / "calib"), "--allow-short", "--store", store
    )
    assert code == 0, err
    code, out, err = invoke("compile", "--onnx", str(onnx_file), "--quant", "int8-max", "--calibration", str(tmp_path / "calib"),
                            "--out", str(tmp_path / "compiled"), "--store", store, "--json")  # fmt: skip
    assert code == 0, err
    doc = json.loads(out.strip().splitlines()[-1])
    assert doc["meta"]["calibration_images"] == 12 and (tmp_path / "compiled" / "model.onnx").is_file()
    code, out, err = invoke(
        "bench",
        "--compiled",
        doc["digest"][:12],
        "--batch",
        "1,2",
        "--trials",
        "2",
        "--iterations",
        "2",
        "--store",
        store,
        "--json",
    )
    assert code == 0, err
    results = json.loads(out.strip().splitlines()[-1])["results"]
    assert [r["batch"] for r in results] == [1, 2] and all(r["throughput"] > 0 for r in results)
    code, _, err = invoke(
        "compile", "--onnx", str(onnx_file), "--quant", "fp16", "--toolchain", "vastai", "--store", store
    )
    assert code == 2 and "not available here" in err and "--toolchain onnxruntime" in err


def test_the_sweep_table_marks_a_preset_whose_ranges_clip_or_kernels_saturate(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """As in sweep.md: a warned preset's SQNR (or integer-vs-float gap) carries the warning's mark."""
    from zooflow.cli.flows import _print_sweep

    def row(preset: str, **warned: str) -> dict[str, object]:
        numbers = dict.fromkeys(("top1", "top5", "drop_top1", "agreement", "throughput_fixed", "throughput"), 1.0)
        return {
            "preset": preset,
            **numbers,
            "sqnr_db": 22.5,
            "int8_gap_db": 0.5,
            "fixed_vs_fp32": 1.1,
            "latency_p99_ms": 3.0,
            "bench_setting": "batch 8, 1 thread(s)",
            "passed": True,
            **warned,
        }

    rows = [row("int8-mse"), row("int8-kl_divergence", range_warning="clips"), row("int8-max", int8_gap_warning="x")]
    _print_sweep({"table": rows, "artifacts": {"sweep": {"name": "m/onnxruntime/sweep-1"}}})
    lines = {line.split()[1]: line for line in capsys.readouterr().err.splitlines() if "int8-" in line}
    assert "(ranges clip)" in lines["int8-kl_divergence"] and "(saturates)" in lines["int8-max"]
    assert "(" not in lines["int8-mse"].replace("thread(s)", "")
