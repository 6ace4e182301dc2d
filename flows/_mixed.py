"""The int8 sensitivity stage in a flow, and int8-mixed's K: the ranking's first K layers kept in float.

For every int8 preset the embedded toolchain's int8 model of the same spec is ranked (on a Vastai run
too: the ranking is toolchain-independent and labelled so). A fixed K takes the ranking's first K
layers; ``auto`` compiles, runs, benchmarks and evaluates K = 1, 2, 4, ... until the run's agreement
gate holds, then bisects down to the smallest K that holds: each K is its own cached compile, run,
benchmark and evaluation, so the sweep can draw K against accuracy and throughput.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tasks.sensitivity import sensitivity
from tasks.toolchain import compile_model
from zooflow import toolchains
from zooflow.compare import best_benchmark, fixed_benchmark
from zooflow.config import MIXED_AGREEMENT, Gate, QuantSpec
from zooflow.evaluate import load_metrics
from zooflow.store import ArtifactRef, open_store

if TYPE_CHECKING:
    from collections.abc import Callable

    from flows._stages import Prepared, Stages


@dataclass
class Plan:
    """One preset as the pipeline compiles it: the spec (int8-mixed with K resolved), its float layers,
    the sensitivity ranking behind them and how K was chosen."""

    quant: QuantSpec
    float_layers: tuple[str, ...] = ()
    sensitivity: ArtifactRef | None = None
    mixed: dict[str, Any] | None = None
    label: str = field(init=False)

    def __post_init__(self) -> None:
        self.label = toolchains.quant_label(self.quant)


def agreement_target(gates: tuple[Gate, ...]) -> float:
    """The top-1 agreement (%) `auto` searches for: the run's agreement gate, else int8-mixed's default."""
    mins = [g.min for g in gates if g.metric == "agreement" and g.min is not None]
    return max(mins) if mins else MIXED_AGREEMENT


def rank_int8(stages: Stages, prep: Prepared, quants: list[QuantSpec]) -> dict[str, ArtifactRef]:
    """The sensitivity artifact of each int8 spec's all-int8 base, by base preset label (ranked once each)."""
    images = prep.config.evaluation.sensitivity_images
    bases = {toolchains.quant_label(q.base()): q.base() for q in quants if q.dtype == "int8"}
    if not images or not bases:
        return {}
    labels = list(bases)
    compiled = stages.map(
        "sensitivity-compiled",
        compile_model,
        [{"quant": bases[lab], "float_layers": ()} for lab in labels],
        labels=[f"{lab} (embedded, for sensitivity)" for lab in labels],
        onnx=prep.reference_onnx,
        calibration=prep.calibration,
        **prep.reference_device,
    )
    ranked = stages.map(
        "sensitivity",
        sensitivity,
        [{"compiled": c} for c in compiled],
        names=[f"{lab}/sensitivity" if len(labels) > 1 else "sensitivity" for lab in labels],
        labels=labels,
        onnx=prep.reference_onnx,
        calibration=prep.calibration,
        images=images,
    )
    return dict(zip(labels, ranked, strict=True))


def plan(
    prep: Prepared,
    quants: list[QuantSpec],
    ranked: dict[str, ArtifactRef],
    gates: Callable[[QuantSpec], tuple[Gate, ...]],
    evaluate_one: Callable[[Plan], tuple[ArtifactRef, ArtifactRef]],
) -> list[Plan]:
    """Each spec as compiled: int8-mixed resolved to its K and layers (`evaluate_one` runs a candidate:
    its evaluation and benchmark)."""
    plans = []
    for quant in quants:
        ref = ranked.get(toolchains.quant_label(quant.base())) if quant.dtype == "int8" else None
        if not quant.mixed:
            plans.append(Plan(quant, sensitivity=ref))
            continue
        assert ref is not None  # check_quant refuses int8-mixed without a ranking
        ranking = tuple(ref.meta["ranking"])
        if isinstance(quant.keep_float, int):
            k = min(quant.keep_float, len(ranking))
            plans.append(_candidate(quant, ranking, k, ref, {"keep_float": k, "auto": False}))
        else:
            plans.append(_search(prep, quant, ranking, ref, agreement_target(gates(quant)), evaluate_one))
    return plans


def _candidate(quant: QuantSpec, ranking: tuple[str, ...], k: int, ref: ArtifactRef, mixed: dict[str, Any]) -> Plan:
    return Plan(quant.model_copy(update={"keep_float": k}), ranking[:k], ref, mixed)


def _search(
    prep: Prepared,
    quant: QuantSpec,
    ranking: tuple[str, ...],
    ref: ArtifactRef,
    target: float,
    evaluate_one: Callable[[Plan], tuple[ArtifactRef, ArtifactRef]],
) -> Plan:
    """The smallest K whose model meets `target` agreement on the run's images: K = 1, 2, 4, ... until it
    holds, then bisection (more layers in float is assumed never to lower agreement; every K tried is kept)."""
    store = open_store(prep.config.store_url())
    tried: dict[int, dict[str, Any]] = {}

    def meets(k: int) -> bool:
        if k not in tried:
            evaluation, bench = evaluate_one(_candidate(quant, ranking, k, ref, {"keep_float": k, "auto": True}))
            metrics = load_metrics(store, evaluation)
            results = bench.meta.get("results", [])
            best, fixed = best_benchmark(results), fixed_benchmark(results)
            tried[k] = {
                "keep_float": k,
                "agreement": metrics["agreement"],
                "sqnr_db": metrics.get("sqnr_db"),
                "top1": metrics["top1"],
                "throughput": best["throughput"] if best else None,
                "throughput_fixed": fixed["throughput"] if fixed else None,
            }
        return bool(tried[k]["agreement"] >= target)

    low, k = 0, 1
    while k < len(ranking) and not meets(k):
        low, k = k, min(2 * k, len(ranking))
    met = meets(k)
    high = k
    while met and high - low > 1:
        middle = (low + high) // 2
        if meets(middle):
            high = middle
        else:
            low = middle
    info = {
        "keep_float": high,
        "auto": True,
        "target": target,
        "met": met,
        "images": prep.dataset.count,
        "layers": len(ranking),
        "tried": [tried[key] for key in sorted(tried)],
    }
    return _candidate(quant, ranking, high, ref, info)
