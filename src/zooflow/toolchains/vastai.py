"""The Vastai toolchain: ``vamc`` compiles, ``vamp`` runs and profiles, on a host with the card.

Contract: ``docs`` of the project (shared/docs/vastai-toolchain.md). Configs and vdsp_params are
written from the typed schema in `zooflow.toolchains.vastai_schema`, never by hand. vamp is fed
what the zoo's image2npz writes (full-resolution RGB, the DSP resizes) and gets no ``-s``/``-d``
unless the user asks. The compiled model is found after the compile as the three files that
share a prefix, whatever layout the vamc release writes.

Every tool run: an argument list (no shell), a timeout (the whole process group is killed),
stdout+stderr kept. A non-zero exit, a timeout, a missing or empty output file, or output that
cannot be parsed is a `ToolError` that carries the log tail; the log itself is stored as a
``tool-log`` artifact so the attempt can be inspected, and nothing earlier stages produced is lost.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import yaml

from zooflow import interrupts, provenance
from zooflow.config import BenchmarkSpec, ExportOptions, QuantSpec, ToolchainOptions
from zooflow.filehash import stamp
from zooflow.npz import NpzParams
from zooflow.store import ArtifactRef, Store
from zooflow.toolchains import outputs as outputs_mod
from zooflow.toolchains.base import Availability, ToolError, compiled_name
from zooflow.toolchains.vastai_schema import dump, percentile_used, skip_lists, vamc_config, vdsp_params

COMPILE_STAGE = "compile"
COMPILE_VERSION = "3"  # 2: published vdsp enums/DTypes, v2 fp16 keeps its dataset block, found by prefix;
# 3: v3 configs hold only keys published classification configs have (no calibrate_range)
# (int8-mixed's skip lists enter through the quant spec and the layers, both in the compile key)
BENCH_STAGE = "benchmark"
BENCH_VERSION = "3"  # 2: no -s/-d unless asked; 3: v3 passes -s [3,H,W], as the zoo's v3-era pages
COMPILED_SUFFIXES = (".so", ".json", ".params")  # library, graph, weights
_OUTPUT_RE = re.compile(r"^output_(\d{6})\.npz$")


# ----------------------------------------------------------------------------- running tools
def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def run_tool(args: list[str], *, cwd: Path, timeout: float, log: Path) -> str:
    """Run a tool; its stdout+stderr go to `log` (and are returned). Failures raise `ToolError`."""
    tool = Path(args[0]).name
    with open(log, "w", encoding="utf-8", errors="replace") as out:
        out.write(f"$ {' '.join(args)}\n")
        out.flush()
        try:
            with interrupts.spawning():
                proc = subprocess.Popen(args, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as exc:
            raise ToolError(
                f"cannot start {tool}: {exc.strerror}", f"check that {tool} is installed and executable"
            ) from None
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the tool and anything it started
            proc.wait()
            text = log.read_text(errors="replace")
            raise ToolError(
                f"{tool} did not finish within {timeout:g} s and was stopped; last output:\n{_tail(text)}",
                f"raise the {tool} timeout if the model is large, or check the card",
                log=text,
            ) from None
    text = log.read_text(errors="replace")
    if code != 0:
        raise ToolError(
            f"{tool} exited with status {code}; last output:\n{_tail(text)}", f"read {tool}'s message above", log=text
        )
    return text


_DISTRIBUTION_PROBE = """
import hashlib, importlib.metadata as m, json, os, sys
name, script = sys.argv[1], os.path.realpath(sys.argv[2])
found = []
for ep in m.entry_points(group="console_scripts"):
    if ep.name == name and ep.dist is not None:
        files = {os.path.realpath(str(ep.dist.locate_file(f))) for f in ep.dist.files or ()}
        found.append((script in files, ep.dist))
found.sort(key=lambda pair: not pair[0])
if found:
    d = found[0][1]
    record = d.read_text("RECORD") or ""
    print(json.dumps({"name": d.metadata["Name"], "version": d.version,
                      "record_sha256": hashlib.sha256(record.encode()).hexdigest()[:16],
                      "record_path": next((os.path.realpath(str(d.locate_file(f))) for f in d.files or ()
                                           if f.name == "RECORD" and f.parent.name.endswith(".dist-info")), "")}))
"""

# Identity of a tool file as the filesystem sees it (path, device, then `filehash.stamp`): replacing
# or rewriting it (a new binary, a pip install that rewrites its console script or RECORD) changes it.
_FileStat = tuple[str, int, tuple[int, int, int, int]]
# tool_fingerprint's answers in this process, keyed by the files they were read from and the
# environment (a tool's answer can depend on it, e.g. LD_LIBRARY_PATH): a flow asks for the
# fingerprint in every task, and each `--version` is a process start (about 0.3 s here, more on a
# real host); the key makes an upgrade on disk, or a changed environment, recompute it.
_FINGERPRINTS: dict[tuple[str, _FileStat, int], tuple[tuple[str, str], _FileStat | None]] = {}


def _file_stat(path: str) -> _FileStat | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (os.path.realpath(path), st.st_dev, stamp(st))


def model_name(onnx: ArtifactRef) -> str:
    """A file-name-safe model name for vamc (``shufflenet_v1_1x_16xb64_in1k``)."""
    base = onnx.name.rsplit("/", 1)[0] if onnx.name else "model"
    return re.sub(r"[^A-Za-z0-9]+", "_", base).strip("_")


def _interpreter(path: Path) -> str | None:
    """The Python interpreter of a console-script wrapper (its ``#!`` line), or None for a binary."""
    with open(path, "rb") as fh:
        first = fh.readline(512)
    if not first.startswith(b"#!") or b"python" not in first:
        return None
    words = first[2:].decode(errors="replace").split()
    return words[1] if words and Path(words[0]).name == "env" and len(words) > 1 else (words[0] if words else None)


def tool_fingerprint(tool: str) -> tuple[str, str]:
    """(identity, how it was found) of a tool on PATH: its ``--version`` where it answers; for a
    pip-installed console script the distribution's version and RECORD (every installed file's
    hash), since the wrapper script is the same across versions; else the executable's hash."""
    path = shutil.which(tool)
    if path is None:
        return "missing", "not on PATH"
    stat = _file_stat(path)
    key = None if stat is None else (tool, stat, hash(frozenset(os.environ.items())))
    if key is not None:
        known = _FINGERPRINTS.get(key)
        if known is not None and (known[1] is None or _file_stat(known[1][0]) == known[1]):
            return known[0]
    found, record = _identify(tool, path)
    if key is not None:
        _FINGERPRINTS[key] = (found, _file_stat(record) if record else None)
    return found


def _capture(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """``subprocess.run(args, capture_output=True, text=True)``, started through the interrupt gate."""
    with interrupts.spawning():
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def _identify(tool: str, path: str) -> tuple[tuple[str, str], str]:
    """tool_fingerprint's work, uncached: (identity, how found) and the RECORD file it came from ('' if none)."""
    try:
        done = _capture([path, "--version"], timeout=30)
        first = (done.stdout or done.stderr).strip().splitlines()
        if done.returncode == 0 and first:
            return (first[0].strip(), "--version"), ""
    except (OSError, subprocess.SubprocessError):
        pass
    python = _interpreter(Path(path))
    if python:
        try:
            probe = _capture([python, "-c", _DISTRIBUTION_PROBE, tool, path], timeout=60)
            if probe.returncode == 0 and probe.stdout.strip():
                info = json.loads(probe.stdout.strip().splitlines()[-1])
                return (
                    f"{info['name']} {info['version']} (RECORD sha256:{info['record_sha256']})",
                    "installed distribution (importlib.metadata)",
                ), str(info.get("record_path") or "")
        except (OSError, subprocess.SubprocessError, ValueError, KeyError):
            pass
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
    return (f"sha256:{digest}", "executable hash (no --version, no Python distribution)"), ""


def find_compiled(root: Path) -> Path:
    """The compiled model under `root`: the prefix of the one .so/.json/.params triple (none empty).

    vamc releases write different layouts (``<name>-int8-max-3_224_224-vacc/<name>``,
    ``...-1_1_256_256-vacc/mod``, ``<name>/mod``), so the model is found, not computed.
    """
    groups: dict[Path, dict[str, int]] = {}
    for f in sorted(root.rglob("*")):
        if f.is_file() and f.suffix in COMPILED_SUFFIXES:
            groups.setdefault(f.with_suffix(""), {})[f.suffix] = f.stat().st_size
    complete = [p for p, g in groups.items() if len(g) == 3 and all(g.values())]
    if len(complete) == 1:
        return complete[0]

    def describe(prefix: Path, sizes: dict[str, int]) -> str:
        parts = [f"{s[1:]}{'' if sizes[s] else ' (empty)'}" for s in COMPILED_SUFFIXES if s in sizes]
        missing = [s[1:] for s in COMPILED_SUFFIXES if s not in sizes]
        return f"{prefix.relative_to(root)}: {', '.join(parts)}" + (
            f"; missing {', '.join(missing)}" if missing else ""
        )

    if complete:
        raise ToolError(
            f"vamc's work folder holds {len(complete)} complete compiled models, so which one is this compile's "
            f"is ambiguous: {'; '.join(str(p.relative_to(root)) for p in complete)}",
            "zooflow gives vamc an empty work folder per compile; check the config's workspace path",
        )
    candidates = {p: g for p, g in groups.items() if ".so" in g or ".params" in g}
    found = "; ".join(describe(p, g) for p, g in candidates.items()) or "no .so or .params file at all"
    raise ToolError(
        f"vamc reported success but the compiled model is incomplete (it needs .so, .json and .params sharing a "
        f"prefix, none empty); found under {root.name}: {found}",
        "check vamc's log for warnings; the config it was given is kept with the attempt",
    )


_NUMBER = r"([-+]?\d+(?:\.\d+)?)"


def parse_vamp(text: str) -> dict[str, Any]:
    """Read vamp's printed block field by field (each field optional; raw text kept by the caller)."""

    def field(label: str, source: str = text) -> float | None:
        match = re.search(rf"{re.escape(label)}\s*:\s*{_NUMBER}", source)
        return float(match.group(1)) if match else None

    def latencies(section: str) -> dict[str, float] | None:
        match = re.search(rf"{re.escape(section)}\s*:?\s*\n((?:\s+\w+ latency\s*:.*\n?)+)", text)
        if not match:
            return None
        values = {k: field(f"{k} latency", match.group(1)) for k in ("avg", "min", "max", "p50", "p90", "p95", "p99")}
        return {k: v for k, v in values.items() if v is not None}

    result: dict[str, Any] = {
        "instances": field("number of instances in each device"),
        "batch": field("batch size"),
        "ai_utilize_percent": field("ai utilize (%)"),
        "temperature_c": field("temperature (°C)"),
        "card_power_w": field("card power (W)"),
        "die_memory_mb": field("die memory used (MB)"),
        "throughput": field("throughput (qps)"),
        "e2e_latency_us": latencies("e2e latency (us)"),
        "model_latency_us": latencies("model latency (us)"),
    }
    return {k: v for k, v in result.items() if v is not None}


def pair_outputs(folder: Path, count: int) -> list[Path]:
    """``output_%06d.npz`` for lines 0..count-1; a missing, extra (stale) or misnamed file is an error."""
    from zooflow.outdir import MARKER

    files = {p.name: p for p in folder.iterdir() if p.name != MARKER}  # zooflow's own export marker is no output
    numbered = {int(m.group(1)): p for name, p in files.items() if (m := _OUTPUT_RE.match(name))}
    missing = [i for i in range(count) if i not in numbered]
    extra = sorted(set(numbered) - set(range(count)))
    strays = sorted(name for name in files if not _OUTPUT_RE.match(name))
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing (first: output_{missing[0]:06d}.npz)")
    if extra:
        problems.append(
            f"{len(extra)} beyond the datalist's {count} lines (first: output_{extra[0]:06d}.npz), stale or extra"
        )
    if strays:
        problems.append(f"unexpected files: {', '.join(strays[:5])}")
    if problems:
        raise ToolError(
            f"vamp's outputs do not pair with the datalist of {count} lines: " + "; ".join(problems),
            "outputs are paired by line index, so any mismatch would shift every pair; rerun vamp into an empty folder",
        )
    return [numbered[i] for i in range(count)]


class VastaiToolchain:
    """``vamc`` + ``vamp`` from PATH (the real tools, or the test suite's emulators)."""

    name = "vastai"
    concurrent_runs = False  # one card: vamp runs queue behind each other (compiles still run together)
    stage_versions = MappingProxyType({"compile": COMPILE_VERSION, "benchmark": BENCH_VERSION})

    def __init__(self, options: ToolchainOptions) -> None:
        self.options = options
        self._fingerprint: dict[str, str] | None = None

    def available(self) -> Availability:
        missing = [tool for tool in ("vamc", "vamp") if shutil.which(tool) is None]
        if missing:
            return Availability(False, f"{' and '.join(missing)} not found on PATH (they exist only on Vastai hosts)")
        return Availability(True)

    def fingerprint(self) -> dict[str, str]:
        if self._fingerprint is None:
            found = {tool: tool_fingerprint(tool) for tool in ("vamc", "vamp")}
            self._fingerprint = {
                "toolchain": self.name,
                "vamc": found["vamc"][0],
                "vamc_source": found["vamc"][1],
                "vamp": found["vamp"][0],
                "vamp_source": found["vamp"][1],
                "generation": self.options.vamc_generation,
            }
        return self._fingerprint

    def input_params(self, preprocess: dict[str, Any]) -> NpzParams:
        """image2npz's format: full resolution (the DSP resizes), unless host pre-resizing was asked for."""
        return NpzParams.for_format("vastai", None, self.options.pre_resize)

    def export_options(self, requested: ExportOptions) -> ExportOptions:
        if requested.dynamic_batch is None:  # the seed's static [1, 3, 224, 224]
            return requested.model_copy(update={"dynamic_batch": False})
        return requested

    def _keep_log(self, store: Store, log: Path, name: str, stage: str) -> str:
        """Store a failed attempt's log as a ``tool-log`` artifact; returns its digest prefix."""
        with store.staging(stage) as staged:
            shutil.copyfile(log, staged / log.name)
            ref = store.commit(
                staged,
                kind="tool-log",
                name=f"{name}/attempts",
                stage=stage,
                stage_version="1",
                toolchain=self.fingerprint(),
            )
        return ref.short

    def compile(
        self,
        onnx: ArtifactRef,
        calibration: ArtifactRef | None,
        quant: QuantSpec,
        store: Store,
        float_layers: Sequence[str] = (),
    ) -> ArtifactRef:
        generation = self.options.vamc_generation
        skip = skip_lists(generation, store.path(onnx), list(float_layers)) if quant.mixed else None
        preprocess = onnx.meta["preprocess"]
        reads_calibration = quant.dtype == "int8" or generation == "v2"  # v2 fp16 keeps the dataset block
        calib_doc = (
            json.loads(store.path(calibration, "calibration.json").read_text())
            if calibration and reads_calibration
            else None
        )
        logical = compiled_name(onnx, self.name, quant)
        config = vamc_config(
            generation,
            name=model_name(onnx),
            onnx_path=store.path(onnx),
            input_shape=[1, 3, *preprocess["crop"]],
            quant=quant,
            preprocess=preprocess,
            calibration_dir=store.directory(calibration) / "images" if calib_doc and calibration else None,
            calibration_count=calib_doc["count"] if calib_doc else 0,
            suffix=(calib_doc["suffixes"][0] if calib_doc and calib_doc["suffixes"] else "JPEG"),
            workspace=Path("deploy_weights"),  # relative to vamc's working folder: the config stays reproducible
            skip=skip["lists"] if skip else None,
            calibrate_range=self.options.vamc_calibrate_range,
        )
        with store.staging("compile") as staged, tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            text = yaml.safe_dump(dump(config), sort_keys=False)
            (work / "vamc_config.yaml").write_text(text)
            (staged / "vamc_config.yaml").write_text(text)
            log = staged / "vamc.log"
            vamc = shutil.which("vamc") or "vamc"
            try:
                run_tool(
                    [vamc, "build" if generation == "v2" else "compile", "vamc_config.yaml"],
                    cwd=work,
                    timeout=self.options.vamc_timeout,
                    log=log,
                )
                try:
                    prefix = find_compiled(work / "deploy_weights")
                except ToolError as exc:
                    text = log.read_text(errors="replace")
                    raise ToolError(f"{exc.problem}; last output:\n{_tail(text)}", exc.fix, log=text) from None
            except ToolError as exc:
                kept = self._keep_log(store, log, logical, COMPILE_STAGE)
                raise ToolError(
                    exc.problem + f"\n(vamc's log is kept as artifact {kept})", exc.fix, log=exc.log
                ) from None
            for suffix in COMPILED_SUFFIXES:
                shutil.copyfile(prefix.with_suffix(suffix), staged / (prefix.name + suffix))
            (staged / "vdsp_params.json").write_text(json.dumps(vdsp_params(generation, preprocess), indent=4))
            return store.commit(
                staged,
                kind="compiled",
                name=logical,
                stage=COMPILE_STAGE,
                stage_version=COMPILE_VERSION,
                params={"quant": quant.model_dump(), "generation": generation},
                inputs={"onnx": onnx, **({"calibration": calibration} if calib_doc and calibration else {})},
                meta={
                    "toolchain": self.name,
                    "preset": quant.preset,
                    "prefix": prefix.name,
                    "layout": str(prefix.relative_to(work)),
                    "generation": generation,
                    "calibration_images": calib_doc["count"] if calib_doc and quant.dtype == "int8" else 0,
                    "percentile": percentile_used(generation, quant, self.options.vamc_calibrate_range),
                    **(
                        {"calibrate_range": self.options.vamc_calibrate_range}
                        if self.options.vamc_calibrate_range is not None
                        else {}
                    ),
                    **({"float_layers": skip} if skip else {}),
                    "output": onnx.meta.get("output", {}),
                    "preprocess": preprocess,
                },
                toolchain=self.fingerprint(),
            )

    def _vamp(self, compiled: ArtifactRef, store: Store, batch: int, extra: list[str]) -> list[str]:
        """vamp's argument list: the seed's flags (v2), plus ``-s [3,H,W]`` from the model's input on v3 as
        every v3-era mmcls page of the zoo passes it; ``-d`` and anything else only where the user asked."""
        folder = store.directory(compiled)
        crop = (compiled.meta.get("preprocess") or {}).get("crop")
        shape = (
            ["-s", f"[3,{crop[0]},{crop[1]}]"]
            if compiled.meta.get("generation") == "v3" and crop and "-s" not in self.options.vamp_args
            else []
        )
        return [
            shutil.which("vamp") or "vamp",
            "-m",
            str(folder / compiled.meta["prefix"]),
            "--vdsp_params",
            str(folder / "vdsp_params.json"),
            "-i",
            str(self.options.vamp_instances),
            "-p",
            str(self.options.vamp_processes),
            "-b",
            str(batch),
            *shape,
            *(["-d", str(self.options.device)] if self.options.device is not None else []),
            *self.options.vamp_args,
            *extra,
        ]

    def run_shard(self, compiled: ArtifactRef, shard: ArtifactRef, store: Store) -> ArtifactRef:
        records = outputs_mod.shard_records(store, shard)
        shard_dir = store.directory(shard)
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            datalist, out = work / "datalist.txt", work / "outputs"
            out.mkdir()
            datalist.write_text("".join(f"{shard_dir / file}\n" for _, _, _, file in records))
            log = work / "vamp.log"
            args = self._vamp(
                compiled, store, self.options.vamp_batch, ["--datalist", str(datalist), "--path_output", str(out)]
            )
            try:
                run_tool(args, cwd=work, timeout=self.options.vamp_timeout, log=log)
                files = pair_outputs(out, len(records))
                rows = []
                for f in files:
                    with np.load(f) as data:
                        if "output_0" not in data:
                            raise ToolError(
                                f"{f.name} has no output_0 (keys: {', '.join(data.keys())})",
                                "check the model's outputs",
                            )
                        rows.append(np.asarray(data["output_0"]).reshape(-1))
            except ToolError as exc:
                kept = self._keep_log(store, log, compiled.name or "vastai", "run")
                raise ToolError(
                    exc.problem + f"\n(vamp's log is kept as artifact {kept})", exc.fix, log=exc.log
                ) from None
            meta = {
                "output_name": compiled.meta["output"].get("name"),
                "semantics": compiled.meta["output"].get("semantics"),
                "vamp": parse_vamp(log.read_text(errors="replace")),
            }
            return outputs_mod.commit_shard(
                store,
                np.array([r[0] for r in records]),
                [r[1] for r in records],
                np.stack(rows) if rows else np.zeros((0, 0), np.float16),
                compiled=compiled,
                shard=shard,
                meta=meta,
                toolchain=self.fingerprint(),
            )

    def benchmark(self, compiled: ArtifactRef, spec: BenchmarkSpec, store: Store) -> ArtifactRef:
        results, raw = [], {}
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            for batch in spec.batch_sizes:
                log = work / f"vamp-b{batch}.log"
                try:
                    text = run_tool(
                        self._vamp(compiled, store, batch, []),
                        cwd=work,
                        timeout=self.options.vamp_timeout,
                        log=log,
                    )
                except ToolError as exc:
                    kept = self._keep_log(store, log, compiled.name or "vastai", BENCH_STAGE)
                    raise ToolError(
                        exc.problem + f"\n(vamp's log is kept as artifact {kept})", exc.fix, log=exc.log
                    ) from None
                parsed = parse_vamp(text)
                if "throughput" not in parsed:
                    kept = self._keep_log(store, log, compiled.name or "vastai", BENCH_STAGE)
                    raise ToolError(
                        f"vamp's output has no 'throughput (qps)' field (kept as artifact {kept}); last output:\n{_tail(text)}",
                        "check the vamp version: zooflow reads the 2024 block format",
                        log=text,
                    )
                e2e = parsed.get("e2e_latency_us", {})
                results.append(
                    {
                        "batch": batch,
                        "throughput": parsed["throughput"],
                        "latency_ms": {k: v / 1000 for k, v in e2e.items() if k in ("p50", "p90", "p95", "p99")}
                        | ({"mean": e2e["avg"] / 1000} if "avg" in e2e else {}),
                        "vamp": parsed,
                    }
                )
                raw[f"vamp-b{batch}.log"] = text
            with store.staging("benchmark") as staged:
                for name, text in raw.items():
                    (staged / name).write_text(text)
                (staged / "benchmark.json").write_text(
                    json.dumps({"spec": spec.model_dump(), "results": results}, indent=1)
                )
                return store.commit(
                    staged,
                    kind="benchmark",
                    stage=BENCH_STAGE,
                    stage_version=BENCH_VERSION,
                    params={
                        **spec.model_dump(),
                        "instances": self.options.vamp_instances,
                        "processes": self.options.vamp_processes,
                    },
                    inputs={"compiled": compiled},
                    meta={"results": results},
                    libraries=provenance.library_versions("numpy"),
                    toolchain=self.fingerprint(),
                )
