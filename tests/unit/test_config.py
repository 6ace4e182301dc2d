"""Typed configuration: presets, and errors that name the field and the allowed values."""

from __future__ import annotations

import pytest

from zooflow.config import PRESETS, NpzOptions, QuantSpec, build
from zooflow.errors import ConfigError
from zooflow.runconfig import RunConfig


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_round_trips(preset: str) -> None:
    spec = QuantSpec.from_preset(preset)
    assert spec.preset == preset
    assert RunConfig(demo=True, quant=preset).quant == spec


def test_int8_presets_carry_their_calibrate_mode_and_per_channel_default() -> None:
    spec = RunConfig(demo=True, quant="int8-kl_divergence").quant
    assert (spec.dtype, spec.calibrate, spec.per_channel) == ("int8", "kl_divergence", True)
    assert QuantSpec.from_preset("int8-mse", per_channel=False).per_channel is False


def test_misspelled_preset_names_field_allowed_values_and_suggestion() -> None:
    with pytest.raises(ConfigError) as exc:
        build(RunConfig, quant="int8-maxx")
    message = str(exc.value)
    assert message.startswith("invalid RunConfig:\nquant:")
    assert "did you mean 'int8-max'" in message
    for preset in PRESETS:
        assert preset in message


def test_bad_dtype_lists_allowed_dtypes() -> None:
    with pytest.raises(ConfigError, match=r"quant\.dtype: Input should be 'fp32', 'fp16' or 'int8'"):
        build(RunConfig, quant={"dtype": "int4"})


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ({"dtype": "int8"}, "int8 needs a calibrate mode, one of: max, percentile, kl_divergence, mse"),
        ({"dtype": "fp16", "calibrate": "max"}, "applies to int8 only"),
        ({"dtype": "int8", "calibrate": "entropy"}, "Input should be 'max', 'percentile', 'kl_divergence' or 'mse'"),
    ],
)
def test_inconsistent_quant_specs_are_rejected(spec: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        build(RunConfig, quant=spec)


def test_misspelled_option_is_rejected_with_a_suggestion() -> None:
    with pytest.raises(ConfigError, match="qunt: unknown option \\(did you mean 'quant'\\?\\); check its spelling"):
        build(RunConfig, qunt="fp16")
    with pytest.raises(
        ConfigError,
        match=r"export\.opsett: unknown option \(did you mean 'opset'\?\).*options: opset, logits, dynamic_batch",
    ):
        build(RunConfig, export={"opsett": 11})


def test_unknown_model_lists_close_matches() -> None:
    with pytest.raises(
        ConfigError, match=r"model: unknown model name 'shufflenet-v1-1x'.*shufflenet-v1-1x_16xb64_in1k"
    ):
        build(RunConfig, model="shufflenet-v1-1x")


def test_opset_range_and_missing_checkpoint_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=r"export\.opset: Input should be greater than or equal to 7"):
        build(RunConfig, export={"opset": 3})
    with pytest.raises(ConfigError, match="checkpoint: checkpoint file not found"):
        build(RunConfig, checkpoint=str(tmp_path / "missing.pth"))
    with pytest.raises(ConfigError, match="unsupported URL scheme 'ftp'"):
        build(RunConfig, checkpoint="ftp://host/x.pth")


def test_sha256_must_be_hex() -> None:
    with pytest.raises(ConfigError, match="checkpoint_sha256: must be 8 to 64"):
        build(RunConfig, checkpoint_sha256="not-a-digest")
    assert RunConfig(demo=True, checkpoint_sha256="5D6CEC73").checkpoint_sha256 == "5d6cec73"


def test_checkpoint_source_defaults_to_the_published_weights_or_local_init() -> None:
    assert RunConfig(data={"path": "/data/val"}).checkpoint_source().endswith("imagenet_20200804-5d6cec73.pth")
    assert RunConfig(demo=True).checkpoint_source() == "local-init"
    with pytest.raises(ConfigError, match="demo runs use locally initialised weights"):
        build(RunConfig, demo=True, checkpoint="https://example.org/x.pth")


def test_store_defaults_to_environment(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("ZOOFLOW_STORE", str(tmp_path / "s"))
    assert RunConfig(demo=True).store_url() == str(tmp_path / "s")
    assert RunConfig(demo=True, store="/elsewhere").store_url() == "/elsewhere"


def test_real_runs_need_data_and_npz_options_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"data\.path is required"):
        build(RunConfig)
    with pytest.raises(ConfigError, match="pre_resize applies to the vastai format only"):
        build(NpzOptions, pre_resize="256x256")
    with pytest.raises(ConfigError, match=r"pre_resize: .*use HEIGHTxWIDTH"):
        build(NpzOptions, format="vastai", pre_resize="256")
    with pytest.raises(ConfigError, match=r"format: Input should be 'model', 'vastai' or 'dsp'"):
        build(NpzOptions, format="tensorrt")
    with pytest.raises(ConfigError, match=r"npz\.format: unknown option"):  # a run's format is the toolchain's
        build(RunConfig, demo=True, npz={"format": "vastai"})
    with pytest.raises(ConfigError, match="the vastai toolchain compiles fp16 and int8 only"):
        build(RunConfig, demo=True, toolchain="vastai", quant="fp32")
    # no quant given: the seed's preset on the card, fp32 on the embedded toolchain
    assert build(RunConfig, demo=True, toolchain="vastai").quant.preset == "int8-percentile"
    for blank in (None, ""):  # a cleared preset is refused, never run as the default
        with pytest.raises(ConfigError, match=r"quant: no preset chosen; choose one of: fp32, fp16, int8-max"):
            build(RunConfig, demo=True, toolchain="vastai", quant=blank)
    # a cleared optional text box means 'not set'; a cleared required one is still an error
    cleared = build(RunConfig, demo=True, checkpoint="", checkpoint_sha256="", data={"labels": "", "names": ""})
    assert (cleared.checkpoint, cleared.checkpoint_sha256, cleared.data.labels, cleared.data.names) == (None,) * 4
    with pytest.raises(ConfigError, match="model: unknown model name ''"):
        build(RunConfig, demo=True, model="")
    assert build(RunConfig, demo=True).quant.preset == "fp32"
    options = build(
        RunConfig, demo=True, toolchain_options={"pre_resize": "256x256", "vamp_args": ["-s", "[3,224,224]"]}
    )
    assert options.toolchain_options.pre_resize == (256, 256) and options.toolchain_options.device is None
    with pytest.raises(ConfigError, match="vamp_args may not set --datalist, -m: zooflow sets them"):
        build(RunConfig, demo=True, toolchain_options={"vamp_args": ["-m", "x", "--datalist", "y"]})
    with pytest.raises(ConfigError, match=r"benchmark\.batch_sizes: give one or more positive integers"):
        build(RunConfig, demo=True, benchmark={"batch_sizes": "0,8"})
    assert NpzOptions(format="vastai", pre_resize="256x224").pre_resize == (256, 224)
    assert RunConfig(demo=True, benchmark={"batch_sizes": "1,8,16"}).benchmark.batch_sizes == (1, 8, 16)


def test_the_one_off_form_opens_on_a_preset_drop_down_at_the_top() -> None:
    """Prefect renders the flow's schema: the preset is a plain drop-down of names with a named default,
    and what a one-off run needs comes first (an anyOf of a name and a full spec rendered empty)."""
    schema = RunConfig.model_json_schema()
    assert list(schema["properties"])[:4] == ["model", "quant", "demo", "data"]
    quant = schema["properties"]["quant"]
    assert quant["type"] == "string" and quant["enum"] == list(PRESETS) and quant["default"] == "fp32"
    assert "anyOf" not in quant and quant["title"] == "Preset"
    # a preset's spec is written as its name (what the drop-down holds); a custom spec stays whole
    assert RunConfig(demo=True, quant="int8-max").model_dump(mode="json")["quant"] == "int8-max"
    custom = RunConfig(demo=True, quant=QuantSpec.from_preset("int8-max", per_channel=False))
    assert custom.model_dump(mode="json")["quant"]["per_channel"] is False
    assert RunConfig(**custom.model_dump(mode="json")).quant == custom.quant


def test_int8_mixed_is_int8_max_with_layers_in_float_and_an_agreement_goal() -> None:
    from zooflow.config import MIXED_AGREEMENT, default_gates
    from zooflow.runconfig import SweepConfig
    from zooflow.toolchains import quant_label

    spec = RunConfig(demo=True, quant="int8-mixed").quant
    assert (spec.dtype, spec.calibrate, spec.keep_float, spec.mixed) == ("int8", "max", "auto", True)
    assert spec.base() == QuantSpec.from_preset("int8-max")
    fixed = spec.model_copy(update={"keep_float": 3})
    assert quant_label(fixed) == "int8-mixed-k3" and quant_label(spec) == "int8-mixed"
    assert [(g.metric, g.min) for g in default_gates(spec)] == [("top1", None), ("agreement", MIXED_AGREEMENT)]
    sweep = SweepConfig(demo=True, presets=("int8-max", "int8-mixed"), keep_float=2)
    assert [q.keep_float for q in sweep.quants()] == [None, 2]
    assert "int8-mixed" not in [q.preset for q in SweepConfig(demo=True).quants()]  # the default sweep: six presets


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        ({"quant": {"dtype": "int8", "calibrate": "max", "keep_float": 0}}, "keep at least 1 layer in float"),
        ({"quant": {"dtype": "fp16", "keep_float": 2}}, "keep_float applies to int8"),
        ({"quant": "int8-mixed", "evaluation": {"sensitivity_images": 0}}, "set evaluation.sensitivity_images"),
    ],
)
def test_int8_mixed_refusals_name_the_field_and_the_fix(values: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        build(RunConfig, demo=True, **values)


def test_the_cli_keep_float_option() -> None:
    from zooflow.cli.common import quant_value

    assert quant_value("int8-mixed", False, keep_float="2")["keep_float"] == 2
    assert quant_value("int8-mixed", False, keep_float="auto")["keep_float"] == "auto"
    with pytest.raises(ConfigError, match="--keep-float applies to --quant int8-mixed, not int8-max"):
        quant_value("int8-max", False, keep_float="2")
    with pytest.raises(ConfigError, match="neither a number of layers nor auto"):
        quant_value("int8-mixed", False, keep_float="two")
