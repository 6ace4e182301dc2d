"""Every option of `zooflow run` and `zooflow sweep` reaches the flow's config, through the console script.

Each option is passed to the installed ``zooflow`` (a subprocess, as a user types it) with a value that
is not its default; ``--print-config`` prints the config the flow would receive (as the Prefect form
stores it) and the runner. The expected values are written here from the option's meaning, not
computed by the code under test. A new option without a row here fails `test_every_option_is_covered`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer

from zooflow.cli import app

SHA = "ab" * 32

# Invocations that cannot share one command line (a demo or data; onnxruntime or vastai; gates or none).
# Each: the argument list, and per option the (path in the printed JSON, value) it must produce.
Check = tuple[str, Any]


def _cases(tmp: Path, command: str) -> list[tuple[list[str], dict[str, list[Check]]]]:
    quant = (
        {"--quant": [("config.quant.calibrate", "mse"), ("config.quant.dtype", "int8")]}
        if command == "run"
        else {"--presets": [("config.presets", ["fp16", "int8-mse"])]}
    )
    quant_args = ["--quant", "int8-mse"] if command == "run" else ["--presets", "fp16,int8-mse"]
    data = {
        "--model": (["--model", "mobilenet-v2_8xb32_in1k"], [("config.model", "mobilenet-v2_8xb32_in1k")]),
        "--checkpoint": (["--checkpoint", str(tmp / "c.pth")], [("config.checkpoint", str(tmp / "c.pth"))]),
        "--sha256": (["--sha256", SHA], [("config.checkpoint_sha256", SHA)]),
        "--trust-checkpoint": (["--trust-checkpoint"], [("config.trust_checkpoint", True)]),
        "--seed": (["--seed", "7"], [("config.seed", 7)]),
        "--opset": (["--opset", "13"], [("config.export.opset", 13)]),
        "--logits": (["--logits"], [("config.export.logits", True)]),
        "--dynamic-batch": (["--dynamic-batch"], [("config.export.dynamic_batch", "on")]),  # the form's word
        "--data": (["--data", str(tmp / "val")], [("config.data.path", str(tmp / "val")), ("config.demo", False)]),
        "--labels": (["--labels", str(tmp / "l.txt")], [("config.data.labels", str(tmp / "l.txt"))]),
        "--names": (["--names", str(tmp / "n.txt")], [("config.data.names", str(tmp / "n.txt"))]),
        "--layout": (["--layout", "flat"], [("config.data.layout", "flat")]),
        "--limit": (["--limit", "50"], [("config.data.limit", 50)]),
        "--skip-corrupt": (["--skip-corrupt"], [("config.data.skip_corrupt", True)]),
        "--rehash": (["--rehash"], [("config.data.rehash", True)]),
        "--per-class": (["--per-class", "2"], [("config.calibration.per_class", 2)]),
        "--shard-size": (["--shard-size", "250"], [("config.npz.shard_size", 250)]),
        "--toolchain": (["--toolchain", "onnxruntime"], [("config.toolchain", "onnxruntime")]),
        "--per-tensor": (
            ["--per-tensor"],
            [("config.quant.per_channel" if command == "run" else "config.per_channel", False)],
        ),
        "--int8-weights": (["--int8-weights", "uint8"], [("config.toolchain_options.int8_weights", "uint8")]),
        "--bench-batch": (["--bench-batch", "2,4"], [("config.benchmark.batch_sizes", [2, 4])]),
        "--bench-threads": (["--bench-threads", "1,2"], [("config.benchmark.threads", [1, 2])]),
        "--remeasure": (["--remeasure"], [("config.benchmark.fresh", True)]),
        "--gate": (
            ["--gate", "top1:max_drop_vs_reference=2.5"],
            [("config.evaluation.gates.0.metric", "top1"), ("config.evaluation.gates.0.max_drop_vs_reference", 2.5)],
        ),
        "--probe-images": (["--probe-images", "3"], [("config.evaluation.probe_images", 3)]),
        "--parity": (["--no-parity"], [("config.evaluation.preprocess_parity", False)]),
        "--sensitivity-images": (["--sensitivity-images", "20"], [("config.evaluation.sensitivity_images", 20)]),
        "--runner": (["--runner", "dask"], [("execution.runner", "dask")]),
        "--dask-address": (
            ["--dask-address", "tcp://127.0.0.1:8786"],
            [("execution.dask_address", "tcp://127.0.0.1:8786")],
        ),
        "--store": (["--store", str(tmp / "store")], [("config.store", str(tmp / "store"))]),
        "--allow-short": (["--allow-short"], [("config.calibration.allow_short", True)]),
    }
    demo = {
        "--demo": (["--demo"], [("config.demo", True)]),
        "--demo-classes": (["--demo-classes", "5"], [("config.data.demo.classes", 5)]),
        "--demo-per-class": (["--demo-per-class", "3"], [("config.data.demo.per_class", 3)]),
        "--allow-short": (["--allow-short"], [("config.calibration.allow_short", True)]),
        "--toolchain": (["--toolchain", "vastai"], [("config.toolchain", "vastai")]),
        "--vamc-generation": (["--vamc-generation", "v3"], [("config.toolchain_options.vamc_generation", "v3")]),
        "--vamc-calibrate-range": (
            ["--vamc-calibrate-range", "0.9999"],
            [("config.toolchain_options.vamc_calibrate_range", 0.9999)],
        ),
        "--vamp-arg": (
            ["--vamp-arg=-s", "--vamp-arg=[3,224,224]"],
            [("config.toolchain_options.vamp_args", ["-s", "[3,224,224]"])],
        ),
        "--device": (["--device", "1"], [("config.toolchain_options.device", 1)]),
        "--pre-resize": (["--pre-resize", "256x256"], [("config.toolchain_options.pre_resize", [256, 256])]),
        "--keep-float": (
            ["--keep-float", "3"],
            # the sweep form's keep-float is a text box: "3" is what it holds (the flow reads 3)
            [("config.quant.keep_float", 3) if command == "run" else ("config.keep_float", "3")],
        ),
        "--no-gates": (["--no-gates"], [("config.evaluation.gates", [])]),
    }
    mixed = ["--quant", "int8-mixed"] if command == "run" else ["--presets", "int8-max,int8-mixed"]
    first = [*quant_args, *(a for args, _ in data.values() for a in args), "--json"]
    second = [*mixed, *(a for args, _ in demo.values() for a in args)]
    checks_first = {**quant, **{flag: checks for flag, (_, checks) in data.items()}}
    checks_first["--json"] = [("", "one line")]
    return [(first, checks_first), (second, {flag: checks for flag, (_, checks) in demo.items()})]


def _lookup(doc: Any, path: str) -> Any:
    for part in path.split("."):
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    return doc


def _options(command: str) -> set[str]:
    click = typer.main.get_command(app).commands[command]  # type: ignore[attr-defined]
    return {p.opts[0] for p in click.params if p.opts and p.opts[0].startswith("--")} - {"--help", "--print-config"}


@pytest.mark.parametrize("command", ["run", "sweep"])
def test_every_option_is_covered(command: str, tmp_path: Path) -> None:
    covered = {flag for _, checks in _cases(tmp_path, command) for flag in checks}
    assert covered == _options(command), "give each new option a row in _cases"


@pytest.mark.parametrize("command", ["run", "sweep"])
def test_every_option_reaches_the_flow_config_through_the_console_script(command: str, tmp_path: Path) -> None:
    (tmp_path / "val").mkdir()
    for name in ("c.pth", "l.txt", "n.txt"):
        (tmp_path / name).write_bytes(b"")
    exe = Path(sys.executable).with_name("zooflow")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    for args, checks in _cases(tmp_path, command):
        done = subprocess.run(
            [str(exe), command, *args, "--print-config"], capture_output=True, text=True, env=env, timeout=120
        )
        assert done.returncode == 0, done.stderr[-3000:]
        lines = done.stdout.strip().splitlines()
        doc = json.loads(lines[-1] if "--json" in args else done.stdout)
        assert doc["flow"] == ("deploy-classifier" if command == "run" else "quant-sweep")
        for flag, expected in checks.items():
            for path, value in expected:
                if path == "":
                    assert len(lines) == 1, f"{flag}: {len(lines)} lines"
                    continue
                assert _lookup(doc, path) == value, f"{command} {flag}: {path} is {_lookup(doc, path)!r}"


def test_a_bad_value_is_refused_before_anything_runs(tmp_path: Path) -> None:
    """--print-config checks what the run would check first: a bad value exits 2 naming it."""
    exe = Path(sys.executable).with_name("zooflow")
    done = subprocess.run(
        [str(exe), "run", "--demo", "--demo-classes", "4", "--print-config"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "--allow-short" in done.stderr, done.stderr
    assert not done.stdout.strip()


def test_the_printed_config_is_what_the_server_accepts_as_the_form_would_send_it(tmp_path: Path) -> None:
    """`--print-config`'s config, given to `prefect deployment run --param config=...`, passes the server's
    check of the one-off form and is the same run: tri-state settings are written as the drop-down's words."""
    from prefect.utilities.callables import parameter_schema
    from prefect.utilities.schema_tools.validation import validate

    from flows.deploy_classifier import deploy_classifier
    from zooflow.runconfig import RunConfig

    exe = Path(sys.executable).with_name("zooflow")
    args = ["run", "--demo", "--demo-classes", "4", "--allow-short", "--quant", "int8-max", "--no-dynamic-batch"]
    done = subprocess.run([str(exe), *args, "--print-config"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    config = json.loads(done.stdout)["config"]
    assert config["export"]["dynamic_batch"] == "off"
    validate({"config": config}, parameter_schema(deploy_classifier).model_dump(), raise_on_error=True)
    assert RunConfig.model_validate(config).export.dynamic_batch is False
