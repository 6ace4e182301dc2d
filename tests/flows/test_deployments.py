"""deployments/prefect.yaml: it parses, its parameters validate, and a served deployment runs as the UI starts it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from flows.runner import load_deployments
from zooflow.runconfig import RegressionMatrix

REPO = Path(__file__).resolve().parents[2]
DEPLOYMENTS = REPO / "deployments" / "prefect.yaml"


def test_prefect_yaml_parses_and_every_deployments_parameters_validate() -> None:
    specs = {s["name"]: s for s in load_deployments(DEPLOYMENTS)}
    assert set(specs) == {"nightly-regression", "one-off", "quant-sweep"}
    for spec in specs.values():
        spec["flow"].validate_parameters(spec.get("parameters") or {})  # raises if a value does not fit the form
        assert (REPO / spec["entrypoint"].split(":")[0]).is_file()
    (schedule,) = specs["nightly-regression"]["schedules"]
    assert schedule["cron"] == "0 2 * * *" and schedule["timezone"] == "Europe/Berlin"
    assert not specs["one-off"].get("schedules") and not specs["quant-sweep"].get("schedules")
    matrix = specs["nightly-regression"]["parameters"]["config"]["matrix"]
    RegressionMatrix.load(REPO / matrix).configs()  # the matrix it names validates too
    RegressionMatrix.load(REPO / "deployments" / "regression-demo.yaml").configs()
    with pytest.raises(Exception, match="int8-maxx"):
        specs["one-off"]["flow"].validate_parameters({"config": {"demo": True, "quant": "int8-maxx"}})


def _server_check(flow: Any, parameters: dict[str, Any]) -> str | None:
    """What the Prefect server says of a run's parameters before it creates the run (None: accepted).

    The same call `create_flow_run_from_deployment` makes, on the schema `serve`/`deploy` register."""
    from prefect.utilities.callables import parameter_schema
    from prefect.utilities.schema_tools.validation import ValidationError, validate

    schema = parameter_schema(flow).model_dump()
    try:
        validate(parameters, schema, raise_on_error=True)
    except ValidationError as exc:
        return str(exc)
    return None


def _no_null_unions(node: Any, where: str = "") -> list[str]:
    """Every `anyOf` with a null branch in a schema (Prefect's form draws each as a 'str | None' switch)."""
    found = []
    if isinstance(node, dict):
        if any(o == {"type": "null"} for o in node.get("anyOf", [])):
            found.append(where)
        for key, value in node.items():
            found += _no_null_unions(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _no_null_unions(value, f"{where}/{i}")
    return found


def test_the_form_has_no_null_switches_and_its_defaults_pass_the_servers_check() -> None:
    """The form Prefect draws has no 'str | None' switches, its parameter is titled for people, and the
    values it opens with (every optional field null) are accepted by the server as they are."""
    from prefect.utilities.callables import parameter_schema

    from flows.deploy_classifier import deploy_classifier
    from flows.nightly_regression import nightly_regression
    from flows.quant_sweep import quant_sweep

    for flow, title in (
        (deploy_classifier, "Run settings"),
        (quant_sweep, "Sweep settings"),
        (nightly_regression, "Nightly settings"),
    ):
        schema = parameter_schema(flow).model_dump()
        assert _no_null_unions(schema) == [], flow.name
        assert schema["properties"]["config"]["title"] == title
        defaults = {"config": schema["properties"]["config"]["default"]}
        assert None in defaults["config"].values() or flow is nightly_regression
        assert _server_check(flow, defaults) is None, flow.name
        flow.validate_parameters(defaults)  # and the flow itself accepts them
    props = parameter_schema(deploy_classifier).model_dump()["definitions"]["DataSpec"]["properties"]
    assert props["path"]["type"] == "string" and "default" not in props["path"]


def _tri_states(node: Any, where: str = "") -> dict[str, Any]:
    """Every property drawn as a boolean toggle or as the auto/on/off drop-down, by path."""
    found: dict[str, Any] = {}
    if isinstance(node, dict):
        for key, value in node.get("properties", {}).items():
            if isinstance(value, dict) and (
                value.get("type") == "boolean" or value.get("enum") == ["auto", "on", "off"]
            ):
                found[f"{where}/{key}"] = value
        for key, value in node.items():
            if isinstance(value, dict | list):
                found |= _tri_states(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found |= _tri_states(value, f"{where}/{i}")
    return found


def test_a_setting_that_can_be_unset_is_an_auto_on_off_drop_down_whose_untouched_value_is_the_clis_default() -> None:
    """A toggle cannot say 'not set': an untouched one sent false, so every UI run exported batch 1 and
    shared no artifact with the CLI's runs. Every `bool | None` setting is a drop-down defaulting to
    auto; the server accepts auto/on/off, and the flow reads them as None/True/False."""
    from prefect.utilities.callables import parameter_schema

    from flows.deploy_classifier import deploy_classifier
    from zooflow.runconfig import RunConfig

    schema = parameter_schema(deploy_classifier).model_dump()
    drawn = _tri_states(schema)
    tri = {path: v for path, v in drawn.items() if "enum" in v}
    assert set(tri) == {"/definitions/ExportOptions/dynamic_batch"}, sorted(drawn)  # the one bool | None today
    assert all(v["default"] == "auto" and "type" not in v for v in tri.values())
    base = {"demo": True, "quant": "fp32", "calibration": {"allow_short": True}, "data": {"demo": {"classes": 4}}}
    cli = RunConfig.model_validate(base)
    for sent, meant in (("auto", None), ("on", True), ("off", False)):
        form = {**base, "export": {"dynamic_batch": sent}}
        assert _server_check(deploy_classifier, {"config": form}) is None, sent
        config = RunConfig.model_validate(form)
        assert config.export.dynamic_batch is meant
        if sent == "auto":  # an untouched form is exactly the CLI's default run: same keys, same artifacts
            assert config.model_dump() == cli.model_dump()
    assert _server_check(deploy_classifier, {"config": {**base, "export": {"dynamic_batch": "maybe"}}})


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"quant": None}, "quant"),
        ({"quant": ""}, "quant"),
        ({"quant": "int8-maxx"}, "quant"),
        ({"toolchain": "vastai", "quant": "fp32"}, "quant"),
        ({"demo": False}, "data"),
        ({"demo": False, "data": {"path": ""}}, "data"),
        ({"demo": False, "data": {"path": None}}, "data"),
    ],
    ids=[
        "null-preset",
        "empty-preset",
        "misspelt-preset",
        "vastai-fp32",
        "no-data",
        "blank-path",
        "null-path",
    ],
)
def test_the_server_refuses_a_blank_or_inconsistent_one_off_form(change: Any, named: str) -> None:
    """A blank preset is never run as fp32 and an inconsistent form never runs as something else: the
    server refuses it, naming the field; the flow's own validation (pydantic) refuses it too."""
    from flows.deploy_classifier import deploy_classifier
    from zooflow.runconfig import NEEDS_DATA, NO_FP32_ON_VASTAI

    form = {"demo": True, "quant": "int8-max", "store": "/tmp/x", **change}
    said = _server_check(deploy_classifier, {"config": form})
    assert said is not None and named in said, said
    if named == "data":  # a sentence, not "None is not of type 'string'"
        assert f"'{NEEDS_DATA}' was expected" in said and "not of type" not in said, said
    if form["toolchain" if "toolchain" in form else "quant"] == "vastai":
        assert f"'{NO_FP32_ON_VASTAI}' was expected" in said, said
    with pytest.raises(Exception, match=named):
        deploy_classifier.validate_parameters({"config": form})


def test_the_server_accepts_what_the_one_off_form_means() -> None:
    """The consistent neighbours of the refused forms go through: vastai with an int8 preset (or none:
    int8-percentile), a real folder, cleared optional text boxes (which mean 'not set')."""
    from flows.deploy_classifier import deploy_classifier

    for form in (
        {"demo": True, "quant": "int8-max", "toolchain": "vastai"},
        {"quant": "fp16", "data": {"path": "/data/val", "labels": ""}, "checkpoint": "", "checkpoint_sha256": ""},
        {"demo": True, "quant": "fp32", "data": {"path": None}, "evaluation": {"gates": None}},
    ):
        assert _server_check(deploy_classifier, {"config": form}) is None, form
        config = deploy_classifier.validate_parameters({"config": form})["config"]
        assert config.checkpoint is None and config.data.labels is None
    # no preset at all (`prefect deployment run --param config='{"demo": true}'`) is the default preset, as
    # on the CLI: fp32, and the seed's int8-percentile on vastai
    for form, preset in (({"demo": True}, "fp32"), ({"demo": True, "toolchain": "vastai"}, "int8-percentile")):
        assert _server_check(deploy_classifier, {"config": form}) is None, form
        assert deploy_classifier.validate_parameters({"config": form})["config"].quant.preset == preset


def _wait(condition: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
def test_served_deployment_runs_with_parameters_and_a_bad_one_is_refused(tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    bin_dir = Path(sys.executable).parent
    server = subprocess.Popen(
        [str(bin_dir / "zooflow"), "serve", "--only", "one-off"],
        cwd=REPO,
        env=env,
        stdout=open(tmp_path / "serve.log", "w"),  # noqa: SIM115 - closed with the process
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        with get_client(sync_client=True) as client:

            def deployment() -> Any:
                try:
                    return client.read_deployment_by_name("deploy-classifier/one-off")
                except Exception:  # noqa: BLE001 - not registered yet
                    return None

            found = _wait(deployment, 180, "the served deployment to register")

            def runs() -> list[Any]:
                return client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[found.id])))

            config = {
                "demo": True,
                "store": str(tmp_path / "store"),
                "quant": "int8-max",
                "data": {"demo": {"classes": 10, "per_class": 2}},
                "calibration": {"allow_short": True},
                "npz": {"shard_size": 20},
                "benchmark": {"batch_sizes": [1], "trials": 1, "iterations": 2, "warmup": 0},
                "evaluation": {"probe_images": 0, "preprocess_parity": False},
            }
            prefect = [str(bin_dir / "prefect"), "deployment", "run", "deploy-classifier/one-off", "--param"]
            bad = subprocess.run(
                [*prefect, f"config={json.dumps({**config, 'quant': 'int8-maxx'})}"],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert bad.returncode != 0, bad.stdout
            assert "int8-maxx" in bad.stdout + bad.stderr or "alidation" in bad.stdout + bad.stderr
            assert runs() == [], "a bad parameter must be refused before a run is created"

            good = subprocess.run(
                [*prefect, f"config={json.dumps(config)}"], env=env, capture_output=True, text=True, timeout=120
            )
            assert good.returncode == 0, good.stdout + good.stderr
            (run,) = runs()
            final = _wait(
                lambda: (r := client.read_flow_run(run.id)).state is not None and r.state.is_final() and r,
                400,
                "the triggered run to finish",
            )
            assert final.state.is_completed(), (final.state.message, (tmp_path / "serve.log").read_text()[-3000:])
            assert final.parameters["config"]["quant"] == "int8-max"
        from zooflow.store import Store

        store = Store(tmp_path / "store")
        evaluation = store.resolve("shufflenet-v1-1x_16xb64_in1k/onnxruntime/int8-max/evaluation")
        assert json.loads(store.path(evaluation, "metrics.json").read_text())["verdict"]["passed"]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)


def test_the_sweep_and_nightly_forms_refuse_what_cannot_run_before_a_run_exists() -> None:
    """The server refuses fp32 among a vastai sweep's presets, a night that is no date and a matrix that is
    not in deployments/, in sentences; the flow's own validation refuses a day the calendar lacks."""
    from prefect.utilities.callables import parameter_schema

    from flows.nightly_regression import nightly_regression
    from flows.quant_sweep import quant_sweep
    from zooflow.runconfig import NO_FP32_ON_VASTAI

    sweep = {"demo": True, "toolchain": "vastai", "presets": ["fp16", "int8-max"]}
    assert _server_check(quant_sweep, {"config": sweep}) is None
    said = _server_check(quant_sweep, {"config": {**sweep, "presets": ["int8-max", "fp32"]}})
    assert said is not None and "presets[1]" in said and f"'{NO_FP32_ON_VASTAI}' was expected" in said, said
    with pytest.raises(Exception, match="vastai toolchain compiles fp16 and int8 only"):
        quant_sweep.validate_parameters({"config": {**sweep, "presets": ["fp32", "int8-max"]}})
    assert _server_check(quant_sweep, {"config": {**sweep, "toolchain": "onnxruntime", "presets": ["fp32"]}}) is None

    for night in ("2026-13-45", "2026-1-5", "tonight"):
        said = _server_check(nightly_regression, {"config": {"night": night}})
        assert said is not None and "'a night as YYYY-MM-DD" in said, (night, said)
    # the matrix is a drop-down of the matrices in deployments/ (prefect.yaml is not one): a misspelt
    # path is refused by the server, before a run exists
    schema = parameter_schema(nightly_regression).model_dump()["definitions"]["NightlyConfig"]["properties"]
    assert schema["matrix"]["enum"] == ["deployments/regression-demo.yaml", "deployments/regression.yaml"]
    said = _server_check(nightly_regression, {"config": {"matrix": "deployments/regresion.yaml"}})
    assert said is not None and "config.matrix" in said and "is not one of" in said, said
    assert _server_check(nightly_regression, {"config": {"matrix": "deployments/regression-demo.yaml"}}) is None
    assert _server_check(nightly_regression, {"config": {"night": "2026-12-06"}}) is None
    with pytest.raises(Exception, match="not a day of the calendar"):
        nightly_regression.validate_parameters({"config": {"night": "2026-02-30"}})


def test_the_sweep_form_puts_what_a_sweep_chooses_first_and_keep_float_is_one_text_box() -> None:
    """Presets, per-channel and keep-float sit right below the model (not under every Tuning section), and
    keep-float is one text box ("auto" or a number), not an int/str switch with a const branch."""
    from prefect.utilities.callables import parameter_schema

    from flows.quant_sweep import quant_sweep

    schema = parameter_schema(quant_sweep).model_dump()["definitions"]["SweepConfig"]
    assert list(schema["properties"])[:4] == ["model", "presets", "per_channel", "keep_float"]
    keep = schema["properties"]["keep_float"]
    assert keep["type"] == "string" and keep["default"] == "auto" and "anyOf" not in keep
    for text, meant in (("auto", "auto"), ("3", 3)):
        assert _server_check(quant_sweep, {"config": {"demo": True, "keep_float": text}}) is None
        config = quant_sweep.validate_parameters({"config": {"demo": True, "keep_float": text}})["config"]
        assert config.keep_float == meant
        assert config.model_dump(mode="json")["keep_float"] == text  # what --print-config and the form hold
    for bad in ("0", "two", "-1"):
        said = _server_check(quant_sweep, {"config": {"demo": True, "keep_float": bad}})
        assert said is not None and "'auto, or a number of layers (1 or more)' was expected" in said, (bad, said)


def test_matrices_kept_outside_the_repository_join_the_nightly_drop_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A team's own matrices: their folder in $ZOOFLOW_MATRICES when the deployments are registered puts
    them in the drop-down (a YAML file that is no matrix stays out), so the server accepts them."""
    from prefect.utilities.callables import parameter_schema

    from flows.nightly_regression import nightly_regression

    (tmp_path / "team.yaml").write_text("name: team\nmodels:\n  - model: resnet18_8xb32_in1k\n")
    (tmp_path / "other.yaml").write_text("just: a file\n")
    monkeypatch.setenv("ZOOFLOW_MATRICES", str(tmp_path))
    schema = parameter_schema(nightly_regression).model_dump()
    matrix = schema["definitions"]["NightlyConfig"]["properties"]["matrix"]
    assert matrix["enum"][-1] == (tmp_path / "team.yaml").as_posix() and len(matrix["enum"]) == 3
    assert _server_check(nightly_regression, {"config": {"matrix": str(tmp_path / "team.yaml")}}) is None
    assert _server_check(nightly_regression, {"config": {"matrix": str(tmp_path / "other.yaml")}}) is not None
