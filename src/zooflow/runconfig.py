"""The flows' settings: one-off runs (`RunConfig`), sweeps, the regression matrix and the nightly run.

Each is built from `zooflow.config`'s blocks; each is also a Prefect parameter form, so its JSON
schema is shaped by `zooflow.form` (field order, titles, server-side rules).
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Annotated, Any, Literal, cast, get_args

from pydantic import (
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    field_serializer,
    field_validator,
    model_validator,
)

from zooflow import form, registry
from zooflow.config import (
    BASE_PRESETS,
    PRESETS,
    STORE_ENV,
    BenchmarkSpec,
    CalibrationOptions,
    DataSpec,
    EvaluationOptions,
    ExportOptions,
    Gate,
    ModelSource,
    QuantSpec,
    ShardOptions,
    Spec,
    ToolchainName,
    ToolchainOptions,
    describe_validation_error,
)
from zooflow.errors import ConfigError

PresetName = Literal["fp32", "fp16", "int8-max", "int8-percentile", "int8-kl_divergence", "int8-mse", "int8-mixed"]
assert get_args(PresetName) == PRESETS
# The form shows one drop-down of named presets (an anyOf of a name and a full spec rendered as an
# empty drop-down in Prefect's UI); a full spec (per-tensor weights, another percentile) is for the
# CLI and Python callers, whose values pydantic validates without this schema.
_QUANT_SCHEMA = {
    "title": "Preset",
    "type": "string",
    "enum": list(PRESETS),
    "default": "fp32",
    "description": "quantisation preset; with the vastai toolchain fp16 or an int8 preset (the seed's: int8-percentile)",
}


def _to_quant(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return QuantSpec.from_preset(value)
        except ConfigError as exc:
            raise ValueError(f"{exc.problem}; use one of: {', '.join(PRESETS)}") from None
    return value


VASTAI_DEFAULT_PRESET = "int8-percentile"  # the seed's compile: int8, calibrate percentile


# What a person fills in for a one-off run comes first in the UI's form; tuning options follow.
FORM_FIRST = ("model", "quant", "presets", "demo", "data", "toolchain", "evaluation", "checkpoint", "checkpoint_sha256")
FORM_TITLES = {
    "model": "Model (mmcls model index name)",
    "demo": "Demo (generated images, locally initialised weights)",
    "data": "Data: ImageNet val folder and labels",
    "evaluation": "Gates and evaluation",
    "export": "Tuning: ONNX export",
    "calibration": "Tuning: calibration set",
    "npz": "Tuning: npz shards",
    "toolchain_options": "Tuning: toolchain",
    "benchmark": "Tuning: benchmark",
    "store": "Store (artifact store path or fsspec URL)",
}


# What the server's refusal says (jsonschema's "'<sentence>' was expected", see `form.expect`).
NEEDS_DATA = "a data folder in Data → Path (an ImageNet val folder), or Demo on"
NO_FP32_ON_VASTAI = "fp16 or an int8 preset, because the vastai toolchain compiles no fp32"


def _pipeline_form(schema: dict[str, Any]) -> None:
    """The shared form: plain optionals, the one-off fields first, and the server refuses a non-demo
    run without a data folder (pydantic's `_needs_data`), in a sentence."""
    form.plain_optionals(schema)
    form.ordered(schema, FORM_FIRST, FORM_TITLES)
    a_path = {"required": ["path"], "properties": {"path": {"type": "string", "minLength": 1}}}
    form.refuse_when(
        schema,
        "demo",
        False,
        {
            "allOf": [
                form.expect({"required": ["data"]}, NEEDS_DATA),
                {"properties": {"data": form.expect(a_path, NEEDS_DATA)}},
            ]
        },
    )


def _run_form(schema: dict[str, Any]) -> None:
    """The one-off form: a blank preset ("" or null) is refused, never run as some default; no preset at
    all (`--param config='{"demo": true}'`) is the default one, as on the CLI; the vastai toolchain offers
    no fp32 (the server refuses it before a run is created). The drop-down has no blank entry."""
    _pipeline_form(schema)
    not_fp32 = form.expect({"not": {"const": "fp32"}}, NO_FP32_ON_VASTAI)
    form.refuse_when(schema, "toolchain", "vastai", {"properties": {"quant": not_fp32}})


class PipelineConfig(ModelSource):
    """What every flow shares: model, data, export, calibration, sharding, toolchain, benchmark, evaluation."""

    model_config = ConfigDict(json_schema_extra=_pipeline_form)

    export: ExportOptions = Field(default_factory=ExportOptions)
    data: DataSpec = Field(default_factory=DataSpec)
    calibration: CalibrationOptions = Field(default_factory=CalibrationOptions)
    npz: ShardOptions = Field(default_factory=ShardOptions)
    toolchain: ToolchainName = Field(default="onnxruntime", description="onnxruntime (embedded) or vastai (vamc/vamp)")
    toolchain_options: ToolchainOptions = Field(default_factory=ToolchainOptions)
    benchmark: BenchmarkSpec = Field(default_factory=BenchmarkSpec)
    evaluation: EvaluationOptions = Field(default_factory=EvaluationOptions)

    @model_validator(mode="after")
    def _needs_data(self) -> PipelineConfig:
        if not self.demo and self.data.path is None:
            raise ValueError("data.path is required (an ImageNet val folder, --data); or use --demo for generated data")
        demo = self.data.demo
        short = demo.classes < self.data.num_classes or demo.per_class < self.calibration.per_class
        if self.demo and self.data.path is None and not self.calibration.allow_short and short:
            raise ValueError(
                f"the demo's {demo.classes} class(es) x {demo.per_class} image(s) cannot give the calibration set "
                f"{self.calibration.per_class} image(s) of each of the {self.data.num_classes} classes: pass "
                "--allow-short (calibration.allow_short) to accept a short set, or generate every class"
            )
        return self

    def check_quant(self, quant: QuantSpec) -> None:
        """Refuse a spec the toolchain cannot compile."""
        if self.toolchain == "vastai" and quant.dtype == "fp32":
            raise ValueError("the vastai toolchain compiles fp16 and int8 only: choose --quant fp16 or an int8 preset")
        if quant.mixed and not self.evaluation.sensitivity_images:
            raise ValueError(
                f"{quant.preset} keeps the most sensitive layers in float, which needs the sensitivity ranking: "
                "set evaluation.sensitivity_images above 0 (default 100)"
            )


class RunConfig(PipelineConfig):
    """Everything one `deploy_classifier` run needs; the flow's parameter form in the UI."""

    model_config = ConfigDict(json_schema_extra=_run_form)

    quant: Annotated[QuantSpec, WithJsonSchema(_QUANT_SCHEMA)] = Field(default_factory=QuantSpec)

    @model_validator(mode="before")
    @classmethod
    def _toolchain_default_quant(cls, values: Any) -> Any:
        """No quant given: fp32 on the embedded toolchain, the seed's int8-percentile on vastai (no fp32 there)."""
        if isinstance(values, dict) and "quant" not in values and values.get("toolchain") == "vastai":
            values = {**values, "quant": VASTAI_DEFAULT_PRESET}
        return values

    @field_validator("quant", mode="before")
    @classmethod
    def _preset(cls, value: Any) -> Any:
        """A blank preset (None, "") is refused: a cleared drop-down must never run as some default."""
        if value is None or value == "":
            raise ValueError(f"no preset chosen; choose one of: {', '.join(PRESETS)}")
        return _to_quant(value)

    @field_serializer("quant")
    def _quant_as_preset(self, quant: QuantSpec) -> Any:
        """A preset's spec is written as its name (what the form's drop-down holds); anything else in full."""
        return quant.preset if quant == QuantSpec.from_preset(quant.preset) else quant.model_dump()

    @model_validator(mode="after")
    def _quant_fits_toolchain(self) -> RunConfig:
        self.check_quant(self.quant)
        return self


def _sweep_form(schema: dict[str, Any]) -> None:
    """The sweep form: as a run's, what a sweep chooses (presets, per-channel, keep-float) right below the
    model, and the server refuses fp32 among the presets on the vastai toolchain."""
    _pipeline_form(schema)
    form.ordered(schema, ("model", "presets", "per_channel", "keep_float"), {})
    not_fp32 = form.expect({"not": {"const": "fp32"}}, NO_FP32_ON_VASTAI)
    form.refuse_when(schema, "toolchain", "vastai", {"properties": {"presets": {"items": not_fp32}}})


# One text box (an int-or-"auto" union is drawn as a type switch with a const "auto" branch).
_KEEP_FLOAT_SCHEMA = {
    "title": "Keep Float",
    "type": "string",
    "default": "auto",
    "description": "int8-mixed: layers left in float (1 or more), or auto (the smallest number meeting the gate)",
    **form.expect({"pattern": r"^(auto|[1-9][0-9]{0,3})$"}, "auto, or a number of layers (1 or more)"),
}


class SweepConfig(PipelineConfig):
    """`quant_sweep`: one model and dataset over a list of presets (default: every preset the toolchain compiles)."""

    model_config = ConfigDict(json_schema_extra=_sweep_form)

    presets: tuple[PresetName, ...] | None = Field(
        default=None, description="presets to compare; default: fp32, fp16 and int8 with all four calibrate modes"
    )
    per_channel: bool = Field(default=True, description="int8 presets: per-channel weight scales")
    keep_float: Annotated[int | Literal["auto"], WithJsonSchema(_KEEP_FLOAT_SCHEMA)] = "auto"

    def quants(self) -> list[QuantSpec]:
        """The specs to run, in order."""
        names: tuple[str, ...] = self.presets or tuple(
            p for p in BASE_PRESETS if not (self.toolchain == "vastai" and p == "fp32")
        )
        specs = [QuantSpec.from_preset(p, per_channel=self.per_channel) for p in names]
        return [q.model_copy(update={"keep_float": self.keep_float}) if q.mixed else q for q in specs]

    @field_validator("keep_float", mode="before")
    @classmethod
    def _form_number(cls, value: Any) -> Any:
        """The form's text box sends a number of layers as text ("3")."""
        return int(value) if isinstance(value, str) and value.strip().isdigit() else value

    @field_serializer("keep_float", when_used="json")
    def _keep_float_as_text(self, value: int | str) -> str:
        """As the form's text box holds it: "auto" or "3"."""
        return str(value)

    @field_validator("keep_float")
    @classmethod
    def _at_least_one(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError(f"keep_float={value}: keep at least 1 layer in float, or use auto")
        return value

    @model_validator(mode="after")
    def _presets_fit_toolchain(self) -> SweepConfig:
        if self.presets is not None and not self.presets:
            raise ValueError("presets is empty: name at least one, e.g. fp32,int8-max")
        for quant in self.quants():
            self.check_quant(quant)
        return self


class MatrixEntry(Spec):
    """One model of the regression matrix: its checkpoint, presets and goals."""

    model: str = Field(default=registry.DEFAULT_MODEL)
    checkpoint: str | None = None
    checkpoint_sha256: str | None = None
    presets: tuple[PresetName, ...] = ("fp32", "int8-max")
    gates: tuple[Gate, ...] | None = Field(default=None, description="goals for every preset; default per dtype")


class RegressionMatrix(Spec):
    """``deployments/regression.yaml``: models x presets x goals over shared settings."""

    name: str = Field(pattern=r"^[A-Za-z0-9._-]+$", description="names the history in the store")
    defaults: dict[str, Any] = Field(default_factory=dict, description="PipelineConfig fields shared by all models")
    models: tuple[MatrixEntry, ...] = Field(min_length=1)

    def configs(self, store: str | None = None) -> list[tuple[MatrixEntry, SweepConfig]]:
        """Each entry as a validated sweep config (errors name the entry)."""
        out = []
        for number, entry in enumerate(self.models):
            values = {**self.defaults, "model": entry.model, "presets": entry.presets}
            if entry.checkpoint:
                values.update(checkpoint=entry.checkpoint, checkpoint_sha256=entry.checkpoint_sha256)
            if store:
                values["store"] = store
            # a nightly run tracks the speed of the night: measured again, never reused
            values["benchmark"] = {"fresh": True, **dict(values.get("benchmark") or {})}
            try:
                out.append((entry, SweepConfig(**values)))
            except ValidationError as exc:
                raise ConfigError(
                    f"regression matrix {self.name!r}, model #{number + 1} ({entry.model}):\n"
                    + describe_validation_error(exc, SweepConfig),
                    "fix the matrix file",
                ) from None
        return out

    def check_data(self, file: str | os.PathLike[str]) -> None:
        """Refuse, before any work, a matrix whose data files are missing on this host (the default
        matrix reads ImageNet from /data/imagenet/val): a sentence naming the path, the file and the way out."""
        for number, (entry, sweep) in enumerate(self.configs()):
            for key, value in (("path", sweep.data.path), ("labels", sweep.data.labels), ("names", sweep.data.names)):
                if value and not Path(value).expanduser().exists():
                    raise ConfigError(
                        f"regression matrix {self.name!r} ({file}), model #{number + 1} ({entry.model}), reads "
                        f"data.{key} {value}, which does not exist on this host",
                        f"put the ImageNet val set there or change data.{key} in {file}; "
                        "deployments/regression-demo.yaml runs anywhere (generated images)",
                    )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> RegressionMatrix:
        """Read and validate a matrix file (YAML)."""
        import yaml

        file = Path(path).expanduser()
        if not file.is_file():
            raise ConfigError(
                f"regression matrix not found: {file}",
                "pass the path of a matrix file, e.g. deployments/regression.yaml",
            )
        try:
            data = yaml.safe_load(file.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ConfigError(f"{file} is not valid YAML: {exc}", "fix the file's syntax") from None
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(
                f"invalid regression matrix {file}:\n{describe_validation_error(exc, cls)}", "fix the matrix file"
            ) from None


MATRIX_FOLDER = Path("deployments")  # relative to the repository root, where deploy, serve and workers run
MATRICES_ENV = "ZOOFLOW_MATRICES"  # more folders of matrices for the nightly form (os.pathsep-separated)
NIGHT_PATTERN = r"^(\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01]))?$"


def matrices(folder: Path = MATRIX_FOLDER) -> list[str]:
    """The regression matrices in `folder` and in the folders of ``$ZOOFLOW_MATRICES`` (YAML files with a
    `models` list), as the nightly form lists them when the deployments are registered."""
    import yaml

    folders = [folder, *(Path(f).expanduser() for f in os.environ.get(MATRICES_ENV, "").split(os.pathsep) if f)]
    found = []
    for file in (f for d in folders for f in sorted(d.glob("*.y*ml"))):
        try:
            data = yaml.safe_load(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue
        if isinstance(data, dict) and isinstance(data.get("models"), list):
            found.append(file.as_posix())
    return found


def _nightly_form(schema: dict[str, Any]) -> None:
    """The nightly form: the matrix is a drop-down of the matrices in deployments/ when the form is
    registered (a misspelled path cannot be sent; matrices kept elsewhere: list their folder in
    ``$ZOOFLOW_MATRICES`` when registering, or run them with the CLI), the night a date or blank.
    Both refusals come from the server before a run exists, in sentences."""
    form.plain_optionals(schema)
    props = schema.get("properties", {})
    found = matrices()
    if props.get("matrix", {}).get("default") in found:  # registered from the repository root
        props["matrix"]["enum"] = found
    night = props.get("night", {})
    pattern = night.pop("pattern", NIGHT_PATTERN)
    night.update(form.expect({"pattern": pattern}, "a night as YYYY-MM-DD (2026-12-06), or blank for today (UTC)"))


class NightlyConfig(Spec):
    """`nightly_regression`: which matrix, which night (default: today, UTC), where the store is."""

    model_config = ConfigDict(json_schema_extra=_nightly_form)

    matrix: str = Field(default="deployments/regression.yaml", description="regression matrix file (YAML)")
    night: str | None = Field(
        default=None,
        pattern=NIGHT_PATTERN,  # the server refuses 2026-13-45 itself
        description="YYYY-MM-DD; default (or blank): today (UTC)",
    )
    store: str | None = Field(default=None, description=f"artifact store path or fsspec URL; default ${STORE_ENV}")

    @field_validator("night")
    @classmethod
    def _a_real_day(cls, value: str | None) -> str | None:
        """A calendar day (2026-02-30 passes the pattern, not the calendar)."""
        if value:
            try:
                dt.date.fromisoformat(value)
            except ValueError:
                raise ValueError(f"night {value!r} is not a day of the calendar; write YYYY-MM-DD") from None
        return value


def _titled(cls: type[Spec], title: str) -> Any:
    """A flow parameter of type `cls` titled for the form (Prefect titles it by the argument's name)."""
    return Annotated[cls, Field(json_schema_extra={"title": title})]


def form_default(cls: type[Spec], **values: Any) -> dict[str, Any]:
    """A flow parameter's default as the form opens with it: `cls(**values)` as JSON, tri-state settings
    spelled as the drop-down does (auto/on/off; a null there is refused by the server). Prefect turns it
    into `cls` when the flow is called (its parameters are validated), so the flow sees the same config."""
    return cast(dict[str, Any], form.as_form(cls, cls(**values).model_dump(mode="json")))


RunParameter = _titled(RunConfig, "Run settings")
SweepParameter = _titled(SweepConfig, "Sweep settings")
NightlyParameter = _titled(NightlyConfig, "Nightly settings")
