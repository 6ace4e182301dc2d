"""Typed configuration shared by every entry point: CLI, flow parameters, tests.

A bad value fails here, before any work, with a message that names the field and the
allowed values (`describe_validation_error` turns pydantic's report into that message).
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Any, Literal, get_args

import platformdirs
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from zooflow import form, registry
from zooflow.errors import ConfigError, UnknownModelError
from zooflow.limits import GATE_RANGES, MAX_BATCH, max_threads, parse_size

DType = Literal["fp32", "fp16", "int8"]
CalibrateMode = Literal["max", "percentile", "kl_divergence", "mse"]
CALIBRATE_MODES: tuple[str, ...] = get_args(CalibrateMode)
BASE_PRESETS: tuple[str, ...] = ("fp32", "fp16", *(f"int8-{m}" for m in CALIBRATE_MODES))
MIXED_PRESET = "int8-mixed"  # int8-max with the most sensitive layers left in float (`QuantSpec.keep_float`)
PRESETS: tuple[str, ...] = (*BASE_PRESETS, MIXED_PRESET)
MIXED_AGREEMENT = 99.0  # int8-mixed's default goal: top-1 agreement with fp32 (%), what `auto` searches for
DEMO_CHECKPOINT = "local-init"
STORE_ENV = "ZOOFLOW_STORE"


class Spec(BaseModel):
    """A settings block: unknown keys refused, values frozen, a JSON schema that Prefect's form draws plainly."""

    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra=form.plain_optionals)

    @model_validator(mode="before")
    @classmethod
    def _blank_is_unset(cls, values: Any) -> Any:
        return form.tri_state(cls.model_fields, form.blank_is_unset(cls.model_fields, values))


def _suggest(value: str, allowed: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(value, list(allowed), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class QuantSpec(Spec):
    """dtype x calibrate mode x per-channel; `preset` names it the way the UI and sweeps do."""

    dtype: DType = "fp32"
    calibrate: CalibrateMode | None = Field(
        default=None, description="int8 only: how activation ranges are chosen from the calibration set"
    )
    per_channel: bool = Field(default=True, description="int8 only: per-channel weight scales")
    percentile: float = Field(default=99.999, gt=50.0, le=100.0, description="for calibrate=percentile")
    keep_float: int | Literal["auto"] | None = Field(
        default=None,
        description="int8-mixed: the K most sensitive layers left in float, or auto (the smallest K meeting "
        "the agreement gate)",
    )

    @model_validator(mode="after")
    def _calibrate_matches_dtype(self) -> QuantSpec:
        if self.dtype == "int8" and self.calibrate is None:
            raise ValueError(f"int8 needs a calibrate mode, one of: {', '.join(CALIBRATE_MODES)}")
        if self.dtype != "int8" and self.calibrate is not None:
            raise ValueError(f"calibrate={self.calibrate!r} applies to int8 only, not {self.dtype}")
        if self.keep_float is not None and self.dtype != "int8":
            raise ValueError(f"keep_float applies to int8 (the int8-mixed preset), not {self.dtype}")
        if isinstance(self.keep_float, int) and self.keep_float < 1:
            raise ValueError(f"keep_float={self.keep_float}: keep at least 1 layer in float, or use auto")
        return self

    @property
    def mixed(self) -> bool:
        """Whether some layers stay in float (the int8-mixed preset)."""
        return self.keep_float is not None

    @property
    def preset(self) -> str:
        """The preset name: ``fp32``, ``fp16``, ``int8-<mode>`` or ``int8-mixed`` (``int8-<mode>-mixed``
        for a mixed spec on another calibrate mode than int8-mixed's max)."""
        if self.mixed:
            return MIXED_PRESET if self.calibrate == "max" else f"int8-{self.calibrate}-mixed"
        return self.dtype if self.calibrate is None else f"{self.dtype}-{self.calibrate}"

    def base(self) -> QuantSpec:
        """The all-int8 spec a mixed one starts from (itself when not mixed)."""
        return self.model_copy(update={"keep_float": None}) if self.mixed else self

    @classmethod
    def from_preset(cls, name: str, *, per_channel: bool = True) -> QuantSpec:
        """Build a spec from a preset name such as ``int8-percentile``."""
        if name not in PRESETS:
            raise ConfigError(
                f"unknown quantization preset {name!r}{_suggest(name, PRESETS)}",
                f"use one of: {', '.join(PRESETS)}",
            )
        if name == MIXED_PRESET:
            return cls(dtype="int8", calibrate="max", per_channel=per_channel, keep_float="auto")
        dtype, _, mode = name.partition("-")
        return cls(dtype=dtype, calibrate=mode or None, per_channel=per_channel)


class ExportOptions(Spec):
    """How the checkpoint is turned into ONNX (defaults follow the seed: opset 11, probs)."""

    opset: int = Field(default=11, ge=7, le=20, description="ONNX opset; mmcls models need 11 or later")
    logits: bool = Field(default=False, description="output raw logits instead of softmax probabilities")
    dynamic_batch: bool | None = Field(
        default=None, description="symbolic batch dimension instead of batch 1; default: the toolchain's choice"
    )


class DemoDataSpec(Spec):
    """The generated ImageNet-layout set `--demo` uses (synthetic textures, real JPEG files)."""

    classes: int = Field(default=1000, ge=1, le=1000, description="number of classes")
    per_class: int = Field(default=2, ge=1, le=100, description="images per class")
    layout: Literal["flat", "synset"] = "flat"


class DataSpec(Spec):
    """Where the validation images are and how they are labelled."""

    path: str | None = Field(default=None, description="ImageNet val folder (flat or synset folders)")
    labels: str | None = Field(default=None, description="val_label.txt for a flat folder (default: found beside it)")
    names: str | None = Field(
        default=None, description="class-names file, one per line (default: imagenet.txt beside it)"
    )
    layout: Literal["auto", "flat", "synset"] = "auto"
    num_classes: int = Field(default=1000, ge=1)
    limit: int | None = Field(default=None, ge=1, description="use only the first N images (in name order)")
    skip_corrupt: bool = Field(default=False, description="leave undecodable images out (recorded) instead of failing")
    rehash: bool = Field(
        default=False,
        description="re-hash every image, whatever its stat stamp (finds changes that bypass the file system)",
    )
    demo: DemoDataSpec = Field(default_factory=DemoDataSpec, description="used when --demo and no path")


class CalibrationOptions(Spec):
    """How the calibration set is sampled: `per_class` images from every class, seeded."""

    per_class: int = Field(default=1, ge=1, le=1000)
    allow_short: bool = Field(
        default=False, description="accept classes with fewer images (recorded) instead of failing"
    )


NpzFormat = Literal["model", "vastai", "dsp"]
VAMP_OWN_FLAGS = ("-m", "--vdsp_params", "-i", "-p", "-b", "--datalist", "--path_output", "-d")


class NpzOptions(Spec):
    """npz generation: format, sharding and parallelism."""

    format: NpzFormat = Field(
        default="model",
        description="model: exact preprocessed crop; vastai: image2npz's full-size RGB; dsp: the card's DSP crop",
    )
    shard_size: int = Field(default=1000, ge=1, le=100_000, description="images per shard (one cached unit)")
    workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1, description="worker processes")
    pre_resize: tuple[int, int] | None = Field(
        default=None, description="vastai only: resize to (height, width), e.g. 256x256"
    )

    @field_validator("pre_resize", mode="before")
    @classmethod
    def _parse_size(cls, value: Any) -> Any:
        return parse_size(value)

    @field_validator("workers")
    @classmethod
    def _workers_fit(cls, value: int) -> int:
        if value > max_threads():
            raise ValueError(f"{value} worker processes on {os.cpu_count()} cores: at most {max_threads()}")
        return value

    @model_validator(mode="after")
    def _pre_resize_is_vastai(self) -> NpzOptions:
        if self.pre_resize is not None and self.format != "vastai":
            raise ValueError("pre_resize applies to the vastai format only (the model format is resized exactly)")
        return self


ToolchainName = Literal["onnxruntime", "vastai"]


class BenchmarkSpec(Spec):
    """What a benchmark measures: batch sizes x thread counts, warm-up and repeated trials."""

    batch_sizes: tuple[int, ...] = Field(default=(1, 8), description="batch sizes to measure")
    threads: tuple[int, ...] = Field(default=(1,), description="intra-op threads (onnxruntime)")
    warmup: int = Field(default=5, ge=0, le=1000, description="untimed runs before measuring")
    trials: int = Field(default=5, ge=1, le=100, description="timed trials (the spread is reported across them)")
    iterations: int = Field(default=20, ge=1, le=10_000, description="runs per trial")
    fresh: bool = Field(
        default=False,
        description="measure again even if this host already measured this compiled model (nightly runs do)",
    )

    @field_validator("batch_sizes", "threads", mode="before")
    @classmethod
    def _parse_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(int(v) for v in value.split(",") if v.strip())
        return value

    @field_validator("batch_sizes", "threads")
    @classmethod
    def _positive(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or any(v < 1 for v in value):
            raise ValueError("give one or more positive integers, e.g. 1,8")
        return value

    @field_validator("batch_sizes")
    @classmethod
    def _batches_fit(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if max(value) > MAX_BATCH:
            raise ValueError(f"batch size {max(value)} is more than {MAX_BATCH}")
        return value

    @field_validator("threads")
    @classmethod
    def _threads_fit(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if max(value) > max_threads():
            raise ValueError(
                f"{max(value)} threads on {os.cpu_count()} cores: at most {max_threads()} (4 per core); "
                "more only thrash"
            )
        return value


class ToolchainOptions(Spec):
    """Settings of the toolchains (each uses its own part)."""

    calibration_chunk: int = Field(
        default=16,
        ge=1,
        le=1024,
        description=(
            "onnxruntime: images per calibration chunk: bounds memory (every activation of a chunk is held, about "
            "35 MB per image for ShuffleNetV1); the result does not depend on it"
        ),
    )
    int8_weights: Literal["auto", "int8", "int8-reduced", "uint8"] = Field(
        default="auto",
        description=(
            "onnxruntime: int8 weight scheme; auto = full-range int8 where the CPU's kernels are exact (VNNI, ARM), "
            "7-bit int8 (reduce_range) on x86 without VNNI, whose kernels saturate with full-range weights"
        ),
    )
    run_batch: int = Field(default=32, ge=1, le=1024, description="onnxruntime: inference batch size")
    run_threads: int = Field(
        default=0, ge=0, le=1024, description="onnxruntime: intra-op threads for runs (0 = all cores)"
    )
    vamc_generation: Literal["v2", "v3"] = Field(
        default="v2", description="vastai: `vamc build` (v2) or `vamc compile` (v3)"
    )
    vamc_calibrate_range: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description=(
            "vastai v3, int8: write calibrate_range (a fraction, e.g. 0.9999) into vamc's quantize block; the zoo's "
            "v3 NLP configs use it, no published classification config does, so it is written only when passed"
        ),
    )
    vamc_timeout: float = Field(
        default=3600.0, gt=0, le=7 * 86400, description="vastai: seconds before vamc is stopped"
    )
    vamp_timeout: float = Field(
        default=3600.0, gt=0, le=7 * 86400, description="vastai: seconds before vamp is stopped"
    )
    vamp_instances: int = Field(default=8, ge=1, le=256, description="vastai: vamp -i (model instances per device)")
    vamp_processes: int = Field(default=1, ge=1, le=256, description="vastai: vamp -p")
    vamp_batch: int = Field(default=22, ge=1, le=1024, description="vastai: vamp -b for output runs")
    device: int | None = Field(
        default=None, ge=0, description="vastai: vamp -d (default: not passed, as in the seed: vamp's own device)"
    )
    vamp_args: tuple[str, ...] = Field(
        default=(),
        description="vastai: extra arguments for every vamp call, e.g. ['-s', '[3,224,224]'] (the zoo's speed runs)",
    )
    pre_resize: tuple[int, int] | None = Field(
        default=None,
        description=(
            "vastai: resize images on the host to (height, width) with OpenCV bilinear before vamp; default: full "
            "resolution, as the zoo's image2npz, so the card's DSP does the resize"
        ),
    )

    @field_validator("pre_resize", mode="before")
    @classmethod
    def _parse_pre_resize(cls, value: Any) -> Any:
        return parse_size(value)

    @field_validator("vamp_args")
    @classmethod
    def _own_flags_stay_ours(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        taken = sorted(set(value) & set(VAMP_OWN_FLAGS))
        if taken:
            raise ValueError(
                f"vamp_args may not set {', '.join(taken)}: zooflow sets them "
                "(use vamp_instances, vamp_processes, vamp_batch, device)"
            )
        return value


class ShardOptions(Spec):
    """How a run cuts the npz stage into cached, parallel units (the format is the toolchain's)."""

    shard_size: int = Field(default=1000, ge=1, le=100_000, description="images per shard (one cached unit)")


GateMetric = Literal["top1", "top5", "agreement", "sqnr_db", "cosine"]
GATE_METRICS: tuple[str, ...] = get_args(GateMetric)
_VS_FP32 = ("top1", "top5")
# a store reference: NAME[@VERSION|@ALIAS] (NAME as zooflow.store.check_name allows) or a digest (prefix)
_REF_RE = re.compile(
    r"^(?:(?:sha256:)?[0-9a-f]{6,64}|[A-Za-z0-9][A-Za-z0-9._\-]*(?:/[A-Za-z0-9][A-Za-z0-9._\-]*)*(?:@[A-Za-z0-9][A-Za-z0-9._\-]*)?)$"
)  # metrics that the fp32 reference and the model index also report


class Gate(Spec):
    """A goal for one metric; every limit given must hold (top-1/top-5/agreement in percent, points for drops)."""

    metric: GateMetric
    min: float | None = Field(default=None, description="absolute threshold: the value must be at least this")
    max_drop_vs_reference: float | None = Field(
        default=None, ge=0, description="points the value may fall below the fp32 reference run of the same data"
    )
    max_drop_vs_published: float | None = Field(
        default=None, ge=0, description="points the value may fall below the model index's published number"
    )
    max_drop_vs_baseline: float | None = Field(
        default=None, ge=0, description="points the value may fall below the named baseline run's"
    )
    baseline: str | None = Field(
        default=None, description="baseline evaluation artifact (name, name@N, name@alias or digest)"
    )

    @classmethod
    def parse(cls, text: str) -> Gate:
        """``METRIC:LIMIT=VALUE[,LIMIT=VALUE...]``, e.g. ``top1:max_drop_vs_reference=1.5`` or
        ``top1:max_drop_vs_baseline=0.3,baseline=NAME@3`` (the CLI's ``--gate``)."""
        metric, sep, rest = text.partition(":")
        if not sep or not rest:
            raise ConfigError(
                f"gate {text!r} is not METRIC:LIMIT=VALUE",
                "e.g. --gate top1:max_drop_vs_reference=1.5 or --gate top1:min=65",
            )
        values: dict[str, Any] = {"metric": metric.strip()}
        for part in rest.split(","):
            key, eq, value = part.partition("=")
            if not eq:
                raise ConfigError(f"gate {text!r}: {part!r} is not LIMIT=VALUE", "separate limits with commas")
            values[key.strip()] = value.strip()
        return build(cls, **values)  # type: ignore[no-any-return]

    @field_validator("baseline")
    @classmethod
    def _baseline_is_a_reference(cls, value: str | None) -> str | None:
        if value is not None and not _REF_RE.match(value.strip()):
            raise ValueError(
                f"baseline {value!r} is not an artifact reference: use NAME, NAME@VERSION, NAME@ALIAS or a digest "
                "(name segments of letters, digits, '.', '_', '-' separated by '/', no '..')"
            )
        return value

    @model_validator(mode="after")
    def _limits_make_sense(self) -> Gate:
        low, high, unit = GATE_RANGES[self.metric]
        if self.min is not None and not low <= self.min <= high:
            raise ValueError(f"{self.metric} is {unit}: min={self.min:g} is outside {low:g}..{high:g}")
        drops = (self.max_drop_vs_reference, self.max_drop_vs_published, self.max_drop_vs_baseline)
        span = high - low
        if any(d is not None and d > span for d in drops):
            raise ValueError(f"{self.metric} is {unit}: a drop of more than {span:g} can never happen")
        limits = (self.min, self.max_drop_vs_reference, self.max_drop_vs_published, self.max_drop_vs_baseline)
        if all(v is None for v in limits):
            raise ValueError(
                f"gate on {self.metric} sets no limit: give min, max_drop_vs_reference, "
                "max_drop_vs_published or max_drop_vs_baseline"
            )
        if (self.max_drop_vs_reference is not None or self.max_drop_vs_published is not None) and (
            self.metric not in _VS_FP32
        ):
            raise ValueError(f"{self.metric} has no fp32 or published value to compare with; use min")
        if (self.max_drop_vs_baseline is None) != (self.baseline is None):
            raise ValueError("max_drop_vs_baseline and baseline go together")
        return self


def default_gates(quant: QuantSpec) -> tuple[Gate, ...]:
    """int8: top-1 at most 1.5 points below fp32; int8-mixed also >= 99% top-1 agreement with fp32 (what
    its `auto` searches for); fp16: at most 0.5 points; fp32 (the reference itself): none."""
    if quant.mixed:
        return (Gate(metric="top1", max_drop_vs_reference=1.5), Gate(metric="agreement", min=MIXED_AGREEMENT))
    if quant.dtype == "int8":
        return (Gate(metric="top1", max_drop_vs_reference=1.5),)
    if quant.dtype == "fp16":
        return (Gate(metric="top1", max_drop_vs_reference=0.5),)
    return ()


class EvaluationOptions(Spec):
    """What the evaluation measures and which goals it holds the run to."""

    gates: tuple[Gate, ...] | None = Field(
        default=None, description="metric goals; default: top-1 within 1.5 points of fp32 (int8), 0.5 (fp16)"
    )
    probe_images: int = Field(
        default=16, ge=0, le=1024, description="images also run through the PyTorch model (0 = no probe)"
    )
    preprocess_parity: bool = Field(
        default=True, description="also run the fp32 reference on the card's DSP preprocessing and compare"
    )
    max_flips: int = Field(default=200, ge=0, description="flipped predictions listed in the report")
    sensitivity_images: int = Field(
        default=100,
        ge=0,
        le=1000,
        description="int8: calibration images the per-layer sensitivity ranking runs on (0 = no ranking; "
        "int8-mixed needs it)",
    )

    def gates_for(self, quant: QuantSpec) -> tuple[Gate, ...]:
        """The gates in force: the given ones, else the defaults for the spec's dtype."""
        return self.gates if self.gates is not None else default_gates(quant)


class ExecutionOptions(Spec):
    """Where a flow's tasks run (not a flow parameter: the same run may go anywhere)."""

    runner: Literal["threads", "dask"] = Field(
        default="threads", description="threads in this process, or a Dask cluster (prefect-dask's DaskTaskRunner)"
    )
    dask_address: str | None = Field(
        default=None, description="scheduler address, e.g. tcp://10.0.0.5:8786; default: a temporary local cluster"
    )

    @model_validator(mode="after")
    def _address_needs_dask(self) -> ExecutionOptions:
        if self.dask_address and self.runner != "dask":
            raise ValueError("--dask-address needs --runner dask")
        return self


def default_store_url() -> str:
    """`ZOOFLOW_STORE` if set, else a per-user data directory."""
    env = os.environ.get(STORE_ENV)
    if env:
        return env
    return str(Path(platformdirs.user_data_dir("zooflow")) / "store")


_SHA_RE = re.compile(r"^[0-9a-f]{8,64}$")


class ModelSource(Spec):
    """Which model and which checkpoint: what `fetch` and `export` need."""

    model: str = Field(default=registry.DEFAULT_MODEL, description="name in mmcls's model index")
    checkpoint: str | None = Field(
        default=None,
        description="http(s) URL, file:// URL or local path; default: the model index's published weights",
    )
    checkpoint_sha256: str | None = Field(
        default=None, description="expected SHA-256 of the checkpoint (full, or a prefix of 8+ hex digits)"
    )
    trust_checkpoint: bool = Field(
        default=False,
        description="load a checkpoint that needs full unpickling (this RUNS CODE named in the file: only for files you trust)",
    )
    demo: bool = Field(default=False, description="offline demo: locally initialised weights and generated data")
    seed: int = Field(default=0, ge=0, description="seed for demo weights, demo data and calibration sampling")
    store: str | None = Field(default=None, description=f"artifact store path or fsspec URL; default ${STORE_ENV}")

    @field_validator("model")
    @classmethod
    def _known_model(cls, value: str) -> str:
        try:
            registry.resolve(value)
        except UnknownModelError as exc:
            raise ValueError(exc.problem) from None
        return value

    @field_validator("checkpoint_sha256")
    @classmethod
    def _hex_digest(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().lower()
        if not _SHA_RE.match(value):
            raise ValueError("must be 8 to 64 lowercase hex digits (a SHA-256 or its prefix)")
        return value

    @field_validator("checkpoint")
    @classmethod
    def _source_exists(cls, value: str | None) -> str | None:
        if value is None or value == DEMO_CHECKPOINT:
            return value
        scheme = value.split("://", 1)[0].lower() if "://" in value else ""
        if scheme in ("http", "https"):
            return value
        if scheme not in ("", "file"):
            raise ValueError(f"unsupported URL scheme {scheme!r}: use http://, https://, file:// or a local path")
        path = Path(value[len("file://") :] if scheme == "file" else value).expanduser()
        if not path.is_file():
            raise ValueError(f"checkpoint file not found: {path}")
        return value

    @model_validator(mode="after")
    def _demo_is_offline(self) -> ModelSource:
        if self.demo and self.checkpoint not in (None, DEMO_CHECKPOINT):
            raise ValueError("demo runs use locally initialised weights; drop --checkpoint or --demo")
        return self

    def checkpoint_source(self) -> str:
        """Where the checkpoint comes from: the given source, the demo's local init, or the index."""
        if self.checkpoint:
            return self.checkpoint
        if self.demo:
            return DEMO_CHECKPOINT
        info = registry.resolve(self.model)
        if not info.weights:
            raise ConfigError(
                f"model {self.model!r} has no published checkpoint in mmcls's index",
                "pass --checkpoint with a URL or path",
            )
        return info.weights

    def store_url(self) -> str:
        """The store location, falling back to `default_store_url()`."""
        return self.store or default_store_url()


def _field_names(model_cls: type[BaseModel], path: tuple[str | int, ...]) -> list[str]:
    """Names of the fields of the (possibly nested) model that `path` points into."""
    current: type[BaseModel] = model_cls
    for part in path:
        info = current.model_fields.get(str(part))
        annotation = info.annotation if info is not None else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        current = annotation
    return list(current.model_fields)


def describe_validation_error(exc: ValidationError, model_cls: type[BaseModel] | None = None) -> str:
    """One line per problem: ``field: what is wrong (allowed values)``."""
    lines = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "(config)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "literal_error" and isinstance(err.get("input"), str):
            allowed = re.findall(r"'([^']*)'", str((err.get("ctx") or {}).get("expected", "")))
            msg = f"{msg}; got {err['input']!r}{_suggest(err['input'], allowed)}"
        if err["type"] == "extra_forbidden":
            known = _field_names(model_cls, tuple(err["loc"][:-1])) if model_cls else []
            msg = f"unknown option{_suggest(str(err['loc'][-1]), known)}; check its spelling"
            if known:
                msg += f" (options: {', '.join(known)})"
        lines.append(f"{field}: {msg}")
    return "\n".join(lines)


# where a config's options are listed (the command that builds it); any other model: every command's help
_OPTIONS_HELP = {
    "RunConfig": "`zooflow run --help` lists the options",
    "SweepConfig": "`zooflow sweep --help` lists the options",
    "NightlyConfig": "`zooflow nightly --help` lists the options",
}
_ANY_HELP = "`zooflow COMMAND --help` lists a command's options"


def build(model_cls: type[BaseModel], **values: Any) -> Any:
    """Validate values into `model_cls`, raising `ConfigError` with a readable message."""
    try:
        return model_cls(**values)
    except ValidationError as exc:
        raise ConfigError(
            f"invalid {model_cls.__name__}:\n{describe_validation_error(exc, model_cls)}",
            f"correct the value(s) named above; {_OPTIONS_HELP.get(model_cls.__name__, _ANY_HELP)}",
        ) from None
