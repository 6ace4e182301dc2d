"""Flow targets (issue 6): a cached re-run of deploy_classifier costs <= 10% of the cold run, and
orchestration adds <= 2 s per stage.

In one process (Prefect's ephemeral API, started once by a warm-up flow so its ~15 s start-up is
not counted): a cold run of deploy_classifier on the demo set in a fresh store, then the same
run again (cached). Orchestration overhead is the flow's wall time during which no task was
running (read from the task runs' start/end times), divided by the number of stages.

Usage: ``uv run python benchmarks/flow.py [--classes 1000 --per-class 2]``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from typing import Any


def covered_seconds(intervals: list[tuple[float, float]]) -> float:
    """Length of the union of [start, end] intervals."""
    total, end_so_far = 0.0, float("-inf")
    for start, end in sorted(intervals):
        if end <= end_so_far:
            continue
        total += end - max(start, end_so_far)
        end_so_far = end
    return total


def measure(config: Any) -> dict[str, Any]:
    """Wall time, task-covered time and stage count of one deploy_classifier run."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from flows.deploy_classifier import deploy_classifier

    start = time.perf_counter()
    state = deploy_classifier(config, return_state=True)
    wall = time.perf_counter() - start
    assert state.is_completed(), state.message
    result = state.result()
    time.sleep(2)  # task-run states arrive as events a moment after the flow returns
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
        )
    intervals = [(r.start_time.timestamp(), r.end_time.timestamp()) for r in runs if r.start_time and r.end_time]
    return {
        "wall": wall,
        "covered": covered_seconds(intervals),
        "stages": len(result["stages"]),
        "tasks": len(runs),
        "states": result["stages"],
        "slowest": sorted(
            ((r.name, r.end_time.timestamp() - r.start_time.timestamp()) for r in runs if r.start_time and r.end_time),
            key=lambda item: -item[1],
        )[: int(os.environ.get("BENCH_SLOWEST", "6"))],
    }


def demo_config(store: str, classes: int, per_class: int) -> Any:
    """A fp32 demo run of `classes` x `per_class` generated images into `store`."""
    from zooflow.runconfig import RunConfig

    return RunConfig(
        demo=True,
        store=store,
        data={"demo": {"classes": classes, "per_class": per_class}},
        calibration={"allow_short": classes < 1000},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--per-class", type=int, default=2)
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="no warm-up run (the cold run then pays the API's start): checks the script",
    )
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="zooflow-bench-flow-")
    os.environ.setdefault("PREFECT_RESULTS_LOCAL_STORAGE_PATH", os.path.join(root, "prefect-results"))
    config = demo_config
    if not args.smoke:
        measure(config(os.path.join(root, "warmup"), 5, 1))  # starts the ephemeral API
    cold = measure(config(os.path.join(root, "store"), args.classes, args.per_class))
    warm = measure(config(os.path.join(root, "store"), args.classes, args.per_class))
    images = args.classes * args.per_class
    print(f"demo set: {images} images; {cold['stages']} stages, {cold['tasks']} task runs")
    print(f"cold run   : {cold['wall']:7.1f} s (tasks running {cold['covered']:.1f} s)")
    print(f"cached run : {warm['wall']:7.1f} s (tasks running {warm['covered']:.1f} s)")
    print("slowest task runs (cached run): " + ", ".join(f"{n} {t:.2f} s" for n, t in warm["slowest"]))
    ratio = warm["wall"] / cold["wall"]
    print(f"cached / cold: {ratio:.3f}  target <= 0.10: {'PASS' if ratio <= 0.10 else 'FAIL'}")
    for label, run in (("cold", cold), ("cached", warm)):
        overhead = max(0.0, run["wall"] - run["covered"]) / run["stages"]
        print(
            f"orchestration overhead ({label}): {overhead:.2f} s per stage "
            f"(wall - time any task ran = {run['wall'] - run['covered']:.1f} s over {run['stages']} stages)  "
            f"target <= 2 s: {'PASS' if overhead <= 2.0 else 'FAIL'}"
        )


if __name__ == "__main__":
    main()
