"""The per-layer int8 sensitivity as people read it: the ten most sensitive layers and SQNR along depth.

Renders the result of `zooflow.toolchains.sensitivity.rank` (JSON-safe dict): a markdown table for
the run's report and the Prefect UI, and a PNG of every layer's numbers in graph order, so the
reader sees where along the network int8 loses signal and which one layer wins most back in float.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from zooflow.report import _pyplot, save_figure


def _db(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.1f}"


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
    lines += ["", f"Method: {result['method']}."]
    return lines


def depth_plot(result: dict[str, Any], out: Path, title: str) -> Path:
    """Per layer in graph order: its output tensor's and weights' own SQNR (top), and the SQNR the
    model wins back with that layer alone in float (bottom); up to five large gains labelled."""
    plt = _pyplot()
    rows = sorted(result["layers"], key=lambda r: r["depth"])
    xs = list(range(len(rows)))
    finite = [
        [r[key] if r[key] is not None and math.isfinite(r[key]) else float("nan") for r in rows]
        for key in ("output_tensor_sqnr_db", "weight_sqnr_db", "gain_db")
    ]
    fig, (upper, lower) = plt.subplots(2, 1, figsize=(12, 6.5), sharex=True)
    upper.plot(xs, finite[0], marker="o", markersize=3, label="its output tensor, int8 alone")
    upper.plot(xs, finite[1], marker="s", markersize=3, label="its weights, int8")
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
    for i in best:
        lower.annotate(rows[i]["module"], (i, finite[2][i]), textcoords="offset points", xytext=(3, 3), fontsize=7)
    fig.suptitle(f"{title} (int8: {_db(result['int8_sqnr_db'])} dB vs fp32)")
    return save_figure(fig, out)
