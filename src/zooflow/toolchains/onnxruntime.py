"""The embedded toolchain: ONNX Runtime on the CPU, standing in for the card.

compile:
- fp32: the export simplified with onnxslim, then ONNX Runtime's offline graph optimisation
  (``ORT_ENABLE_EXTENDED``: fusions that stay valid on any x86/ARM CPU), saved.
- fp16: the simplified graph with float16 weights and activations (inputs/outputs stay float32),
  ONNX Runtime's own converter. On CPUs without fp16 kernels ORT computes in fp32 between casts,
  so the numbers show fp16 rounding, not fp16 speed.
- int8: static QDQ quantisation (uint8 activations, int8 weights, per-channel or per-tensor).
  Activation ranges come from the calibration set, preprocessed exactly like the model's input:
  ``max`` = min/max (MinMax calibrator); ``percentile`` = ORT's percentile calibrator at the
  spec's percentile; ``kl_divergence`` = ORT's entropy calibrator; ``mse`` = the range that
  minimises the expected quantisation error over ORT's value histogram (written here: no
  library offers it). Per-channel QDQ needs opset 13, so the graph is upgraded first.

Memory: ORT's calibrators keep every activation of what one ``collect_data`` call sees, so the
calibration set is fed in chunks of ``calibration_chunk`` images: histograms and ranges merge
across calls and peak memory depends on the chunk, not on the number of images.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from zooflow import provenance
from zooflow.config import BenchmarkSpec, ExportOptions, QuantSpec, ToolchainOptions
from zooflow.errors import ZooflowError
from zooflow.npz import KEY, NpzParams
from zooflow.preprocess import Transform, load_rgb
from zooflow.store import ArtifactRef, Store
from zooflow.toolchains import Availability, compiled_name
from zooflow.toolchains import outputs as outputs_mod

COMPILE_STAGE = "compile"
COMPILE_VERSION = "1"
BENCH_STAGE = "benchmark"
BENCH_VERSION = "1"
QDQ_OPSET = 13
# onnxslim keeps its fusion-pattern registry in module globals: two `slim` calls in parallel
# threads (a sweep compiles its presets together) corrupt each other's matches (IndexError in
# concat_reshape). Slimming takes a second; it runs one at a time, the rest of a compile does not.
_SLIM_LOCK = threading.Lock()
_MODES = {"max": "MinMax", "percentile": "Percentile", "kl_divergence": "Entropy", "mse": "Distribution"}


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def session(path: Path, threads: int = 0) -> Any:
    """A CPU InferenceSession with `threads` intra-op threads (0 = ORT's default: all cores)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def mse_range(
    hist: np.ndarray, edges: np.ndarray, lowest: float, highest: float, levels: int = 256
) -> tuple[float, float]:
    """The clipping range [a, b] that minimises expected squared quantisation error over a histogram.

    Error per value x: clipping error (x - clip(x, a, b))^2 outside the range, uniform rounding
    noise step^2/12 inside it, with step = (b - a) / (levels - 1). Candidates shrink the
    observed range symmetrically around zero in 128 steps. (Own code: no library provides an
    MSE calibrator for ONNX Runtime.)
    """
    centers = (edges[:-1] + edges[1:]) / 2.0
    counts = hist.astype(np.float64)
    amax = max(abs(lowest), abs(highest))
    if amax == 0.0:
        return 0.0, 0.0
    best = (np.inf, lowest, highest)
    for fraction in np.linspace(1.0 / 128, 1.0, 128):
        a, b = max(lowest, -amax * fraction), min(highest, amax * fraction)
        if b <= a:
            continue
        step = (b - a) / (levels - 1)
        clipped = np.clip(centers, a, b)
        inside = (centers >= a) & (centers <= b)
        error = float(np.sum(counts * (centers - clipped) ** 2) + np.sum(counts[inside]) * step * step / 12.0)
        if error < best[0]:
            best = (error, a, b)
    return float(best[1]), float(best[2])


class _ChunkReader:
    """One ``collect_data`` call's input: the chunk as one batch, or image by image for batch-1 models."""

    def __init__(self, batch: np.ndarray, input_name: str, per_image: bool) -> None:
        self.items = [{input_name: batch[i : i + 1]} for i in range(len(batch))] if per_image else [{input_name: batch}]

    def get_next(self) -> dict[str, np.ndarray] | None:
        return self.items.pop(0) if self.items else None


class OnnxRuntimeToolchain:
    """Compile, run and benchmark with ONNX Runtime on this machine's CPU."""

    name = "onnxruntime"
    concurrent_runs = True  # CPU sessions in parallel threads (each shard its own session)

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
        return {"toolchain": self.name, **provenance.library_versions("onnxruntime", "onnx", "onnxslim")}

    def input_params(self, preprocess: dict[str, Any]) -> NpzParams:
        return NpzParams.for_format("model", preprocess, None)

    def export_options(self, requested: ExportOptions) -> ExportOptions:
        if requested.dynamic_batch is None:  # batched inference and batch-8 benchmarks need it
            return requested.model_copy(update={"dynamic_batch": True})
        return requested

    def compile(
        self, onnx: ArtifactRef, calibration: ArtifactRef | None, quant: QuantSpec, store: Store
    ) -> ArtifactRef:
        import onnx as onnx_lib
        import onnxslim

        source = store.path(onnx)
        started = time.perf_counter()
        with store.staging("compile") as staged, tempfile.TemporaryDirectory() as tmp:
            slim = Path(tmp) / "slim.onnx"
            with _SLIM_LOCK:
                slimmed = onnxslim.slim(str(source))
            onnx_lib.save(slimmed, str(slim))
            out = staged / "model.onnx"
            details: dict[str, Any] = {"preset": quant.preset, "per_channel": quant.per_channel}
            if quant.dtype == "fp32":
                self._optimize(slim, out)
            elif quant.dtype == "fp16":
                from onnxruntime.transformers.float16 import convert_float_to_float16

                onnx_lib.save(convert_float_to_float16(onnx_lib.load(str(slim)), keep_io_types=True), str(out))
            else:
                if calibration is None:
                    raise ZooflowError("int8 compilation needs a calibration set", "run the calibration stage first")
                details.update(self._quantize(slim, out, quant, calibration, onnx, store, Path(tmp)))
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
                params={"quant": quant.model_dump(), "calibration_chunk": self.options.calibration_chunk},
                inputs=inputs,
                meta={
                    **details,
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

    def calibration_batches(self, calibration: ArtifactRef, onnx: ArtifactRef, store: Store) -> Iterator[np.ndarray]:
        """The calibration images, preprocessed exactly like the model's input, in chunks."""
        transform = Transform.from_spec(onnx.meta["preprocess"])
        doc = json.loads(store.path(calibration, "calibration.json").read_text())
        folder = store.directory(calibration) / "images"
        files = [folder / entry["file"] for entry in doc["images"]]
        chunk = self.options.calibration_chunk
        for start in range(0, len(files), chunk):
            yield np.stack(
                [transform.normalize(transform.crop_uint8(load_rgb(f)[0])) for f in files[start : start + chunk]]
            )

    def _quantize(
        self,
        slim: Path,
        out: Path,
        quant: QuantSpec,
        calibration: ArtifactRef,
        onnx: ArtifactRef,
        store: Store,
        tmp: Path,
    ) -> dict[str, Any]:
        import onnx as onnx_lib
        from onnx import version_converter
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.calibrate import TensorData, TensorsData, create_calibrator, save_tensors_data
        from onnxruntime.quantization.shape_inference import quant_pre_process

        model = onnx_lib.load(str(slim))
        opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
        if opset < QDQ_OPSET:
            model = version_converter.convert_version(model, QDQ_OPSET)
        upgraded, prepared = tmp / "opset.onnx", tmp / "prepared.onnx"
        onnx_lib.save(model, str(upgraded))
        quant_pre_process(str(upgraded), str(prepared), skip_symbolic_shape=True)

        assert quant.calibrate is not None
        method = getattr(CalibrationMethod, _MODES[quant.calibrate])
        extra = {"CalibPercentile": quant.percentile} if quant.calibrate == "percentile" else {}
        calibrator = create_calibrator(
            str(prepared),
            None,
            augmented_model_path=str(tmp / "augmented.onnx"),
            calibrate_method=method,
            extra_options=extra,
        )
        input_name = calibrator.infer_session.get_inputs()[0].name
        per_image = not onnx.meta.get("dynamic_batch", False)
        used = 0
        for batch in self.calibration_batches(calibration, onnx, store):
            calibrator.collect_data(_ChunkReader(batch, input_name, per_image))
            used += len(batch)
        if quant.calibrate == "mse":
            ranges = {}
            for tensor, (hist, edges, lowest, highest, *_rest) in calibrator.collector.histogram_dict.items():
                a, b = mse_range(hist, edges.astype(np.float64), float(lowest), float(highest))
                ranges[tensor] = TensorData(lowest=np.array(a, np.float32), highest=np.array(b, np.float32))
            tensors, method = TensorsData(CalibrationMethod.MinMax, ranges), CalibrationMethod.MinMax
        else:
            tensors = calibrator.compute_data()
        del calibrator
        cache = tmp / "ranges.json"
        save_tensors_data(tensors, cache)
        quantize_static(
            str(prepared),
            str(out),
            None,
            quant_format=QuantFormat.QDQ,
            per_channel=quant.per_channel,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=method,
            calibration_cache_path=str(cache),
        )
        return {
            "calibration_images": used,
            "calibrate": quant.calibrate,
            "ort_calibrator": _MODES[quant.calibrate]
            if quant.calibrate != "mse"
            else "Distribution histogram + zooflow MSE search",
            "percentile": quant.percentile if quant.calibrate == "percentile" else None,
            "opset": max(opset, QDQ_OPSET),
            "format": "QDQ, uint8 activations, int8 weights",
        }


def measure(path: Path, shape: list[Any], spec: BenchmarkSpec, *, dynamic: bool) -> list[dict[str, Any]]:
    """Throughput and latency per (batch, threads): warm-up, then `trials` x `iterations` timed runs."""
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
                    "throughput": float(np.median(trial_rates)),
                    "throughput_min": float(np.min(trial_rates)),
                    "throughput_max": float(np.max(trial_rates)),
                    "throughput_std": float(np.std(trial_rates)),
                    "latency_ms": {f"p{p}": float(np.percentile(lat_ms, p)) for p in (50, 90, 95, 99)}
                    | {"mean": float(lat_ms.mean())},
                }
            )
    return results
