"""Toolchains: what compiles and runs a model. One protocol, a registry, no branching elsewhere.

- ``onnxruntime`` (embedded, always available): compiles fp32/fp16/int8 ONNX with ONNX Runtime,
  runs and benchmarks it on the CPU. It stands in for the card on any laptop.
- ``vastai``: writes ``vamc`` configs and ``vdsp_params``, runs ``vamc`` and ``vamp`` from PATH.

Flows and tasks call `get(name)` and the protocol's methods; they never test the name.
"""

from __future__ import annotations

from zooflow.config import ToolchainOptions
from zooflow.toolchains.base import (
    DEVICE_TAG,
    INT8_CHECKS,
    NAMES,
    REFERENCE_QUANT,
    REFERENCE_TOOLCHAIN,
    Availability,
    Toolchain,
    ToolchainUnavailableError,
    ToolError,
    compiled_name,
    int8_warnings,
    quant_label,
    setting_label,
)

__all__ = [
    "DEVICE_TAG",
    "INT8_CHECKS",
    "NAMES",
    "REFERENCE_QUANT",
    "REFERENCE_TOOLCHAIN",
    "Availability",
    "ToolError",
    "Toolchain",
    "ToolchainUnavailableError",
    "compiled_name",
    "get",
    "int8_warnings",
    "quant_label",
    "require",
    "setting_label",
]


def get(name: str, options: ToolchainOptions | None = None) -> Toolchain:
    """The toolchain registered under `name`."""
    options = options or ToolchainOptions()
    if name == "onnxruntime":
        from zooflow.toolchains.onnxruntime import OnnxRuntimeToolchain

        return OnnxRuntimeToolchain(options)
    if name == "vastai":
        from zooflow.toolchains.vastai import VastaiToolchain

        return VastaiToolchain(options)
    raise ToolchainUnavailableError(f"unknown toolchain {name!r}", f"use one of: {', '.join(NAMES)}")


def require(name: str, options: ToolchainOptions | None = None) -> Toolchain:
    """The toolchain, or an error with the reason and the alternative if it cannot run here."""
    toolchain = get(name, options)
    availability = toolchain.available()
    if not availability.ok:
        others = [n for n in NAMES if n != name and get(n, options).available().ok]
        raise ToolchainUnavailableError(
            f"toolchain {name!r} is not available here: {availability.reason}",
            f"use --toolchain {others[0]}" if others else "install the toolchain",
        )
    return toolchain
