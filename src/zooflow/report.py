"""Reports people want to look at: a markdown summary, a self-contained HTML file and PNG plots.

A ``report`` artifact holds ``report.md`` (summary, verdict, lineage: which checkpoint, which
calibration manifest, which toolchain fingerprint), ``report.html`` (the same, plots embedded,
one file to mail around), ``per_class.png`` (per-class top-1 drop vs the fp32 reference) and
``results.txt`` (the zoo's text format). `pareto_plot` draws accuracy vs throughput for sweeps.

HTML is rendered from the markdown with markdown-it-py (already here through rich) rather than a
template of our own; plots use matplotlib's non-interactive Agg backend.
"""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from zooflow.evaluate import load_metrics
from zooflow.gates import fmt
from zooflow.plots import pyplot, save_figure
from zooflow.store import ArtifactRef, Store
from zooflow.toolchains import setting_label

STAGE = "report"
STAGE_VERSION = "4"  # 2: narrower tables; 3: int8 sensitivity section; 4: split, spread diagnosis, images/s per K


# ------------------------------------------------------------------------------------- plots
def per_class_plot(rows: list[dict[str, Any]], out: Path, title: str, worst: int = 30) -> Path:
    """Per-class top-1 drop vs fp32: the `worst` classes as bars, and the distribution over all classes."""
    plt = pyplot()
    fig, (bars, hist) = plt.subplots(1, 2, figsize=(13, 5.2), gridspec_kw={"width_ratios": [3, 2]})
    if rows and "drop" in rows[0]:
        ordered = sorted(rows, key=lambda r: (-r["drop"], r["class"]))[:worst]
        labels = [
            f"{r['class']} {r['name'][:18]}" if r["name"] != str(r["class"]) else str(r["class"]) for r in ordered
        ]
        values = [r["drop"] for r in ordered]
        bars.barh(range(len(values)), values, color=["#c0392b" if v > 0 else "#27ae60" for v in values])
        bars.set_yticks(range(len(values)), labels, fontsize=7)
        bars.invert_yaxis()
        bars.axvline(0, color="black", linewidth=0.8)
        bars.set_xlabel("top-1 drop vs fp32 reference (points; > 0 is worse)")
        bars.set_title(f"{len(values)} classes with the largest drop")
        drops = [r["drop"] for r in rows]
        hist.hist(drops, bins=41, color="#34495e")
        hist.axvline(0, color="black", linewidth=0.8)
        hist.set_xlabel("top-1 drop vs fp32 (points)")
        hist.set_ylabel("classes")
        mean = sum(drops) / len(drops)
        hist.set_title(f"all {len(drops)} classes (mean drop {mean:+.2f})")
    else:
        accs = [r["top1"] for r in rows]
        hist.hist(accs, bins=21, range=(0, 100), color="#34495e")
        hist.set_xlabel("per-class top-1 (%)")
        hist.set_ylabel("classes")
        bars.text(0.5, 0.5, "no fp32 reference: drop not available", ha="center", va="center")
        bars.set_axis_off()
    fig.suptitle(title)
    return save_figure(fig, out)


def pareto_front(points: Sequence[dict[str, Any]], x: str = "throughput", y: str = "top1") -> list[int]:
    """Indices of the points no other point beats on both axes (higher is better on each), by x."""
    front = []
    for i, p in enumerate(points):
        dominated = any(
            q[x] >= p[x] and q[y] >= p[y] and (q[x] > p[x] or q[y] > p[y]) for j, q in enumerate(points) if j != i
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][x])


def pareto_plot(
    points: Sequence[dict[str, Any]],
    out: Path,
    title: str,
    curves: Sequence[tuple[str, Sequence[dict[str, Any]]]] = (),
) -> Path:
    """Top-1 (and, when known, top-1 agreement with fp32) vs throughput: one labelled point per preset,
    the Pareto front as a line, and each `curves` entry (int8-mixed's K search: points with
    ``keep_float``) as a dashed line through every K tried, so K is read against accuracy and speed."""
    plt = pyplot()
    metrics = [("top1", "top-1 (%)")]
    if any(p.get("agreement") is not None for p in points):
        metrics.append(("agreement", "top-1 agreement with fp32 (%)"))
    fig, axes = plt.subplots(1, len(metrics), figsize=(8 * len(metrics), 5.5), squeeze=False)
    for ax, (metric, ylabel) in zip(axes[0], metrics, strict=True):
        _pareto_panel(ax, points, metric)
        for name, tried in curves:
            _k_curve(ax, name, tried, metric)
        ax.set_xlabel("throughput (images/s)")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", fontsize=8)
    fig.suptitle(title)
    return save_figure(fig, out)


def _pareto_panel(ax: Any, points: Sequence[dict[str, Any]], y: str) -> None:
    usable = [p for p in points if p.get("throughput") is not None and p.get(y) is not None]
    front = pareto_front(usable, y=y)
    xs, ys = [p["throughput"] for p in usable], [p[y] for p in usable]
    x_span = (max(xs) - min(xs)) if xs else 0.0
    y_span = (max(ys) - min(ys)) if ys else 0.0
    placed: list[tuple[float, float]] = []
    for i, p in enumerate(usable):
        on = i in front
        ax.scatter(p["throughput"], p[y], s=60, color="#c0392b" if on else "#7f8c8d", zorder=3)
        # presets that land close together (int8 modes often do) get their labels stacked, not overprinted
        crowd = sum(
            1
            for x, v in placed
            if abs(x - p["throughput"]) <= 0.08 * (x_span or 1.0) and abs(v - p[y]) <= 0.08 * (y_span or 1.0)
        )
        placed.append((p["throughput"], p[y]))
        ax.annotate(
            p["label"],
            (p["throughput"], p[y]),
            textcoords="offset points",
            xytext=(6, 4 + 12 * crowd),
            fontsize=8,
            arrowprops={"arrowstyle": "-", "color": "#95a5a6", "linewidth": 0.6} if crowd else None,
        )
    if front:
        ax.plot(
            [usable[i]["throughput"] for i in front],
            [usable[i][y] for i in front],
            color="#c0392b",
            linewidth=1.2,
            label="Pareto front",
        )


def _k_curve(ax: Any, name: str, tried: Sequence[dict[str, Any]], y: str) -> None:
    """Every K the search tried, in K order; at most six labelled (the first, the last, spread between)."""
    rows = sorted(
        (t for t in tried if t.get("throughput") is not None and t.get(y) is not None), key=lambda t: t["keep_float"]
    )
    if not rows:
        return
    ax.plot(
        [t["throughput"] for t in rows],
        [t[y] for t in rows],
        linestyle="--",
        marker=".",
        color="#2980b9",
        linewidth=0.9,
        label=f"{name}: every K tried",
    )
    step = max(1, (len(rows) + 4) // 5)
    for i, t in enumerate(rows):
        if i % step == 0 or i == len(rows) - 1:
            ax.annotate(
                f"K={t['keep_float']}", (t["throughput"], t[y]), textcoords="offset points", xytext=(4, -10), fontsize=7
            )


# ----------------------------------------------------------------------------------- documents
INT8_KEYS = (
    "int8_scheme",
    "kernel_check",
    "range_check",
    "calibration_method",
    "calibration_images",
    "format",
    "per_channel",
)
_LEAVES = ("reference", "probe", "parity", "benchmark")  # listed, not followed: their inputs repeat the run's


def lineage(store: Store, evaluation: ArtifactRef) -> dict[str, dict[str, Any]]:
    """The artifacts a result came from, by role: outputs, compiled, onnx, checkpoint, calibration, npz."""
    found: dict[str, dict[str, Any]] = {}

    def visit(digest: str, role: str, name: str | None, depth: int) -> None:
        if depth > 6 or role in found or not store.exists(digest):
            return
        manifest = store.manifest(digest)
        info: dict[str, Any] = {"digest": digest, "kind": manifest.kind, "name": name}
        if manifest.producer.toolchain:
            info["toolchain"] = manifest.producer.toolchain
        info["code_version"] = manifest.producer.code_version
        if manifest.kind == "checkpoint":
            info["source"] = manifest.producer.params.get("source")
        if manifest.kind == "npz":
            params = manifest.producer.params
            info["npz"] = {"format": params.get("format"), "pre_resize": params.get("pre_resize")}
        if manifest.kind == "compiled" and manifest.meta.get("int8_scheme"):
            info["int8"] = {k: manifest.meta.get(k) for k in INT8_KEYS}
        found[role] = info
        if role in _LEAVES:
            return
        for item in manifest.inputs:
            if not item.role.startswith("shard-"):
                visit(item.digest, item.role, item.name, depth + 1)

    visit(evaluation.digest, "evaluation", evaluation.name, 0)
    return found


def markdown(
    metrics: dict[str, Any],
    per_class: list[dict[str, Any]],
    flips: list[dict[str, Any]],
    roots: dict[str, dict[str, Any]],
    *,
    title: str,
    benchmark: dict[str, Any] | None = None,
    plot: str | None = None,
    extra: list[str] | None = None,
) -> str:
    """The report as markdown (for the store, the Prefect UI and the HTML file)."""
    verdict = metrics["verdict"]
    ref = metrics.get("reference") or {}
    pub = metrics.get("published") or {}
    status = "PASS" if verdict["passed"] else "FAIL"
    out = [f"# {title}: {status}", ""]
    ctx = metrics.get("context") or {}
    if ctx.get("warning"):
        out += [f"> **Warning:** {ctx['warning']}", ""]
    out += [
        f"{metrics['images']} images. Top-1/top-5 in percent; paired with the inputs by index and name.",
        "",
        "| metric | this run | fp32 reference | published |",
        "|---|---|---|---|",
        f"| top-1 | {fmt(metrics['top1'])} | {fmt(ref.get('top1'))} | {fmt(pub.get('top1'))} |",
        f"| top-5 | {fmt(metrics['top5'])} | {fmt(ref.get('top5'))} | {fmt(pub.get('top5'))} |",
    ]
    if "agreement" in metrics:
        fid = metrics.get("fidelity", {})
        out += [
            f"| top-1 agreement with fp32 | {fmt(metrics['agreement'])} | | |",
            f"| flipped predictions | {fid.get('flips', 0)} ({fid.get('flips_broken', 0)} now wrong, "
            f"{fid.get('flips_fixed', 0)} now right) | | |",
            f"| output SQNR vs fp32 (dB) | {fmt(metrics.get('sqnr_db'), 1)} | | |",
            f"| output cosine vs fp32 (mean / min) | {fmt(metrics.get('cosine'), 5)} / "
            f"{fmt(fid.get('cosine_min'), 5)} | | |",
            f"| max abs diff vs fp32 | {fmt(fid.get('max_abs_diff'), 4)} | | |",
        ]
    probe = metrics.get("probe")
    if probe and probe.get("images"):
        out.append(
            f"| vs PyTorch on {probe['images']} probe images | agreement {fmt(probe['agreement'])}, "
            f"SQNR {fmt(probe['sqnr_db'], 1)} dB, max diff {fmt(probe['max_abs_diff'], 4)} | | |"
        )
    if metrics.get("published_note"):
        out += ["", f"Published numbers: {metrics['published_note']}."]
    out += ["", "## Verdict", ""]
    if not verdict["checks"]:
        out.append("No gates were set for this run.")
    for check in verdict["checks"]:
        mark = "skipped" if check.get("skipped") else ("pass" if check["passed"] else "**FAIL**")
        out.append(f"- {mark}: {check['reason']}")
    parity = metrics.get("preprocess_parity")
    if parity:
        out += [
            "",
            "## Preprocessing parity (framework vs the card's DSP), both through the fp32 reference",
            "",
            "| path | top-1 | top-5 |",
            "|---|---|---|",
            f"| framework (PIL short-side resize + center crop) | {fmt(parity['framework']['top1'])} | "
            f"{fmt(parity['framework']['top5'])} |",
            f"| device DSP from full-size images (OpenCV fixed 256x256 + fp16 mean/std) | "
            f"{fmt(parity['device_dsp']['top1'])} | {fmt(parity['device_dsp']['top5'])} |",
            "",
            f"The DSP path costs {fmt(parity['gap_top1'])} top-1 points before any quantisation "
            f"(agreement {fmt(parity['agreement'])}%, input tensors differ by "
            f"{parity['input_mean_abs_diff']:.4f} on average over {parity['input_images_compared']} images).",
        ]
        pre = parity.get("pre_resized")
        if pre:
            out.append(
                f"Pre-resizing on the host to {pre['size'][0]}x{pre['size'][1]} (OpenCV bilinear) would leave the "
                f"DSP's crop unchanged for {pre['unchanged']} of {pre['images']} images (largest change "
                f"{pre['max_abs_diff']:g} uint8 steps): the emulated DSP resizes with OpenCV too, so on a card "
                "the difference is the card's own resize, which pre-resizing bypasses."
            )
    int8 = (roots.get("compiled") or {}).get("int8")
    if int8:
        out += ["", *int8_section(int8)]
    if extra:
        out += ["", *extra]
    if benchmark:
        out += ["", "## Benchmark", "", "| setting | images/s | p50 ms | p99 ms |", "|---|---|---|---|"]
        for r in benchmark.get("results", []):
            setting = setting_label(r)
            if r.get("skipped"):
                out.append(f"| {setting} | {r['skipped']} | | |")
                continue
            lat = r.get("latency_ms", {})
            out.append(f"| {setting} | {fmt(r.get('throughput'), 1)} | {fmt(lat.get('p50'))} | {fmt(lat.get('p99'))} |")
    if per_class and "drop" in per_class[0]:
        worst = sorted(per_class, key=lambda r: (-r["drop"], r["class"]))[:10]
        out += ["", "## Classes that lost the most", "", "| class | name | images | top-1 | fp32 | drop |"]
        out.append("|---|---|---|---|---|---|")
        out += [
            f"| {r['class']} | {str(r['name']).split(',')[0]} | {r['images']} | {fmt(r['top1'])} | "
            f"{fmt(r['reference_top1'])} | "
            f"{fmt(r['drop'])} |"
            for r in worst
        ]
    if plot:
        out += ["", f"![per-class top-1 drop vs fp32]({plot})"]
    if flips:
        out += [
            "",
            f"## Flipped predictions (first {min(len(flips), 20)} of {metrics.get('fidelity', {}).get('flips')})",
        ]
        out += ["", "| image | label | fp32 | now | change |", "|---|---|---|---|---|"]
        out += [f"| {f['name']} | {f['label']} | {f['reference']} | {f['now']} | {f['change']} |" for f in flips[:20]]
    out += ["", "## Lineage", "", "| role | artifact | digest | notes |", "|---|---|---|---|"]
    for role, info in roots.items():
        notes = []
        if info.get("source"):
            notes.append(f"source {info['source']}")
        npz = info.get("npz") or {}
        if npz.get("format") == "vastai":
            size = npz.get("pre_resize")
            notes.append(
                f"pre-resized on the host to {size[0]}x{size[1]} (--pre-resize): the card's DSP resize is bypassed"
                if size
                else "image2npz's format: full resolution, the card's DSP resizes"
            )
        if info.get("toolchain") and role in ("compiled", "outputs"):
            notes.append("toolchain " + ", ".join(f"{k}={v}" for k, v in sorted(info["toolchain"].items())))
        out.append(f"| {role} | {info.get('name') or info['kind']} | `{info['digest'][:12]}` | {'; '.join(notes)} |")
    code = next((i["code_version"] for i in roots.values() if i.get("code_version")), None)
    if code:
        out += ["", f"Code version: `{code}`."]
    return "\n".join(out) + "\n"


def int8_section(int8: dict[str, Any]) -> list[str]:
    """The report's int8 lines: what was compiled, on what CPU, why that scheme, and the kernel check."""
    scheme, check = int8.get("int8_scheme") or {}, int8.get("kernel_check") or {}
    flags = ", ".join(scheme.get("cpu_flags") or []) or "none of the int8-relevant ones"
    ort = (scheme.get("onnxruntime") or {}).get("onnxruntime", "?")
    out = [
        "## int8 quantisation",
        "",
        f"- Format: {int8.get('format')}, {'per-channel' if int8.get('per_channel') else 'per-tensor'} weights.",
        f"- Activation ranges: {int8.get('calibration_method')}, {int8.get('calibration_images')} calibration images.",
        f"- Weight scheme `{scheme.get('weights')}` (asked: {scheme.get('requested')}): {scheme.get('reason')}.",
        f"- CPU: {scheme.get('cpu')} ({scheme.get('architecture')}; flags {flags}); ONNX Runtime {ort}.",
    ]
    if check:
        out.append(
            f"- Kernel check on {check.get('images')} calibration images: SQNR vs fp32 {fmt(check.get('sqnr_integer_db'), 1)} dB "
            f"through ORT's integer kernels, {fmt(check.get('sqnr_float_db'), 1)} dB computed in float: "
            f"gap {fmt(check.get('gap_db'), 1)} dB (limit {fmt(check.get('limit_db'), 1)})."
        )
        if check.get("warning"):
            out += ["", f"> **Warning:** {check['warning']}"]
    clipped = int8.get("range_check") or {}
    if clipped:
        worst = (clipped.get("worst") or [{}])[0]
        out.append(
            f"- Range check over the calibration set: {clipped.get('clip_over_1pct')} of {clipped.get('tensors')} "
            f"tensors clip over 1% of their values; least clipping SQNR {fmt(clipped.get('min_clip_sqnr_db'), 1)} dB"
            + (f" ({worst['tensor']}, {worst['clipped_pct']}% clipped)." if worst.get("tensor") else ".")
        )
        if clipped.get("warning"):
            out += ["", f"> **Warning:** {clipped['warning']}"]
    return out


def html(md_text: str, title: str, images: dict[str, Path]) -> str:
    """Self-contained HTML: the markdown rendered, images embedded as data URIs."""
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark").enable("table").render(md_text)
    for name, path in images.items():
        data = base64.b64encode(path.read_bytes()).decode()
        body = body.replace(f'src="{name}"', f'src="data:image/png;base64,{data}"')
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}"
        "code{background:#f4f4f4;padding:1px 4px}img{max-width:100%}blockquote{color:#a04000}"
    )
    return (
        f'<!doctype html>\n<html><head><meta charset="utf-8"><title>{title}</title><style>{style}</style></head>'
        f"<body>\n{body}</body></html>\n"
    )


def render(
    store: Store,
    evaluation: ArtifactRef,
    *,
    benchmark: ArtifactRef | None = None,
    sensitivity: ArtifactRef | None = None,
    mixed: dict[str, Any] | None = None,
) -> ArtifactRef:
    """The ``report`` artifact of an evaluation (optionally its benchmark, the int8 sensitivity ranking
    and, for int8-mixed, how many layers stayed in float and why)."""
    from zooflow import sensitivity_report

    metrics = load_metrics(store, evaluation)
    per_class = json.loads(store.path(evaluation, "per_class.json").read_text())
    flips = json.loads(store.path(evaluation, "flips.json").read_text())
    roots = lineage(store, evaluation)
    ctx = metrics.get("context") or {}
    title = " · ".join(str(ctx[k]) for k in ("model", "toolchain", "preset") if ctx.get(k)) or (
        evaluation.name or "evaluation"
    )
    bench = None
    if benchmark is not None:
        bench = {"results": benchmark.meta.get("results", [])}
    with store.staging("report") as staged:
        plot = per_class_plot(per_class, staged / "per_class.png", f"{title}: per-class top-1 vs fp32")
        images, extra = {plot.name: plot}, None
        if sensitivity is not None:
            depth = staged / sensitivity_report.PLOT_FILE
            shutil.copyfile(store.path(sensitivity, sensitivity_report.PLOT_FILE), depth)
            images[depth.name] = depth
            result = sensitivity_report.load(store, sensitivity)
            extra = sensitivity_report.section(result, str(ctx.get("toolchain", "")), mixed, depth.name)
        md_text = markdown(metrics, per_class, flips, roots, title=title, benchmark=bench, plot=plot.name, extra=extra)
        (staged / "report.md").write_text(md_text, encoding="utf-8")
        (staged / "report.html").write_text(html(md_text, title, images), encoding="utf-8")
        shutil.copyfile(store.path(evaluation, "results.txt"), staged / "results.txt")
        name = (evaluation.name or "run").rsplit("/", 1)[0]
        inputs = {
            "evaluation": evaluation,
            **({"benchmark": benchmark} if benchmark is not None else {}),
            **({"sensitivity": sensitivity} if sensitivity is not None else {}),
        }
        return store.commit(
            staged,
            kind="report",
            name=f"{name}/report",
            stage=STAGE,
            stage_version=STAGE_VERSION,
            inputs=inputs,
            meta={"title": title, "passed": metrics["verdict"]["passed"], "top1": metrics["top1"]},
        )
