"""The embedded toolchain: ONNX Runtime on the CPU, standing in for the card.

compile:
- fp32: the export simplified with onnxslim, then ONNX Runtime's offline graph optimisation
  (``ORT_ENABLE_EXTENDED``: fusions that stay valid on any x86/ARM CPU), saved.
- fp16: the simplified graph with float16 weights and activations (inputs/outputs stay float32),
  ONNX Runtime's own converter. On CPUs without fp16 kernels ORT computes in fp32 between casts,
  so the numbers show fp16 rounding, not fp16 speed.
- int8: static QDQ quantisation, uint8 activations, per-channel (or per-tensor) weights in the
  scheme this CPU computes exactly (`zooflow.toolchains.cpu`: full-range int8 with VNNI or on
  ARM, 7-bit int8 on x86 without VNNI, where full-range weights saturate ORT's kernels).
  Activation ranges come from the calibration set, preprocessed exactly like the model's input,
  by `zooflow.toolchains.ranges` (max, percentile, TensorRT's KL search, MSE search), written as
  ORT's calibration cache for ``quantize_static``. Per-channel QDQ needs opset 13, so the graph
  is upgraded first. Every int8 compile then checks its kernels: SQNR vs fp32 through ORT's
  integer kernels and through float (graph optimisation off) on the first calibration images;
  the gap is recorded, and a gap over 3 dB is flagged in the metadata and the report.

Memory: the calibration set is fed in chunks of ``calibration_chunk`` images; the statistics are
sums over images, so the chunk changes peak memory and nothing else.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from zooflow import provenance
from zooflow.config import BenchmarkSpec, ExportOptions, QuantSpec, ToolchainOptions
from zooflow.errors import ZooflowError
from zooflow.metrics import sqnr_db
from zooflow.npz import KEY, NpzParams
from zooflow.preprocess import Transform, load_rgb
from zooflow.store import ArtifactRef, Store
from zooflow.toolchains import outputs as outputs_mod
from zooflow.toolchains import ranges as ranges_mod
from zooflow.toolchains.base import Availability, compiled_name
from zooflow.toolchains.cpu import Int8Scheme, cpu_model, int8_scheme
from zooflow.toolchains.rangecheck import range_check, range_warning, used_ranges
from zooflow.toolchains.sensitivity import FLOAT_FILE, keep_in_float

COMPILE_STAGE = "compile"
# 3: int8 models carry their float graph (float.onnx); 4: int8-mixed keeps adds/pools/input in float too;
# 5: int8 metadata has the range check (values clipped, clipping SQNR, warning);
# 6: the range check reads the ranges the compiled file applies (ORT fixes Softmax's, int8-mixed drops some)
COMPILE_VERSION = "6"
PREPARED_FILE = "prepared.onnx"  # `prepare_for_qdq`'s output
BENCH_STAGE = "benchmark"
BENCH_VERSION = "1"
QDQ_OPSET = 13
# onnxslim keeps its fusion-pattern registry in module globals: two `slim` calls in parallel
# threads (a sweep compiles its presets together) corrupt each other's matches (IndexError in
# concat_reshape). Slimming takes a second; it runs one at a time, the rest of a compile does not.
_SLIM_LOCK = threading.Lock()
KERNEL_CHECK_IMAGES = 16
KERNEL_GAP_LIMIT_DB = 3.0
# tensors whose values are exactly another's (a reshape or transpose of it): measured once, same range
_VALUE_PRESERVING = frozenset({"Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Identity"})
_WEIGHT_TYPES = {"int8": ("QInt8", False), "int8-reduced": ("QInt8", True), "uint8": ("QUInt8", False)}
_METHODS = {
    "max": "min/max over the set",
    "percentile": "percentile of |x| ({percentile}) over a {bins}-bin histogram",
    "kl_divergence": "TensorRT entropy: KL search over {bins} bins of non-zero |x|, 128 quantized bins per side "
    "of zero (256 for tensors that are never negative)",
    "mse": "MSE search over {bins} bin edges of |x| (clipping + rounding noise; exact zeros excluded)",
}


Measured = tuple[ranges_mod.Statistics, dict[str, str]]  # statistics, and the tensors that alias a measured one


class StatisticsCache:
    """Calibration statistics per (ONNX, calibration set), shared by the compiles of one process.

    A sweep's int8 modes read the same images through the same model: with this, the set is run
    once (twice with histograms), not once per mode. Deterministic either way (the statistics are
    sums over images); the compile metadata says whether they were computed or reused.
    """

    def __init__(self, size: int = 4) -> None:
        self.size = size
        self._items: OrderedDict[tuple[str, str], Measured] = OrderedDict()
        self._guard = threading.Lock()
        self._locks: dict[tuple[str, str], threading.Lock] = {}

    def get(self, key: tuple[str, str], histograms: bool, compute: Callable[[], Measured]) -> tuple[Measured, bool]:
        """(statistics and aliases, reused) for `key`: computed by `compute` unless held with what `histograms` needs."""
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:  # a second compile of the same set waits for the first, then reuses its statistics
            with self._guard:
                held = self._items.get(key)
            if held is not None and (held[0].counts is not None or not histograms):
                return held, True
            stats = compute()
            with self._guard:
                self._items[key] = stats
                self._items.move_to_end(key)
                while len(self._items) > self.size:
                    self._items.popitem(last=False)
            return stats, False

    def clear(self) -> None:
        with self._guard:
            self._items.clear()


STATISTICS = StatisticsCache()


def session(path: Path, threads: int = 0, *, optimize: bool = True) -> Any:
    """A CPU InferenceSession with `threads` intra-op threads (0 = ORT's default: all cores).

    ``optimize=False`` turns graph optimisation off: a QDQ model is then computed in float
    (DequantizeLinear -> float op -> QuantizeLinear), not by the integer kernels.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def slim_model(source: Path, out: Path) -> Path:
    """The export simplified by onnxslim (constant folding, conv+BN fusion), saved at `out`."""
    import onnx as onnx_lib
    import onnxslim

    with _SLIM_LOCK:
        slimmed = onnxslim.slim(str(source))
    onnx_lib.save(slimmed, str(out))
    return out


def prepare_for_qdq(slim: Path, tmp: Path) -> tuple[Path, int]:
    """(the graph static quantisation works on: at opset 13 or later, shapes inferred; the original opset)."""
    import onnx as onnx_lib
    from onnx import version_converter
    from onnxruntime.quantization.shape_inference import quant_pre_process

    model = onnx_lib.load(str(slim))
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if opset < QDQ_OPSET:
        model = version_converter.convert_version(model, QDQ_OPSET)
    upgraded, prepared = tmp / "opset.onnx", tmp / PREPARED_FILE
    onnx_lib.save(model, str(upgraded))
    quant_pre_process(str(upgraded), str(prepared), skip_symbolic_shape=True)
    return prepared, opset


def value_aliases(model: Any, tensors: set[str]) -> dict[str, str]:
    """Tensors holding exactly the values of an earlier one (reshapes, transposes), mapped to that one."""
    source: dict[str, str] = {}
    for node in model.graph.node:  # topological order: chains resolve to their first tensor
        if node.op_type in _VALUE_PRESERVING and node.input and node.output[0] in tensors and node.input[0] in tensors:
            source[node.output[0]] = source.get(node.input[0], node.input[0])
    return source


def kernel_check(model: Path, reference: Path, batch: np.ndarray, *, per_image: bool = False) -> dict[str, Any]:
    """SQNR vs the fp32 model of an int8 QDQ model through ORT's integer kernels and computed in float."""

    def outputs(path: Path, optimize: bool = True) -> np.ndarray:
        sess = session(path, optimize=optimize)
        name = sess.get_inputs()[0].name
        feeds = [batch[i : i + 1] for i in range(len(batch))] if per_image else [batch]
        return np.concatenate([sess.run(None, {name: x})[0] for x in feeds])

    expected = outputs(reference)
    integer, floating = sqnr_db(outputs(model), expected), sqnr_db(outputs(model, optimize=False), expected)
    gap = floating - integer
    check: dict[str, Any] = {
        "images": len(batch),
        "sqnr_integer_db": round(integer, 2),
        "sqnr_float_db": round(floating, 2),
        "gap_db": round(gap, 2),
        "limit_db": KERNEL_GAP_LIMIT_DB,
    }
    if gap > KERNEL_GAP_LIMIT_DB:
        check["warning"] = (
            f"ORT's integer kernels lose {gap:.1f} dB against the same model computed in float: they saturate "
            "on this CPU; compile with --int8-weights int8-reduced or uint8"
        )
    return check


class OnnxRuntimeToolchain:
    """Compile, run and benchmark with ONNX Runtime on this machine's CPU."""

    name = "onnxruntime"
    concurrent_runs = True  # CPU sessions in parallel threads (each shard its own session)
    stage_versions = MappingProxyType({"compile": COMPILE_VERSION, "benchmark": BENCH_VERSION})

    def __init__(self, options: ToolchainOptions) -> None:
        self.options = options

    # ------------------------------------------------------------------ protocol
    def available(self) -> Availability:
        try:
            import onnxruntime  # noqa: F401
        except ImportError as exc:  # pragma: no cover - a dependency of the project
            return Availability(False, f"onnxruntime cannot be imported ({exc})")
        return Availability(True)

    def fingerprint(self) -> dict[str, str]:
        scheme = self.int8_scheme()
        return {
            "toolchain": self.name,
            **provenance.library_versions("onnxruntime", "onnx", "onnxslim"),
            "int8_weights": scheme.weights,  # what int8 compiles write
            "int8_kernels": scheme.kernels,  # what computes them: the numbers of every run depend on it
        }

    def int8_scheme(self) -> Int8Scheme:
        """The int8 weight scheme for this CPU (or the one the options ask for)."""
        return int8_scheme(self.options.int8_weights)

    def input_params(self, preprocess: dict[str, Any]) -> NpzParams:
        return NpzParams.for_format("model", preprocess, None)

    def export_options(self, requested: ExportOptions) -> ExportOptions:
        if requested.dynamic_batch is None:  # batched inference and batch-8 benchmarks need it
            return requested.model_copy(update={"dynamic_batch": True})
        return requested

    def compile(
        self,
        onnx: ArtifactRef,
        calibration: ArtifactRef | None,
        quant: QuantSpec,
        store: Store,
        float_layers: Sequence[str] = (),
    ) -> ArtifactRef:
        import onnx as onnx_lib

        source = store.path(onnx)
        started = time.perf_counter()
        with store.staging("compile") as staged, tempfile.TemporaryDirectory() as tmp:
            slim = slim_model(source, Path(tmp) / "slim.onnx")
            out = staged / "model.onnx"
            # the compile version is content: a compile that now records more is a new artifact, not the old
            # manifest (the store keeps the first producer's metadata for the same bytes)
            details: dict[str, Any] = {
                "preset": quant.preset,
                "per_channel": quant.per_channel,
                "compile_version": COMPILE_VERSION,
            }
            checks: dict[str, Any] = {}
            if quant.dtype == "fp32":
                self._optimize(slim, out)
            elif quant.dtype == "fp16":
                from onnxruntime.transformers.float16 import convert_float_to_float16

                onnx_lib.save(convert_float_to_float16(onnx_lib.load(str(slim)), keep_io_types=True), str(out))
            else:
                if calibration is None:
                    raise ZooflowError("int8 compilation needs a calibration set", "run the calibration stage first")
                quantized, how, (stats, aliases) = self._quantize(slim, out, quant, calibration, onnx, store, Path(tmp))
                details.update(quantized)
                checks.update(how)
                # the graph it was quantised from (same node names): what sensitivity and int8-mixed read
                shutil.copyfile(Path(tmp) / PREPARED_FILE, staged / FLOAT_FILE)
                if quant.mixed:
                    details["float_layers"] = keep_in_float(out, staged / FLOAT_FILE, quant, float_layers)
                checks["range_check"] = range_check(stats, used_ranges(out), aliases)  # what the file applies
                scheme = self.int8_scheme()
                checks["int8_scheme"] = scheme.as_dict() | {"onnxruntime": provenance.library_versions("onnxruntime")}
                first = next(self.calibration_batches(calibration, onnx, store, chunk=KERNEL_CHECK_IMAGES))
                per_image = not onnx.meta.get("dynamic_batch", False)
                checks["kernel_check"] = kernel_check(out, slim, first, per_image=per_image) | {
                    "on": "the first calibration images"
                }
                warning = range_warning(quant.calibrate or "", checks["kernel_check"], checks["range_check"])
                if warning:
                    checks["range_check"]["warning"] = warning
                checks["calibration_chunk"] = self.options.calibration_chunk  # memory only: results do not depend on it
            # content holds only what determines the model; the time taken goes to the manifest's metadata,
            # so recompiling the same inputs gives the same digest (and no new version, benchmark or report)
            (staged / "compile.json").write_text(json.dumps(details, indent=1, sort_keys=True))
            session(out)  # it must load
            inputs = {"onnx": onnx, **({"calibration": calibration} if quant.dtype == "int8" and calibration else {})}
            return store.commit(
                staged,
                kind="compiled",
                name=compiled_name(onnx, self.name, quant),
                stage=COMPILE_STAGE,
                stage_version=COMPILE_VERSION,
                params={"quant": quant.model_dump()},
                inputs=inputs,
                meta={
                    **details,
                    **checks,
                    "compile_seconds": round(time.perf_counter() - started, 2),
                    "toolchain": self.name,
                    "model_file": "model.onnx",
                    "output": onnx.meta.get("output", {}),
                    "dynamic_batch": onnx.meta.get("dynamic_batch", False),
                    "preprocess": onnx.meta.get("preprocess"),
                    "input_shape": onnx.meta.get("input", {}).get("shape"),
                },
                libraries=provenance.library_versions("onnxruntime", "onnx", "onnxslim"),
                toolchain=self.fingerprint(),
            )

    def run_shard(self, compiled: ArtifactRef, shard: ArtifactRef, store: Store) -> ArtifactRef:
        sess = session(store.path(compiled, "model.onnx"), self.options.run_threads)
        name = sess.get_inputs()[0].name
        records = outputs_mod.shard_records(store, shard)
        # normalise as the shard's format says (the dsp format has its own mean/std), else as the model does
        shard_params = store.manifest(shard.digest).producer.params
        transform = (
            Transform.from_dict(shard_params["transform"])
            if shard_params.get("transform")
            else Transform.from_spec(compiled.meta["preprocess"])
        )
        batch = self.options.run_batch if compiled.meta.get("dynamic_batch") else 1
        folder = store.directory(shard)
        rows = []
        for start in range(0, len(records), batch):
            arrays = []
            for _, _, _, file in records[start : start + batch]:
                with np.load(folder / file) as data:
                    arrays.append(transform.normalize(data[KEY]))
            rows.append(sess.run(None, {name: np.stack(arrays)})[0])
        out = np.concatenate(rows) if rows else np.zeros((0, 0), np.float32)
        meta = {
            "output_name": compiled.meta["output"].get("name"),
            "semantics": compiled.meta["output"].get("semantics"),
            "batch": batch,
            "threads": self.options.run_threads,
        }
        return outputs_mod.commit_shard(
            store,
            np.array([r[0] for r in records]),
            [r[1] for r in records],
            out,
            compiled=compiled,
            shard=shard,
            meta=meta,
            toolchain=self.fingerprint(),
        )

    def benchmark(self, compiled: ArtifactRef, spec: BenchmarkSpec, store: Store) -> ArtifactRef:
        path = store.path(compiled, "model.onnx")
        shape = list(compiled.meta.get("input_shape") or [1, 3, 224, 224])
        results = measure(path, shape, spec, dynamic=bool(compiled.meta.get("dynamic_batch")))
        import onnxruntime as ort

        with store.staging("benchmark") as staged:
            doc = {
                "cpu": cpu_model(),
                "cores": os.cpu_count(),
                "onnxruntime": ort.__version__,
                "spec": spec.model_dump(),
                "results": results,
            }
            (staged / "benchmark.json").write_text(json.dumps(doc, indent=1, sort_keys=True))
            return store.commit(
                staged,
                kind="benchmark",
                stage=BENCH_STAGE,
                stage_version=BENCH_VERSION,
                params=spec.model_dump(),
                inputs={"compiled": compiled},
                meta={"cpu": doc["cpu"], "onnxruntime": doc["onnxruntime"], "results": results},
                toolchain=self.fingerprint(),
            )

    # ---------------------------------------------------------------- internals
    def _optimize(self, source: Path, out: Path) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.optimized_model_filepath = str(out)
        ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])

    def calibration_batches(
        self, calibration: ArtifactRef, onnx: ArtifactRef, store: Store, *, chunk: int | None = None
    ) -> Iterator[np.ndarray]:
        """The calibration images, preprocessed exactly like the model's input, in chunks."""
        transform = Transform.from_spec(onnx.meta["preprocess"])
        doc = json.loads(store.path(calibration, "calibration.json").read_text())
        folder = store.directory(calibration) / "images"
        files = [folder / entry["file"] for entry in doc["images"]]
        chunk = chunk or self.options.calibration_chunk
        for start in range(0, len(files), chunk):
            yield np.stack(
                [transform.normalize(transform.crop_uint8(load_rgb(f)[0])) for f in files[start : start + chunk]]
            )

    def calibration_statistics(
        self, prepared: Path, calibration: ArtifactRef, onnx: ArtifactRef, store: Store, *, histograms: bool
    ) -> tuple[ranges_mod.Statistics, dict[str, str]]:
        """Statistics of every tensor ORT's quantizer needs a range for, and the tensors that alias another."""
        import onnx as onnx_lib
        from onnxruntime.quantization.calibrate import CalibraterBase

        base = CalibraterBase(prepared)  # the model with shape inference, and ORT's choice of tensors
        tensors, value_infos = base.select_tensors_to_calibrate(base.model)
        model = base.model
        aliases = value_aliases(model, tensors)
        measured = sorted(tensors - aliases.keys())
        outputs = {o.name for o in model.graph.output}
        model.graph.output.extend(value_infos[name] for name in measured if name not in outputs)
        with tempfile.TemporaryDirectory() as tmp:
            augmented = Path(tmp) / "augmented.onnx"
            onnx_lib.save(model, str(augmented))
            sess = session(augmented, optimize=False)  # the float graph as written: every tensor by its name
        input_name = sess.get_inputs()[0].name
        per_image = not onnx.meta.get("dynamic_batch", False)

        def run(batch: np.ndarray) -> list[np.ndarray]:
            if not per_image:
                return list(sess.run(measured, {input_name: batch}))
            parts = [sess.run(measured, {input_name: batch[i : i + 1]}) for i in range(len(batch))]
            return [np.concatenate([p[k] for p in parts]) for k in range(len(measured))]

        stats = ranges_mod.collect(
            run, lambda: self.calibration_batches(calibration, onnx, store), measured, histograms=histograms
        )
        return stats, aliases

    def _quantize(
        self,
        slim: Path,
        out: Path,
        quant: QuantSpec,
        calibration: ArtifactRef,
        onnx: ArtifactRef,
        store: Store,
        tmp: Path,
    ) -> tuple[dict[str, Any], dict[str, Any], tuple[ranges_mod.Statistics, dict[str, str]]]:
        """Quantize `slim` into `out`: (what determines the model, for compile.json; how it went, for metadata;
        the calibration statistics and tensor aliases, for the range check)."""
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.calibrate import TensorData, TensorsData, save_tensors_data

        prepared, opset = prepare_for_qdq(slim, tmp)
        assert quant.calibrate is not None
        started = time.perf_counter()
        histograms = quant.calibrate != "max"
        (stats, aliases), reused = STATISTICS.get(
            (onnx.digest, calibration.digest),
            histograms,
            lambda: self.calibration_statistics(prepared, calibration, onnx, store, histograms=histograms),
        )
        found = ranges_mod.ranges(stats, quant.calibrate, percentile=quant.percentile)
        found.update({alias: found[source] for alias, source in aliases.items()})
        calibrate_seconds = time.perf_counter() - started
        tensors = TensorsData(
            CalibrationMethod.MinMax,
            {
                name: TensorData(lowest=np.array(low, np.float32), highest=np.array(high, np.float32))
                for name, (low, high) in sorted(found.items())
            },
        )
        cache = tmp / "ranges.json"
        save_tensors_data(tensors, cache)
        scheme = self.int8_scheme()
        weight_type, reduce_range = _WEIGHT_TYPES[scheme.weights]
        quantize_static(
            str(prepared),
            str(out),
            None,
            quant_format=QuantFormat.QDQ,
            per_channel=quant.per_channel,
            reduce_range=reduce_range,
            activation_type=QuantType.QUInt8,
            weight_type=getattr(QuantType, weight_type),
            calibrate_method=CalibrationMethod.MinMax,
            calibration_cache_path=str(cache),
        )
        return (
            {
                "calibration_images": stats.images,
                "calibrate": quant.calibrate,
                "calibration_method": _METHODS[quant.calibrate].format(
                    percentile=quant.percentile, bins=ranges_mod.BINS
                ),
                "calibrated_tensors": len(found),
                "percentile": quant.percentile if quant.calibrate == "percentile" else None,
                "histogram_bins": ranges_mod.BINS if quant.calibrate != "max" else None,
                "opset": max(opset, QDQ_OPSET),
                "format": f"QDQ, uint8 activations, {scheme.description}",
                "int8_weights": scheme.weights,
            },
            {
                "calibrate_seconds": round(calibrate_seconds, 2),
                "calibration_statistics": "reused from an earlier compile of the same ONNX and calibration set"
                if reused
                else "computed",
            },
            (stats, aliases),
        )


def measure(path: Path, shape: list[Any], spec: BenchmarkSpec, *, dynamic: bool) -> list[dict[str, Any]]:
    """Throughput and latency per (batch, threads): warm-up, then `trials` x `iterations` timed runs.

    Throughput is the median over trials (robust to a noisy neighbour), with its spread: min, max,
    and the quartiles (IQR), as stored in every benchmark artifact.
    """
    results = []
    rng = np.random.default_rng(0)
    for threads in spec.threads:
        sess = session(path, threads)
        name = sess.get_inputs()[0].name
        for batch in spec.batch_sizes:
            if not dynamic and batch != 1:
                results.append({"batch": batch, "threads": threads, "skipped": "model has a fixed batch of 1"})
                continue
            x = rng.standard_normal((batch, *[int(d) for d in shape[1:]]), dtype=np.float32)
            feed = {name: x}
            for _ in range(spec.warmup):
                sess.run(None, feed)
            latencies, trial_rates = [], []
            for _ in range(spec.trials):
                started = time.perf_counter()
                for _ in range(spec.iterations):
                    t0 = time.perf_counter()
                    sess.run(None, feed)
                    latencies.append(time.perf_counter() - t0)
                trial_rates.append(batch * spec.iterations / (time.perf_counter() - started))
            lat_ms = np.asarray(latencies) * 1e3
            results.append(
                {
                    "batch": batch,
                    "threads": threads,
                    **spread(trial_rates, "throughput"),
                    "latency_ms": {f"p{p}": float(np.percentile(lat_ms, p)) for p in (50, 90, 95, 99)}
                    | {"mean": float(lat_ms.mean())},
                }
            )
    return results


def spread(values: list[float], key: str) -> dict[str, float]:
    """``key`` (the median of `values`) with its spread: ``key_min``, ``key_max``, quartiles and IQR, std."""
    v = np.asarray(values, dtype=np.float64)
    p25, p50, p75 = (float(x) for x in np.percentile(v, [25, 50, 75]))
    return {
        key: p50,
        f"{key}_min": float(v.min()),
        f"{key}_max": float(v.max()),
        f"{key}_p25": p25,
        f"{key}_p75": p75,
        f"{key}_iqr": p75 - p25,
        f"{key}_std": float(v.std()),
    }
