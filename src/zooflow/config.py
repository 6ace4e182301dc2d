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
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from zooflow import registry
from zooflow.errors import ConfigError, UnknownModelError

DType = Literal["fp32", "fp16", "int8"]
CalibrateMode = Literal["max", "percentile", "kl_divergence", "mse"]
CALIBRATE_MODES: tuple[str, ...] = get_args(CalibrateMode)
PRESETS: tuple[str, ...] = ("fp32", "fp16", *(f"int8-{m}" for m in CALIBRATE_MODES))
DEMO_CHECKPOINT = "local-init"
STORE_ENV = "ZOOFLOW_STORE"


def _suggest(value: str, allowed: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(value, list(allowed), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class QuantSpec(BaseModel):
    """dtype x calibrate mode x per-channel; `preset` names it the way the UI and sweeps do."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dtype: DType = "fp32"
    calibrate: CalibrateMode | None = Field(
        default=None, description="int8 only: how activation ranges are chosen from the calibration set"
    )
    per_channel: bool = Field(default=True, description="int8 only: per-channel weight scales")
    percentile: float = Field(default=99.999, gt=50.0, le=100.0, description="for calibrate=percentile")

    @model_validator(mode="after")
    def _calibrate_matches_dtype(self) -> QuantSpec:
        if self.dtype == "int8" and self.calibrate is None:
            raise ValueError(f"int8 needs a calibrate mode, one of: {', '.join(CALIBRATE_MODES)}")
        if self.dtype != "int8" and self.calibrate is not None:
            raise ValueError(f"calibrate={self.calibrate!r} applies to int8 only, not {self.dtype}")
        return self

    @property
    def preset(self) -> str:
        """The preset name: ``fp32``, ``fp16`` or ``int8-<mode>``."""
        return self.dtype if self.calibrate is None else f"{self.dtype}-{self.calibrate}"

    @classmethod
    def from_preset(cls, name: str, *, per_channel: bool = True) -> QuantSpec:
        """Build a spec from a preset name such as ``int8-percentile``."""
        if name not in PRESETS:
            raise ConfigError(
                f"unknown quantization preset {name!r}{_suggest(name, PRESETS)}",
                f"use one of: {', '.join(PRESETS)}",
            )
        dtype, _, mode = name.partition("-")
        return cls(dtype=dtype, calibrate=mode or None, per_channel=per_channel)


class ExportOptions(BaseModel):
    """How the checkpoint is turned into ONNX (defaults follow the seed: opset 11, probs)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    opset: int = Field(default=11, ge=7, le=20, description="ONNX opset; mmcls models need 11 or later")
    logits: bool = Field(default=False, description="output raw logits instead of softmax probabilities")
    dynamic_batch: bool = Field(default=False, description="symbolic batch dimension instead of batch 1")


def default_store_url() -> str:
    """`ZOOFLOW_STORE` if set, else a per-user data directory."""
    env = os.environ.get(STORE_ENV)
    if env:
        return env
    return str(Path(platformdirs.user_data_dir("zooflow")) / "store")


_SHA_RE = re.compile(r"^[0-9a-f]{8,64}$")


class RunConfig(BaseModel):
    """Everything one `deploy_classifier` run needs; the flow's parameter form in the UI."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(default=registry.DEFAULT_MODEL, description="name in mmcls's model index")
    checkpoint: str | None = Field(
        default=None,
        description="http(s) URL, file:// URL or local path; default: the model index's published weights",
    )
    checkpoint_sha256: str | None = Field(
        default=None, description="expected SHA-256 of the checkpoint (full, or a prefix of 8+ hex digits)"
    )
    demo: bool = Field(default=False, description="offline demo: locally initialised weights, no download")
    seed: int = Field(default=0, ge=0, description="seed for demo weights and sampling")
    export: ExportOptions = Field(default_factory=ExportOptions)
    quant: QuantSpec = Field(default_factory=QuantSpec, description="a preset name or a full spec")
    store: str | None = Field(default=None, description=f"artifact store path or fsspec URL; default ${STORE_ENV}")

    @field_validator("model")
    @classmethod
    def _known_model(cls, value: str) -> str:
        try:
            registry.resolve(value)
        except UnknownModelError as exc:
            raise ValueError(exc.problem) from None
        return value

    @field_validator("quant", mode="before")
    @classmethod
    def _preset(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return QuantSpec.from_preset(value)
            except ConfigError as exc:
                raise ValueError(f"{exc.problem}; use one of: {', '.join(PRESETS)}") from None
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
    def _demo_is_offline(self) -> RunConfig:
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
        if err["type"] == "extra_forbidden":
            known = _field_names(model_cls, tuple(err["loc"][:-1])) if model_cls else []
            msg = f"unknown option{_suggest(str(err['loc'][-1]), known)}; check its spelling"
            if known:
                msg += f" (options: {', '.join(known)})"
        lines.append(f"{field}: {msg}")
    return "\n".join(lines)


def build(model_cls: type[BaseModel], **values: Any) -> Any:
    """Validate values into `model_cls`, raising `ConfigError` with a readable message."""
    try:
        return model_cls(**values)
    except ValidationError as exc:
        raise ConfigError(
            f"invalid {model_cls.__name__}:\n{describe_validation_error(exc, model_cls)}",
            "correct the value(s) named above; `zooflow run --help` lists the options",
        ) from None
