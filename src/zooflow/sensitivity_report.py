"""The per-layer int8 sensitivity stage and how people read it: the ten most sensitive layers and SQNR along depth.

`measure` ranks the layers of an embedded-toolchain int8 model (`zooflow.toolchains.sensitivity.rank`)
on the first images of the calibration set and stores a ``sensitivity`` artifact: the ranking as
JSON, a markdown table for the run's report and the Prefect UI, and a PNG of every layer's numbers
in graph order, so the reader sees where along the network int8 loses signal and which one layer
wins most back in float.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from zooflow.errors import ZooflowError
from zooflow.gates import fmt
from zooflow.plots import pyplot, save_figure
from zooflow.store import ArtifactRef, Store

STAGE = "sensitivity"
STAGE_VERSION = "2"  # 2: every source of int8 noise is a layer (adds, pools, concat, softmax, input)
JSON_FILE, TABLE_FILE, PLOT_FILE = "sensitivity.json", "sensitivity.md", "sensitivity_depth.png"
# A tensor's SQNR is over all its values, so a few wide channels dominate it: a layer whose int8
# rounding ruins its small channels can still read well here; the "won back" column is what counts.
TENSOR_NOTE = (
    "A tensor's own SQNR is over all its channels, so its widest channels dominate it; the SQNR won back "
    "with the layer in float is the measure of what its quantisation costs the model"
)
# Below this best gain no layer owns the loss: keeping a few in float cannot recover it.
SPREAD_DB = 1.0


def _db(value: Any) -> str:
    """A dB value with one decimal: ``inf`` for an exact match (stored as text by the evaluation), blank if unknown."""
    return "" if value is None else fmt(value, 1)


def table(result: dict[str, Any], top: int = 10) -> list[str]:
    """Markdown lines: the `top` layers that win back the most output SQNR when left alone in float."""
    lines = [
        f"## The {min(top, len(result['layers']))} most sensitive layers (of {len(result['layers'])})",
        "",
        f"All int8: output SQNR {_db(result['int8_sqnr_db'])} dB, top-1 agreement {result['int8_agreement']:.1f}% "
        f"against fp32 on {result['images']} probe images. Each row is the model with only that layer in float.",
        "",
        "| # | layer (mmcls module) | op | SQNR won back (dB) | model SQNR (dB) | agreement (%) | its output tensor (dB) "
        "| its weights (dB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for number, row in enumerate(result["layers"][:top], start=1):
        lines.append(
            f"| {number} | `{row['module']}` | {row['op']} | {_db(row['gain_db'])} | {_db(row['float_sqnr_db'])} | "
            f"{row['float_agreement']:.1f} | {_db(row['output_tensor_sqnr_db'])} | {_db(row['weight_sqnr_db'])} |"
        )
    lines += ["", *diagnosis(result), "", f"Method: {result['method']}. {TENSOR_NOTE}."]
    return lines


def diagnosis(result: dict[str, Any]) -> list[str]:
    """Where the loss comes from: int8 weights alone against int8 activations alone, and whether a few
    layers own it (the best single layer wins back SPREAD_DB or more) or it is spread over the model."""
    out = []
    split = result.get("split")
    if split:
        w, a = split["weights_only"], split["activations_only"]
        out.append(
            f"Only the weights int8 (every activation in float): {_db(w['sqnr_db'])} dB, {w['agreement']:.1f}% "
            f"agreement; only the activations int8 (every weight in float): {_db(a['sqnr_db'])} dB, "
            f"{a['agreement']:.1f}%."
        )
    rows = result["layers"]
    best = max((r["gain_db"] for r in rows if r["gain_db"] is not None), default=0.0)
    if rows and best < SPREAD_DB:
        out.append(
            f"> **The loss is spread over the model:** no layer alone wins back {SPREAD_DB:g} dB (the best, "
            f"`{rows[0]['module']}`, {_db(best)} dB), so keeping a few layers in float recovers little; "
            "int8-mixed's auto will need most of them."
        )
    return out


def _finite(value: Any) -> Any:
    """JSON has no infinities: an exact (noise-free) SQNR is written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def measure(
    store: Store, compiled: ArtifactRef, onnx: ArtifactRef, calibration: ArtifactRef, images: int
) -> ArtifactRef:
    """The ``sensitivity`` artifact of an embedded int8 model, ranked on the first `images` calibration images."""
    import onnx as onnx_lib

    from zooflow.config import ToolchainOptions
    from zooflow.toolchains.onnxruntime import OnnxRuntimeToolchain
    from zooflow.toolchains.sensitivity import FLOAT_FILE, rank

    if compiled.meta.get("toolchain") != "onnxruntime" or FLOAT_FILE not in compiled.files:
        raise ZooflowError(
            f"{compiled.name or compiled.short} is not an embedded-toolchain int8 model with its float graph",
            "rank an int8 model compiled by the onnxruntime toolchain (compile it again if it predates zooflow's "
            "sensitivity stage)",
        )
    toolchain = OnnxRuntimeToolchain(ToolchainOptions())
    batch = next(toolchain.calibration_batches(calibration, onnx, store, chunk=images))
    qdq = onnx_lib.load(str(store.path(compiled, "model.onnx")))
    result = rank(qdq, onnx_lib.load(str(store.path(compiled, FLOAT_FILE))), batch.astype("float32"))
    preset = compiled.meta.get("preset", "int8")
    result["on"] = f"the first {result['images']} calibration images, embedded toolchain ({preset})"
    base = (compiled.name or "model/onnxruntime/int8").rsplit("/", 1)[0]
    with store.staging(STAGE) as staged:
        plot = depth_plot(result, staged / PLOT_FILE, f"{preset}: per-layer SQNR")
        text = ["# Per-layer int8 sensitivity", "", *table(result), "", f"![per-layer SQNR along depth]({plot.name})"]
        (staged / TABLE_FILE).write_text("\n".join(text) + "\n", encoding="utf-8")
        (staged / JSON_FILE).write_text(json.dumps(_finite(result), indent=1), encoding="utf-8")
        return store.commit(
            staged,
            kind="sensitivity",
            name=f"{base}/{preset}/sensitivity",
            stage=STAGE,
            stage_version=STAGE_VERSION,
            params={"images": images},
            inputs={"compiled": compiled, "calibration": calibration},
            meta={
                "images": result["images"],
                "int8_sqnr_db": _finite(result["int8_sqnr_db"]),
                "int8_agreement": result["int8_agreement"],
                "ranking": [row["node"] for row in result["layers"]],
                "on": result["on"],
            },
        )


def load(store: Store, ref: ArtifactRef) -> dict[str, Any]:
    """The stored ranking (infinite SQNRs read back as null)."""
    result: dict[str, Any] = json.loads(store.path(ref, JSON_FILE).read_text(encoding="utf-8"))
    return result


def depth_plot(result: dict[str, Any], out: Path, title: str) -> Path:
    """Per layer in graph order: its output tensor's and weights' own SQNR (top), and the SQNR the
    model wins back with that layer alone in float (bottom); up to five large gains labelled."""
    plt = pyplot()
    rows = sorted(result["layers"], key=lambda r: r["depth"])
    xs = list(range(len(rows)))
    finite = [
        [r[key] if r[key] is not None and math.isfinite(r[key]) else float("nan") for r in rows]
        for key in ("output_tensor_sqnr_db", "weight_sqnr_db", "gain_db")
    ]
    fig, (upper, lower) = plt.subplots(2, 1, figsize=(12, 6.5), sharex=True)
    upper.plot(xs, finite[0], marker="o", markersize=3, label="its output tensor, int8 alone")
    upper.plot(xs, finite[1], marker="s", markersize=3, linestyle="none", label="its weights, int8")
    upper.set_ylabel("SQNR (dB)")
    upper.legend(loc="lower left", fontsize=8)
    upper.grid(True, alpha=0.3)
    lower.bar(xs, finite[2], color="#c0392b")
    lower.axhline(0.0, color="#7f8c8d", linewidth=0.8)
    lower.set_ylabel("output SQNR won back\nwith it in float (dB)")
    lower.set_xlabel("layer, in graph order")
    lower.grid(True, axis="y", alpha=0.3)
    gains = [g if math.isfinite(g) else -1e9 for g in finite[2]]
    floor = max(0.5, 0.1 * max(gains, default=0.0))  # only gains worth a label (small ones overprint)
    best = [i for i in sorted(range(len(rows)), key=lambda i: -gains[i])[:5] if gains[i] >= floor]
    top = max((g for g in gains if g > -1e9), default=0.0)
    if top > 0:
        lower.set_ylim(top=top * 1.35)  # headroom for the stepped labels above the tallest bar
    for n, i in enumerate(sorted(best)):  # left to right, stepped up and down so neighbours' labels do not overprint
        offset = (3, 3 + 10 * (n % 3))
        label = rows[i]["module"] if rows[i]["weight_sqnr_db"] is not None else f"{rows[i]['module']} ({rows[i]['op']})"
        lower.annotate(label, (i, finite[2][i]), textcoords="offset points", xytext=offset, fontsize=7)
    fig.suptitle(f"{title} (int8: {_db(result['int8_sqnr_db'])} dB vs fp32)")
    return save_figure(fig, out)


def section(result: dict[str, Any], toolchain: str, mixed: dict[str, Any] | None, plot: str | None) -> list[str]:
    """The report's sensitivity lines: where the ranking comes from, the top-10 table, the depth plot, and
    for int8-mixed which layers stayed in float (and, on the card, what vamc could be told)."""
    out = ["## Per-layer int8 sensitivity", "", f"Ranked on {result.get('on', 'the probe images')}."]
    if toolchain != "onnxruntime":
        out[-1] += (
            f" The ranking is toolchain-independent: computed with the embedded toolchain on the same calibration "
            f"set, not on the {toolchain} card, whose own int8 rounding may rank some layers differently."
        )
    rows = table(result)
    out += ["", *[("#" + line) if line.startswith("## ") else line for line in rows]]
    if plot:
        out += ["", f"![per-layer SQNR along depth]({plot})"]
    if mixed:
        out += ["", *mixed_section(mixed)]
    return out


def mixed_section(mixed: dict[str, Any]) -> list[str]:
    """int8-mixed: the K layers kept in float, how K was chosen, and what the compiler was given."""
    kept = mixed.get("float_layers")
    k = mixed["keep_float"]
    out = [f"## int8-mixed: {k} layer(s) kept in float", ""]
    if mixed.get("auto"):
        out.append(
            f"K chosen automatically: the smallest K whose model meets top-1 agreement >= {mixed['target']:g}% with "
            f"fp32 on this run's {mixed.get('images', '')} images (doubling, then bisection: more layers in float "
            "is assumed never to lower agreement; every K tried is listed)."
        )
        if mixed.get("layers") and k >= mixed["layers"]:
            out.append(f"K = {k} is every quantised layer: the model is the float graph it was quantised from.")
        if not mixed.get("met", True):
            out.append(f"No K met the goal; K = {k} (every quantised layer in float) is the closest.")
        out += [
            "",
            "| K | top-1 agreement (%) | SQNR vs fp32 (dB) | top-1 (%) | best images/s |",
            "|---|---|---|---|---|",
        ]
        for row in mixed.get("tried", []):
            out.append(
                f"| {row['keep_float']} | {row['agreement']:.2f} | {_db(row['sqnr_db'])} | {row['top1']:.2f} | "
                f"{fmt(row.get('throughput'), 1)} |"
            )
        out.append("")
    if isinstance(kept, list):
        out.append("Kept in float (most sensitive first): " + ", ".join(f"`{r['module']}`" for r in kept) + ".")
    elif isinstance(kept, dict):
        passed = kept.get("passed") or []
        if passed:
            lists = ", ".join(f"`{key}: {value}`" for key, value in kept["lists"].items())
            out.append(f"Passed to vamc as {lists}; index: {kept['index']}.")
        for row in kept.get("refused") or []:
            out.append(f"- Not passed: `{row['node']}` ({row.get('op')}): {row['reason']}.")
        if not passed:
            out.append(
                "> **The card cannot take this list:** none of the layers maps to a key of the vendor's published "
                "config schema, so the card compiles them in int8; the numbers above are the card's plain int8."
            )
    return out
