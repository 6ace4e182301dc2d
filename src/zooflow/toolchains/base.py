"""What every toolchain shares: the protocol, the tool error, availability, labels and names.

The package face (`zooflow.toolchains`) re-exports these and adds the registry (`get`, `require`),
which imports the toolchains; the toolchains themselves import only this module, so no cycle runs
through the package.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from zooflow.config import BenchmarkSpec, ExportOptions, QuantSpec, ToolchainName, ToolchainOptions
from zooflow.errors import ZooflowError
from zooflow.npz import NpzParams
from zooflow.store import ArtifactRef, Store

NAMES: tuple[ToolchainName, ...] = ("onnxruntime", "vastai")
DEVICE_TAG = "zooflow-device"  # tasks that touch the accelerator; give this tag a concurrency limit of 1
# The fidelity reference every run is compared with: the fp32 export through the embedded toolchain
# (always available, so a Vastai run is measured against the same numbers as a laptop run).
REFERENCE_TOOLCHAIN: ToolchainName = "onnxruntime"
REFERENCE_QUANT = QuantSpec(dtype="fp32")


class ToolchainUnavailableError(ZooflowError):
    """The selected toolchain cannot run on this machine."""


class ToolError(ZooflowError):
    """An external tool failed (non-zero exit, timeout, missing or empty output, unreadable output)."""

    def __init__(self, problem: str, fix: str | None = None, *, log: str = "") -> None:
        super().__init__(problem, fix)
        self.log = log

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_tool_error, (self.problem, self.fix, self.log))


def _rebuild_tool_error(problem: str, fix: str | None, log: str) -> ToolError:
    return ToolError(problem, fix, log=log)


@dataclass(frozen=True)
class Availability:
    """Whether a toolchain can run here, and why not."""

    ok: bool
    reason: str = ""


class Toolchain(Protocol):
    """What every toolchain offers."""

    name: str
    options: ToolchainOptions
    concurrent_runs: bool  # whether run shards (of one or several presets) may run at the same time

    @property
    def stage_versions(self) -> Mapping[str, str]:
        """The core's version of each stage it implements ("compile", "benchmark"): part of that task's
        cache key, so a compile that now records more (or computes differently) is redone, not served stale."""

    def available(self) -> Availability:
        """Whether it can run on this machine (with the reason when not)."""

    def fingerprint(self) -> dict[str, str]:
        """Tool versions; part of every compile/run cache key (an upgraded compiler misses the cache)."""

    def input_params(self, preprocess: dict[str, Any]) -> NpzParams:
        """The npz format (and its parameters) this toolchain reads, for a model's preprocessing."""

    def export_options(self, requested: ExportOptions) -> ExportOptions:
        """The export settings it needs, filling in what the user left to it (e.g. dynamic batch)."""

    def compile(
        self,
        onnx: ArtifactRef,
        calibration: ArtifactRef | None,
        quant: QuantSpec,
        store: Store,
        float_layers: Sequence[str] = (),
    ) -> ArtifactRef:
        """Compile the ONNX for `quant` (int8 uses `calibration`) into a compiled-model artifact;
        int8-mixed keeps `float_layers` (ONNX node names, most sensitive first) in float where it can."""

    def run_shard(self, compiled: ArtifactRef, shard: ArtifactRef, store: Store) -> ArtifactRef:
        """Run the compiled model over one npz shard; an ``outputs-shard`` artifact (by record index)."""

    def benchmark(self, compiled: ArtifactRef, spec: BenchmarkSpec, store: Store) -> ArtifactRef:
        """Measure throughput and latency; a ``benchmark`` artifact (raw tool output kept)."""


def setting_label(result: dict[str, Any]) -> str:
    """``batch 8, 1 thread(s)``: the setting of one benchmark result (threads only where measured)."""
    return f"batch {result['batch']}" + (f", {result['threads']} thread(s)" if "threads" in result else "")


INT8_CHECKS = ("kernel_check", "range_check")  # the int8 compile checks that can warn


def int8_warnings(meta: Mapping[str, Any] | None) -> dict[str, str]:
    """A compiled model's int8 warnings by check (kernels that saturate, ranges that clip); empty for none."""
    found = {key: ((meta or {}).get(key) or {}).get("warning") for key in INT8_CHECKS}
    return {key: said for key, said in found.items() if said}


def quant_label(quant: QuantSpec) -> str:
    """The preset name, with ``-k<K>`` for int8-mixed with K layers in float, marked ``-per-tensor`` for
    int8 without per-channel weights."""
    kept = f"-k{quant.keep_float}" if isinstance(quant.keep_float, int) else ""
    return quant.preset + kept + ("-per-tensor" if quant.dtype == "int8" and not quant.per_channel else "")


def compiled_name(onnx: ArtifactRef, toolchain: str, quant: QuantSpec) -> str:
    """``<model>/<toolchain>/<preset>``: the logical name of a compiled model."""
    model = onnx.name.rsplit("/", 1)[0] if onnx.name else "model"
    return f"{model}/{toolchain}/{quant_label(quant)}"
