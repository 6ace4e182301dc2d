"""Evaluation speed: 50,000 outputs x 1000 classes scored in <= 5 s (issue 5).

Runs, in one process on the same data:
- zooflow's vectorised path: pairing by index and name, top-1/top-5 with exact tie rules,
  per-class accuracy and fidelity vs a reference (agreement, flips, SQNR, cosine);
- a baseline that scores like the zoo's scripts: one image at a time, ``np.argsort`` per row
  (timed on a subset and extrapolated to 50,000), compared with zooflow's top-1/top-5 alone
  (the full stage also pairs, scores the reference and computes fidelity).

Prints seconds and the ratio. Usage: ``uv run python benchmarks/evaluate.py [--images 50000]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from zooflow import evaluate as ev
from zooflow import truth as tr

TARGET_SECONDS = 5.0


def data(images: int, classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Logits near 70% top-1, a noisier copy (the 'int8' run), labels and names."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, images)
    reference = rng.normal(0, 1, (images, classes)).astype(np.float32)
    reference[np.arange(images), labels] += 3.9
    run = (reference + rng.normal(0, 0.3, reference.shape)).astype(np.float32)
    names = [f"ILSVRC2012_val_{i + 1:08d}.JPEG" for i in range(images)]
    return reference, run, labels, names


def zooflow_path(reference: np.ndarray, run: np.ndarray, labels: np.ndarray, names: list[str]) -> dict[str, float]:
    """Everything the evaluate stage computes on the matrices (storage excluded)."""
    truth = tr.Truth(names=names, labels=labels)
    order = np.random.default_rng(1).permutation(len(names))  # outputs arrive in shard order, not record order
    paired = tr.pair(order, [names[i] for i in order], run[order], truth)
    scores = ev.score(paired, truth)
    ref_scores = ev.score(reference, truth)
    scores.per_class()
    fid = ev.fidelity(paired, reference, scores, ref_scores, names, max_flips=200)
    return {"top1": scores.top1, "top5": scores.top5, "agreement": fid["agreement"]}


def baseline(run: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """The zoo's way: per image, a full argsort, then compare the top entries."""
    top1 = top5 = 0
    for row, label in zip(run, labels, strict=True):
        ranked = np.argsort(row)[::-1][:5]
        top1 += int(ranked[0] == label)
        top5 += int(label in ranked)
    return 100 * top1 / len(labels), 100 * top5 / len(labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--baseline-images", type=int, default=5_000)
    args = parser.parse_args()
    reference, run, labels, names = data(args.images, args.classes)

    zooflow_path(reference[:1000], run[:1000], labels[:1000], names[:1000])  # warm-up
    times = []
    for _ in range(3):
        start = time.perf_counter()
        result = zooflow_path(reference, run, labels, names)
        times.append(time.perf_counter() - start)
    best = min(times)

    score_times = []
    for _ in range(3):
        start = time.perf_counter()
        ev.score(run, tr.Truth(names=names, labels=labels))
        score_times.append(time.perf_counter() - start)
    score_only = min(score_times)

    n = min(args.baseline_images, args.images)
    start = time.perf_counter()
    b_top1, _ = baseline(run[:n], labels[:n])
    base = (time.perf_counter() - start) * args.images / n
    sub = ev.score(run[:n], tr.Truth(names=names[:n], labels=labels[:n]))
    assert abs(sub.top1 - b_top1) < 1e-9, "both paths must agree on top-1 (no ties in random data)"

    print(f"images x classes          : {args.images} x {args.classes}")
    print(f"zooflow evaluate (best of 3): {best:.2f} s  (runs: {', '.join(f'{t:.2f}' for t in times)})")
    print(f"  top-1 {result['top1']:.2f}  top-5 {result['top5']:.2f}  agreement {result['agreement']:.2f}")
    print(f"  of which top-1/top-5 of one output matrix: {score_only:.2f} s")
    print(f"per-image argsort baseline : {base:.2f} s for top-1/top-5 only (extrapolated from {n} images)")
    print(f"speed-up, top-1/top-5 vs baseline: {base / score_only:.1f}x")
    verdict = "PASS" if best <= TARGET_SECONDS else "FAIL"
    print(f"target <= {TARGET_SECONDS:.0f} s for {args.images} outputs: {verdict} ({best:.2f} s)")


if __name__ == "__main__":
    main()
