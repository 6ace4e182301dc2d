"""Comparisons across runs: the quantisation sweep's table and Pareto plot, and the nightly history.

- `sweep_rows` / `write_sweep`: one row per preset (top-1, top-5, drop vs fp32, agreement,
  throughput, p99 latency, verdict), stored as a ``sweep`` artifact with ``sweep.md``,
  ``sweep.json`` and ``pareto.png`` (accuracy vs throughput, the Pareto front marked).
- `night_rows` / `append_history` / `trend`: each night's results join a ``history`` artifact
  (a new version per night, holding every night so far); the trend report plots each
  model/preset over nights and, on a regression, names the first bad night and which inputs
  changed since the last good one (checkpoint, calibration set, toolchain fingerprint, code).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from zooflow.errors import ZooflowError
from zooflow.evaluate import load_metrics
from zooflow.gates import fmt
from zooflow.plots import pyplot, save_figure
from zooflow.report import html, pareto_plot
from zooflow.store import ArtifactRef, Store
from zooflow.toolchains import int8_warnings, setting_label


class RegressionError(ZooflowError):
    """Goals failed tonight; the message names each model/preset, its first bad night and what changed."""

    def __init__(self, found: Sequence[dict[str, Any]], *, trend_path: str) -> None:
        lines = []
        for reg in found:
            since = f", last good {reg['last_good_night']}" if reg["last_good_night"] else ", never passed"
            lines.append(f"{reg['model']} {reg['preset']}: failing since {reg['first_bad_night']}{since}")
            lines += [f"    {f}" for f in reg["failures"]]
            for key, change in reg["changed"].items():
                lines.append(f"    changed {key}: {_short(change['good'])} -> {_short(change['bad'])}")
        super().__init__(
            f"{len(found)} model/preset(s) failed their goals:\n  " + "\n  ".join(lines),
            f"the trend report says more: {trend_path}",
        )
        self.found = list(found)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_regression_error, (self.problem, self.fix))


def _rebuild_regression_error(problem: str, fix: str | None) -> ZooflowError:
    return ZooflowError(problem, fix)


STAGE = "compare"
STAGE_VERSION = "2"  # 2: agreement panel and int8-mixed K curve on the plot, throughput per K


def best_benchmark(results: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The measured setting with the highest throughput (skipped settings ignored)."""
    measured = [r for r in results if r.get("throughput") is not None]
    return max(measured, key=lambda r: r["throughput"]) if measured else None


FIXED_SETTING = {"batch": 8, "threads": 1}  # every preset is also compared at this one setting


def fixed_benchmark(results: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The result measured at `FIXED_SETTING` (batch 8, 1 thread), if it was measured."""
    return next(
        (
            r
            for r in results
            if r.get("throughput") is not None and all(r.get(k) == v for k, v in FIXED_SETTING.items())
        ),
        None,
    )


def _ratio(value: float | None, base: float | None) -> float | None:
    return value / base if value is not None and base else None


def _times(ratio: float | None) -> str:
    return f"{ratio:.2f}x" if ratio is not None else "n/a"


def sweep_rows(store: Store, entries: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One comparison row per preset from its evaluation, benchmark and compiled artifacts."""
    rows = []
    for entry in entries:
        evaluation: ArtifactRef = entry["evaluation"]
        metrics = load_metrics(store, evaluation)
        results = entry["benchmark"].meta.get("results", []) if entry.get("benchmark") else []
        bench, fixed = best_benchmark(results), fixed_benchmark(results)
        compiled: ArtifactRef | None = entry.get("compiled")
        check = (compiled.meta.get("kernel_check") if compiled else None) or {}
        warned = int8_warnings(compiled.meta if compiled else None)
        rows.append(
            {
                "preset": entry["preset"],
                "top1": metrics["top1"],
                "top5": metrics["top5"],
                "drop_top1": metrics.get("drop_top1"),
                "agreement": metrics.get("agreement"),
                "sqnr_db": metrics.get("sqnr_db"),
                "int8_weights": compiled.meta.get("int8_weights") if compiled else None,
                "float_layers": (entry.get("mixed") or {}).get("keep_float"),
                "mixed_search": (entry.get("mixed") or {}).get("tried"),
                "int8_gap_db": check.get("gap_db"),
                "int8_gap_warning": warned.get("kernel_check"),
                "range_warning": warned.get("range_check"),
                "throughput_fixed": fixed["throughput"] if fixed else None,
                "throughput_fixed_iqr": fixed.get("throughput_iqr") if fixed else None,
                "throughput": bench["throughput"] if bench else None,
                "latency_p99_ms": bench.get("latency_ms", {}).get("p99") if bench else None,
                "bench_setting": setting_label(bench) if bench else None,
                "passed": metrics["verdict"]["passed"],
                "evaluation": evaluation.digest,
            }
        )
    base = next((r for r in rows if r["preset"] == "fp32"), None)
    for r in rows:  # speed against the fp32 preset of the same sweep, at the fixed setting and at each one's best
        r["fixed_vs_fp32"] = _ratio(r["throughput_fixed"], base["throughput_fixed"] if base else None)
        r["best_vs_fp32"] = _ratio(r["throughput"], base["throughput"] if base else None)
    return rows


def sweep_markdown(rows: Sequence[dict[str, Any]], title: str, plot: str | None = None) -> str:
    """The comparison table (and the plot) as markdown."""
    fixed = f"batch {FIXED_SETTING['batch']}, {FIXED_SETTING['threads']} thread"
    out = [
        f"# {title}",
        "",
        f"| preset | top-1 | top-5 | drop vs fp32 | agreement | SQNR dB | int8 weights | layers in float "
        f"| integer vs float dB | images/s ({fixed}) | vs fp32 | best images/s | vs fp32 | at | p99 ms | gates |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        gap = fmt(r.get("int8_gap_db"), 1) + (" (saturates)" if r.get("int8_gap_warning") else "")
        spread = f" ± {fmt(r['throughput_fixed_iqr'] / 2, 1)}" if r.get("throughput_fixed_iqr") is not None else ""
        out.append(
            f"| {r['preset']} | {fmt(r['top1'])} | {fmt(r['top5'])} | {fmt(r['drop_top1'])} | "
            f"{fmt(r['agreement'])} | {fmt(r['sqnr_db'], 1)}{' (ranges clip)' if r.get('range_warning') else ''} | {r.get('int8_weights') or ''} | "
            f"{r.get('float_layers') or ''} | {gap if r.get('int8_gap_db') is not None else ''} | {fmt(r.get('throughput_fixed'), 1)}{spread} | "
            f"{_times(r.get('fixed_vs_fp32'))} | {fmt(r['throughput'], 1)} | {_times(r.get('best_vs_fp32'))} | "
            f"{r['bench_setting'] or 'n/a'} | {fmt(r['latency_p99_ms'])} | {'pass' if r['passed'] else 'FAIL'} |"
        )
    out += [
        "",
        "Agreement and SQNR: against the fp32 reference on the same images. Integer vs float: SQNR lost by ORT's "
        "integer kernels against the same int8 model computed in float, at compile (over 3 dB: the kernels "
        f"saturate). Throughput: median over trials (± half the IQR) at {fixed}, and at each preset's best setting.",
    ]
    for r in rows:
        if r.get("mixed_search"):
            tried = ", ".join(
                f"K={t['keep_float']}: {fmt(t['agreement'])}% / {fmt(t['sqnr_db'], 1)} dB / "
                f"{fmt(t.get('throughput'), 1)} images/s"
                for t in r["mixed_search"]
            )
            out += [
                "",
                f"{r['preset']}: K chosen by agreement with fp32 (top-1 agreement / SQNR / best images/s per K "
                f"tried): {tried}.",
            ]
    if plot:
        out += ["", f"![accuracy vs throughput]({plot})"]
    return "\n".join(out) + "\n"


def write_sweep(
    store: Store, rows: list[dict[str, Any]], *, name: str, title: str, inputs: dict[str, ArtifactRef]
) -> ArtifactRef:
    """The ``sweep`` artifact: table (md + json), Pareto plot, self-contained HTML."""
    with store.staging("sweep") as staged:
        points = [
            {"label": r["preset"], "top1": r["top1"], "agreement": r.get("agreement"), "throughput": r["throughput"]}
            for r in rows
        ]
        curves = [(r["preset"], r["mixed_search"]) for r in rows if r.get("mixed_search")]
        plot = pareto_plot(points, staged / "pareto.png", f"{title}: accuracy vs throughput", curves)
        md_text = sweep_markdown(rows, title, plot.name)
        (staged / "sweep.md").write_text(md_text, encoding="utf-8")
        (staged / "sweep.json").write_text(json.dumps(rows, indent=1))
        (staged / "sweep.html").write_text(html(md_text, title, {plot.name: plot}), encoding="utf-8")
        return store.commit(
            staged,
            kind="sweep",
            name=name,
            stage=STAGE,
            stage_version=STAGE_VERSION,
            inputs=inputs,
            meta={"presets": [r["preset"] for r in rows], "passed": all(r["passed"] for r in rows)},
        )


# ------------------------------------------------------------------------------ nightly history
WATCHED = ("checkpoint", "calibration", "toolchain", "code_version", "onnx", "dataset")


def _find_input(store: Store, digest: str, role: str, depth: int = 0) -> str | None:
    """Digest of the first ancestor recorded under `role` (breadth over the lineage)."""
    if depth > 6 or not store.exists(digest):
        return None
    inputs = store.manifest(digest).inputs
    for item in inputs:
        if item.role == role:
            return item.digest
    for item in inputs:
        if item.role in ("reference", "probe", "parity") or item.role.startswith("shard-"):
            continue
        found = _find_input(store, item.digest, role, depth + 1)
        if found:
            return found
    return None


def night_row(store: Store, night: str, model: str, preset: str, evaluation: ArtifactRef) -> dict[str, Any]:
    """One model/preset result of one night, with the digests of what produced it."""
    metrics = load_metrics(store, evaluation)
    outputs = _find_input(store, evaluation.digest, "outputs")
    compiled = _find_input(store, evaluation.digest, "compiled")
    toolchain = store.manifest(compiled).producer.toolchain if compiled else None
    return {
        "night": night,
        "model": model,
        "preset": preset,
        "top1": metrics["top1"],
        "top5": metrics["top5"],
        "agreement": metrics.get("agreement"),
        "passed": metrics["verdict"]["passed"],
        "failures": metrics["verdict"]["failures"],
        "evaluation": evaluation.digest,
        "inputs": {
            "checkpoint": _find_input(store, evaluation.digest, "checkpoint"),
            "calibration": _find_input(store, evaluation.digest, "calibration") if "int8" in preset else None,
            "onnx": _find_input(store, evaluation.digest, "onnx"),
            "dataset": _find_input(store, outputs, "npz") if outputs else None,
            "toolchain": json.dumps(toolchain, sort_keys=True) if toolchain else None,
            "code_version": store.manifest(evaluation.digest).producer.code_version,
        },
    }


def append_history(store: Store, name: str, rows: list[dict[str, Any]]) -> ArtifactRef:
    """A new version of the history: every earlier night, then tonight's rows (a rerun of a night replaces it)."""
    previous: list[dict[str, Any]] = []
    if store.versions(name):
        previous = json.loads(store.path(store.resolve(name), "history.json").read_text())
    nights = {r["night"] for r in rows}
    history = [r for r in previous if r["night"] not in nights] + rows
    history.sort(key=lambda r: (r["night"], r["model"], r["preset"]))
    with store.staging("history") as staged:
        (staged / "history.json").write_text(json.dumps(history, indent=1))
        return store.commit(
            staged,
            kind="history",
            name=name,
            stage=STAGE,
            stage_version=STAGE_VERSION,
            meta={"nights": sorted({r["night"] for r in history}), "rows": len(history)},
        )


def regressions(history: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per model/preset that fails on its latest night: the first bad night of that run of failures,
    the last good night before it, and which input digests differ between the two."""
    found = []
    series: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in sorted(history, key=lambda r: r["night"]):
        series.setdefault((row["model"], row["preset"]), []).append(row)
    for (model, preset), rows in sorted(series.items()):
        if rows[-1]["passed"]:
            continue
        first_bad = len(rows) - 1
        while first_bad > 0 and not rows[first_bad - 1]["passed"]:
            first_bad -= 1
        bad = rows[first_bad]
        good = rows[first_bad - 1] if first_bad > 0 else None
        changed = (
            {
                key: {"good": good["inputs"].get(key), "bad": bad["inputs"].get(key)}
                for key in WATCHED
                if good["inputs"].get(key) != bad["inputs"].get(key)
            }
            if good
            else {}
        )
        found.append(
            {
                "model": model,
                "preset": preset,
                "first_bad_night": bad["night"],
                "last_night": rows[-1]["night"],
                "last_good_night": good["night"] if good else None,
                "failures": bad["failures"],
                "changed": changed,
            }
        )
    return found


def _short(value: Any) -> str:
    text = str(value)
    return text[:12] if len(text) == 64 else text


def trend_markdown(history: Sequence[dict[str, Any]], found: Sequence[dict[str, Any]], plot: str | None) -> str:
    """The trend report: regressions first, then every model/preset over nights."""
    out = ["# Nightly regression", ""]
    if not found:
        out += ["No regressions: every model/preset passes its goals on the latest night.", ""]
    for reg in found:
        since = (
            f" (last good night {reg['last_good_night']})" if reg["last_good_night"] else " (no good night before it)"
        )
        out += [f"## REGRESSION: {reg['model']} {reg['preset']}: first bad night {reg['first_bad_night']}{since}", ""]
        out += [f"- {f}" for f in reg["failures"]]
        if reg["changed"]:
            out += ["", "What changed between the last good and the first bad night:", ""]
            out += ["| input | last good | first bad |", "|---|---|---|"]
            out += [f"| {k} | `{_short(v['good'])}` | `{_short(v['bad'])}` |" for k, v in reg["changed"].items()]
        elif reg["last_good_night"]:
            out += ["", "No recorded input changed: suspect the data or the environment."]
        out.append("")
    out += [
        "## History",
        "",
        "| night | model | preset | top-1 | top-5 | agreement | gates |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in history:
        out.append(
            f"| {r['night']} | {r['model']} | {r['preset']} | {fmt(r['top1'])} | {fmt(r['top5'])} | "
            f"{fmt(r['agreement'])} | {'pass' if r['passed'] else 'FAIL'} |"
        )
    if plot:
        out += ["", f"![top-1 over nights]({plot})"]
    return "\n".join(out) + "\n"


def trend_plot(history: Sequence[dict[str, Any]], out: Path) -> Path:
    """Top-1 per model/preset over nights; failed nights marked with a red cross."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 5))
    nights = sorted({r["night"] for r in history})
    series: dict[str, list[dict[str, Any]]] = {}
    for r in history:
        series.setdefault(f"{r['model']} {r['preset']}", []).append(r)
    for label, rows in sorted(series.items()):
        rows = sorted(rows, key=lambda r: r["night"])
        xs = [nights.index(r["night"]) for r in rows]
        ax.plot(xs, [r["top1"] for r in rows], marker="o", label=label)
        bad = [(x, r["top1"]) for x, r in zip(xs, rows, strict=True) if not r["passed"]]
        if bad:
            ax.scatter(*zip(*bad, strict=True), marker="x", s=120, color="#c0392b", zorder=4)
    ax.set_xticks(range(len(nights)), nights, rotation=30, ha="right")
    ax.set_ylabel("top-1 (%)")
    ax.set_title("top-1 per model/preset over nights (x: failed gates)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, out)


def write_trend(store: Store, history_ref: ArtifactRef, name: str) -> ArtifactRef:
    """The ``trend`` artifact: markdown + HTML with the plot, and the regressions as JSON."""
    history = json.loads(store.path(history_ref, "history.json").read_text())
    found = regressions(history)
    with store.staging("trend") as staged:
        plot = trend_plot(history, staged / "trend.png")
        md_text = trend_markdown(history, found, plot.name)
        (staged / "trend.md").write_text(md_text, encoding="utf-8")
        (staged / "trend.html").write_text(html(md_text, "Nightly regression", {plot.name: plot}), encoding="utf-8")
        (staged / "regressions.json").write_text(json.dumps(found, indent=1))
        return store.commit(
            staged,
            kind="trend",
            name=name,
            stage=STAGE,
            stage_version=STAGE_VERSION,
            inputs={"history": history_ref},
            meta={"regressions": len(found), "nights": sorted({r["night"] for r in history})},
        )
