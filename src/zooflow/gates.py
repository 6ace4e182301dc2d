"""Gates: the verdict of a run's metrics against their goals (minimums, drops vs fp32, published, baselines)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from zooflow.config import Gate
from zooflow.errors import ZooflowError


class GateFailedError(ZooflowError):
    """A metric missed its goal; the message names metric, value, limit and baseline."""


# -------------------------------------------------------------------------------------- gates
@dataclass
class Baselines:
    """What gates compare against: the fp32 reference, the published numbers, named baseline runs."""

    reference: dict[str, float] = field(default_factory=dict)
    published: dict[str, float | None] = field(default_factory=dict)
    published_note: str | None = None  # set when published numbers do not apply (e.g. demo data)
    baseline: Callable[[str], tuple[str, dict[str, float]]] | None = None  # ref -> (label, metrics)


def fmt(value: Any, digits: int = 2) -> str:
    """A number for verdicts and report tables: fixed digits; None or NaN as n/a; text as it is."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}" if isinstance(value, float | int) else str(value)


def check_gates(gates: Sequence[Gate], metrics: dict[str, float], against: Baselines) -> dict[str, Any]:
    """The verdict: one check per limit of every gate, with a sentence saying why it passed or failed."""
    checks: list[dict[str, Any]] = []

    def add(gate: Gate, kind: str, limit: float, value: float | None, base: float | None, base_label: str) -> None:
        check: dict[str, Any] = {"metric": gate.metric, "kind": kind, "limit": limit, "value": value}
        if value is None or math.isnan(value):
            check.update(passed=False, reason=f"{gate.metric} was not measured in this run, so {kind} cannot hold")
        elif kind == "min":
            check.update(
                passed=value >= limit,
                reason=f"{gate.metric} = {fmt(value)}, {'at least' if value >= limit else 'below'} the minimum "
                f"{fmt(limit)}",
            )
        elif base is None or math.isnan(base):
            check.update(passed=False, reason=f"{gate.metric}: no {base_label} value to compare with")
        else:
            drop = base - value
            ok = drop <= limit + 1e-9
            check.update(
                baseline=base_label,
                baseline_value=base,
                drop=drop,
                passed=ok,
                reason=f"{gate.metric} = {fmt(value)} is {fmt(abs(drop))} points "
                f"{'below' if drop >= 0 else 'above'} {base_label} ({fmt(base)}); "
                f"the limit is {fmt(limit)} points below",
            )
        checks.append(check)

    for gate in gates:
        value = metrics.get(gate.metric)
        if gate.min is not None:
            add(gate, "min", gate.min, value, None, "")
        if gate.max_drop_vs_reference is not None:
            ref = against.reference.get(gate.metric)
            add(gate, "max_drop_vs_reference", gate.max_drop_vs_reference, value, ref, "the fp32 reference")
        if gate.max_drop_vs_published is not None:
            if against.published_note:
                checks.append(
                    {
                        "metric": gate.metric,
                        "kind": "max_drop_vs_published",
                        "limit": gate.max_drop_vs_published,
                        "value": value,
                        "passed": True,
                        "skipped": True,
                        "reason": f"skipped: {against.published_note}",
                    }
                )
            else:
                pub = against.published.get(gate.metric)
                add(gate, "max_drop_vs_published", gate.max_drop_vs_published, value, pub, "the published number")
        if gate.max_drop_vs_baseline is not None and gate.baseline is not None:
            if against.baseline is None:
                add(gate, "max_drop_vs_baseline", gate.max_drop_vs_baseline, value, None, f"baseline {gate.baseline}")
            else:
                label, base_metrics = against.baseline(gate.baseline)
                add(
                    gate,
                    "max_drop_vs_baseline",
                    gate.max_drop_vs_baseline,
                    value,
                    base_metrics.get(gate.metric),
                    f"baseline {label}",
                )
    failures = [c["reason"] for c in checks if not c["passed"]]
    return {"passed": not failures, "checks": checks, "failures": failures}


def raise_on_failure(verdict: dict[str, Any], what: str, report: str | None = None) -> None:
    """Turn a failed verdict into `GateFailedError` naming every failed check."""
    if not verdict["passed"]:
        where = f"`zooflow report {report}`" if report else "`zooflow report`"
        raise GateFailedError(
            f"{what} failed {len(verdict['failures'])} gate check(s):\n  " + "\n  ".join(verdict["failures"]),
            f"the evaluation and its report are stored: {where} shows what changed vs the fp32 reference; "
            "change the gates if the goal itself is wrong",
        )
