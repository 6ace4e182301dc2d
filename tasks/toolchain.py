"""Toolchain tasks: compile, run (per npz shard, on the device), collect outputs, benchmark.

Every key includes the toolchain's fingerprint (tool versions), so an upgraded compiler misses
the cache. The device-touching tasks carry `DEVICE_TAG`: give it a concurrency limit of 1
(``prefect concurrency-limit create zooflow-device 1``) and timings never overlap across runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from prefect import task

from tasks._cache import ArtifactCachePolicy, remember, resumable
from tasks.ui import publish
from zooflow import provenance, toolchains
from zooflow.config import BenchmarkSpec, QuantSpec, ToolchainOptions
from zooflow.store import ArtifactRef, open_store
from zooflow.toolchains import DEVICE_TAG
from zooflow.toolchains import outputs as outputs_mod


def mixed_summary(kept: Any) -> str:
    """The layers int8-mixed keeps in float, as one line (embedded: a list; vastai: what vamc was given)."""
    if isinstance(kept, list):
        return ", ".join(k["module"] for k in kept)
    passed = ", ".join(f"{k['key']}[{k['index']}]" for k in kept["passed"]) or "none"
    refused = "; ".join(f"{k['node']}: {k['reason']}" for k in kept["refused"])
    return f"passed to vamc: {passed}" + (f"; not passed: {refused}" if refused else "")


def _fingerprint(inputs: Mapping[str, Any]) -> Mapping[str, Any]:
    return {"fingerprint": toolchains.get(inputs["toolchain"], inputs.get("toolchain_options")).fingerprint()}


def _versioned(stage: str) -> Callable[[Mapping[str, Any]], Mapping[str, Any]]:
    """The fingerprint plus the toolchain's own version of `stage`: bumping the core's COMPILE_VERSION
    (or BENCH_VERSION) misses every cached compile (benchmark) of that toolchain, as it says."""

    def extra(inputs: Mapping[str, Any]) -> Mapping[str, Any]:
        tc = toolchains.get(inputs["toolchain"], inputs.get("toolchain_options"))
        return {"fingerprint": tc.fingerprint(), "stage_version": tc.stage_versions[stage]}

    return extra


# Settings that never change a result (memory, patience) and each toolchain's own settings: a key
# holds only what the task's toolchain reads, so tuning vamp does not recompute the embedded fp32 reference.
_NEUTRAL = ("calibration_chunk", "vamc_timeout", "vamp_timeout")
_OWN = {
    "onnxruntime": ("int8_weights", "run_batch", "run_threads"),
    "vastai": (
        "vamc_generation",
        "vamc_calibrate_range",
        "vamp_instances",
        "vamp_processes",
        "vamp_batch",
        "device",
        "vamp_args",
        "pre_resize",
    ),
}


def _own_options(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The inputs with `toolchain_options` cut to the settings the task's toolchain reads."""
    relevant = dict(inputs)
    options = relevant.get("toolchain_options")
    if isinstance(options, ToolchainOptions):
        mine = set(_OWN.get(str(relevant.get("toolchain")), ()))
        others = {f for fields in _OWN.values() for f in fields} - mine
        relevant["toolchain_options"] = options.model_copy(
            update={f: ToolchainOptions.model_fields[f].default for f in (*_NEUTRAL, *others)}
        )
    return relevant


def _compile_inputs(inputs: Mapping[str, Any]) -> Mapping[str, Any]:
    """fp32/fp16 do not read the calibration set (vamc v2 fp16 configs name it): it stays out of their key."""
    relevant = _own_options(inputs)
    options = inputs.get("toolchain_options")
    v2 = inputs.get("toolchain") == "vastai" and getattr(options, "vamc_generation", "v2") == "v2"
    if getattr(inputs["quant"], "dtype", None) != "int8" and not v2:
        relevant.pop("calibration", None)
    return relevant


COMPILE_POLICY = ArtifactCachePolicy(
    stage="compile", stage_version="3", extra=_versioned("compile"), relevant=_compile_inputs
)
RUN_POLICY = ArtifactCachePolicy(stage="run", stage_version="2", extra=_fingerprint, relevant=_own_options)


def _fingerprint_and_host(inputs: Mapping[str, Any]) -> Mapping[str, Any]:
    """A measurement is reusable on the machine that took it, with the same tools."""
    return {**_versioned("benchmark")(inputs), "host": provenance.host()}


BENCH_POLICY = ArtifactCachePolicy(
    stage="benchmark",
    stage_version="3",
    extra=_fingerprint_and_host,
    relevant=_own_options,
    per_run=lambda inputs: bool(inputs["spec"].fresh),
)


@task(name="compile", cache_policy=COMPILE_POLICY, persist_result=True, result_serializer="json")
@resumable
def compile_model(
    onnx: ArtifactRef,
    calibration: ArtifactRef,
    quant: QuantSpec,
    toolchain: str,
    toolchain_options: ToolchainOptions,
    store_url: str,
    float_layers: tuple[str, ...] = (),
) -> ArtifactRef:
    """Compile the ONNX for the quantization spec with the selected toolchain (int8-mixed: `float_layers`,
    the sensitivity ranking's first K, stay in float)."""
    store = open_store(store_url)
    tc = toolchains.get(toolchain, toolchain_options)
    ref = tc.compile(onnx, calibration, quant, store, float_layers=float_layers)
    remember(ref)  # first: a kill while publishing must not lose the record
    rows = {"toolchain": toolchain, "preset": toolchains.quant_label(quant), "fingerprint": tc.fingerprint()}
    rows.update(
        {
            k: ref.meta[k]
            for k in ("calibration_images", "compile_seconds", "calibration_method", "format")
            if ref.meta.get(k)
        }
    )
    check = ref.meta.get("kernel_check")
    if check:
        rows["int8 kernels vs float (dB)"] = (
            f"{check['sqnr_integer_db']} vs {check['sqnr_float_db']} SQNR (gap {check['gap_db']})"
            + (f": {check['warning']}" if check.get("warning") else "")
        )
    ranges_warning = toolchains.int8_warnings(ref.meta).get("range_check")
    if ranges_warning:
        rows["int8 ranges"] = ranges_warning
    kept = ref.meta.get("float_layers")
    if kept:
        rows["kept in float"] = mixed_summary(kept)
    if ref.meta.get("int8_scheme"):
        rows["int8 scheme"] = ref.meta["int8_scheme"]["reason"]
    publish(ref, f"Compiled {toolchains.quant_label(quant)} ({toolchain})", rows)
    return ref


@task(name="run-shard", cache_policy=RUN_POLICY, persist_result=True, result_serializer="json", tags=[DEVICE_TAG])
@resumable
def run_shard(
    compiled: ArtifactRef, shard: ArtifactRef, toolchain: str, toolchain_options: ToolchainOptions, store_url: str
) -> ArtifactRef:
    """Run the compiled model over one npz shard."""
    store = open_store(store_url)
    return remember(toolchains.get(toolchain, toolchain_options).run_shard(compiled, shard, store))


@task(name="outputs", cache_policy=RUN_POLICY, persist_result=True, result_serializer="json")
@resumable
def collect_outputs(
    compiled: ArtifactRef,
    npz: ArtifactRef,
    shards: list[ArtifactRef],
    toolchain: str,
    toolchain_options: ToolchainOptions,
    store_url: str,
) -> ArtifactRef:
    """Join the per-shard outputs, checked to cover every npz record once."""
    store = open_store(store_url)
    tc = toolchains.get(toolchain, toolchain_options)
    return remember(outputs_mod.assemble(store, shards, compiled=compiled, npz=npz, toolchain=tc.fingerprint()))


@task(name="benchmark", cache_policy=BENCH_POLICY, persist_result=True, result_serializer="json", tags=[DEVICE_TAG])
@resumable
def benchmark(
    compiled: ArtifactRef, spec: BenchmarkSpec, toolchain: str, toolchain_options: ToolchainOptions, store_url: str
) -> ArtifactRef:
    """Throughput and latency of the compiled model (reused on the same host unless `spec.fresh`)."""
    store = open_store(store_url)
    ref = toolchains.get(toolchain, toolchain_options).benchmark(compiled, spec, store)
    remember(ref)  # first: a kill while publishing must not lose the record
    table = {
        toolchains.setting_label(r): (
            r.get("skipped") or f"{r['throughput']:.1f} images/s, p99 {r['latency_ms'].get('p99', float('nan')):.2f} ms"
        )
        for r in ref.meta["results"]
    }
    base = (compiled.name or compiled.short).removesuffix("/compiled")
    publish(ref, f"Benchmark {compiled.meta.get('preset', '')} ({toolchain})", table, name=f"{base}/benchmark")
    return ref
