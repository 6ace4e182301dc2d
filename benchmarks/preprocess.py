"""Benchmark: the exact ``model`` npz preprocessing vs torchvision's reference transform.

Measured in one run on generated ImageNet-sized JPEGs (500x375 / 375x500 / 500x333, quality 90,
textured so they decode like photos):

1. images/s per core: zooflow's exact path (decode -> resize -> crop -> uint8, what the npz
   stage stores) vs torchvision ``Resize(256) / CenterCrop(224) / ToTensor / Normalize`` from
   the same files (torch on 1 thread), best of interleaved repeats;
2. scaling of both on 2 processes;
3. the whole npz stage (``build_npz``, 2 workers, writing files and hashing into a store),
   extrapolated to the 50,000 images of ImageNet val;
4. peak memory of the npz stage (what it adds to its process, and its largest worker) at 2,000 vs
   20,000 images, and apart, the scan's before it (it keeps one record per image).

Targets (issue 3): >= 1.1x torchvision per core, >= 1.8x on 2 processes, 50k in <= 4 min on
2 cores, peak memory independent of the image count.

    uv run python benchmarks/preprocess.py [--images 400] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

SIZES = ((500, 375), (375, 500), (500, 333))


def make_images(folder: Path, count: int) -> list[Path]:
    """ImageNet-sized textured JPEGs (quality 90)."""
    from zooflow.demo import _texture

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        width, height = SIZES[i % len(SIZES)]
        path = folder / f"ILSVRC2012_val_{i + 1:08d}.JPEG"
        Image.fromarray(_texture(rng, width, height, i % 1000)).save(path, quality=90)
        paths.append(path)
    return paths


def run_ours(paths: list[str]) -> int:
    """zooflow's exact model path: what `npz.encode` computes for each image."""
    from zooflow.npz import NpzParams, encode

    params = NpzParams.for_format("model", None, None)
    transform = params.transform_obj()
    for path in paths:
        encode(Path(path), params, transform)
    return len(paths)


def run_torchvision(paths: list[str]) -> int:
    """The seed's reference: torchvision on PIL images opened like ImageFolder does."""
    import torch
    import torchvision.transforms as T

    torch.set_num_threads(1)
    transform = T.Compose(
        [T.Resize(256), T.CenterCrop(224), T.ToTensor(), T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])]
    )
    for path in paths:
        with open(path, "rb") as fh:
            transform(Image.open(fh).convert("RGB"))
    return len(paths)


def throughput(fn, paths: list[str], processes: int, repeats: int) -> float:  # type: ignore[no-untyped-def]
    """Best images/s over `repeats` runs, work split over `processes` (pool started before timing)."""
    best = 0.0
    chunks = [paths[i::processes] for i in range(processes)]
    with ProcessPoolExecutor(processes) as pool:
        list(pool.map(fn, [c[:4] for c in chunks]))  # warm: imports, first decode
        for _ in range(repeats):
            start = time.perf_counter()
            done = sum(pool.map(fn, chunks))
            best = max(best, done / (time.perf_counter() - start))
    return best


def stage_run(store: str, data: str, limit: int | None, workers: int) -> dict[str, float]:
    """Run scan + npz stage in a fresh process; report wall time and peak RSS of each phase.

    RSS is sampled every 20 ms with psutil over the process and its npz pool workers
    (``RUSAGE_CHILDREN`` would also count helper processes and is reported only at exit):
    ``rss_start`` after imports, ``rss_scan`` the peak while scanning (it keeps one record per image),
    ``rss_before`` when the npz stage starts, ``rss_npz`` the stage's peak, ``rss_worker`` its
    largest worker's.
    """
    code = f"""
import json, tempfile, threading, time, psutil
from pathlib import Path
from zooflow import datasets, npz
from zooflow.config import DataSpec
from zooflow.store import Store
if __name__ == "__main__":
    me, done = psutil.Process(), threading.Event()
    peak = {{"phase": "scan", "scan": 0, "npz": 0, "worker": 0}}
    def sample():
        while not done.is_set():
            rss = me.memory_info().rss
            peak[peak["phase"]] = max(peak[peak["phase"]], rss)
            for child in me.children(recursive=True):
                try:
                    if "spawn_main" in " ".join(child.cmdline()):
                        peak["worker"] = max(peak["worker"], child.memory_info().rss)
                except psutil.Error:
                    pass
            time.sleep(0.02)
    start = me.memory_info().rss
    sampler = threading.Thread(target=sample)
    sampler.start()
    hashes = Path(tempfile.mkdtemp())  # a cold hash cache, as on a first run
    ds = datasets.scan(DataSpec(path={data!r}), hash_cache=hashes).limited({limit!r})
    time.sleep(0.05)
    before = me.memory_info().rss
    peak["phase"] = "npz"
    t = time.perf_counter()
    npz.build_npz(ds, Store({store!r}), npz.NpzParams.for_format("model", None, None), shard_size=1000,
                  workers={workers}, show_progress=False)
    wall = time.perf_counter() - t
    done.set()
    sampler.join()
    mib = 2**20
    print(json.dumps({{"images": len(ds.records), "wall": wall, "rss_start": start / mib,
        "rss_scan": max(peak["scan"], before) / mib, "rss_before": before / mib,
        "rss_npz": max(peak["npz"], before) / mib, "rss_worker": peak["worker"] / mib}}))
"""
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as fh:
        fh.write(code)
    out = subprocess.run([sys.executable, fh.name], capture_output=True, text=True, check=True)
    os.unlink(fh.name)
    return json.loads(out.stdout.strip().splitlines()[-1])


def labelled_set(folder: Path, images: list[Path], count: int) -> str:
    """A flat dataset of `count` files (hard links cycling over `images`) with val_label.txt."""
    val = folder / "val"
    val.mkdir(parents=True)
    lines = []
    for i in range(count):
        name = f"ILSVRC2012_val_{i + 1:08d}.JPEG"
        os.link(images[i % len(images)], val / name)
        lines.append(f"{name} {i % 1000}")
    (folder / "val_label.txt").write_text("\n".join(lines) + "\n")
    return str(val)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=400, help="distinct generated JPEGs")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="200 and 2,000 images for the memory run (not 2k, 20k)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        images = make_images(root / "jpegs", args.images)
        paths = [str(p) for p in images]
        print(
            f"{len(paths)} JPEGs, mean {np.mean([p.stat().st_size for p in images]) / 1024:.0f} KiB, cores: {os.cpu_count()}"
        )

        rows = {}
        for processes in (1, 2):
            rows[("torchvision", processes)] = throughput(run_torchvision, paths, processes, args.repeats)
            rows[("zooflow", processes)] = throughput(run_ours, paths, processes, args.repeats)
        for (name, processes), rate in rows.items():
            print(f"  {name:12s} {processes} process(es): {rate:7.1f} images/s")
        per_core = rows[("zooflow", 1)] / rows[("torchvision", 1)]
        scaling = rows[("zooflow", 2)] / rows[("zooflow", 1)]
        print(
            f"exact path vs torchvision, per core: {per_core:.2f}x   (target >= 1.10x)  {'PASS' if per_core >= 1.1 else 'FAIL'}"
        )
        print(
            f"exact path on 2 processes vs 1:      {scaling:.2f}x   (target >= 1.80x)  {'PASS' if scaling >= 1.8 else 'FAIL'}"
        )

        small = labelled_set(root / "set2k", images, 200 if args.quick else 2000)
        run = stage_run(str(root / "store2k"), small, None, workers=2)
        minutes = run["wall"] / run["images"] * 50_000 / 60
        print(
            f"npz stage, 2 workers: {run['images']} images in {run['wall']:.1f} s "
            f"({run['images'] / run['wall']:.0f} images/s) -> 50,000 in {minutes:.1f} min (target <= 4)  {'PASS' if minutes <= 4 else 'FAIL'}"
        )
        large = labelled_set(root / "set10x", images, run["images"] * 10)
        big = stage_run(str(root / "store10x"), large, None, workers=2)
        print(memory_report(run, big))


def memory_report(small: dict[str, float], big: dict[str, float]) -> str:
    """The memory lines: the npz stage (target: flat) and, apart, the scan that precedes it."""
    lines = []
    for run in (small, big):
        lines.append(
            f"peak RSS at {run['images']:6,.0f} images: npz stage {run['rss_npz']:.0f} MiB "
            f"({run['rss_npz'] - run['rss_before']:+.1f} over the scanned dataset it starts with), largest worker "
            f"{run['rss_worker']:.0f} MiB; scan {run['rss_scan']:.0f} MiB ({run['rss_scan'] - run['rss_start']:+.1f} "
            "over the imports)"
        )
    # The stage's own memory: what it adds to its process (2 MiB of slack: sampling noise), and its workers.
    small_added, big_added = (run["rss_npz"] - run["rss_before"] for run in (small, big))
    worker = big["rss_worker"] / small["rss_worker"]
    flat = worker <= 1.2 and big_added <= 1.2 * max(small_added, 0.0) + 2.0
    lines.append(
        f"npz stage memory for 10x the images: largest worker {worker:.2f}x, the stage adds {big_added:+.1f} vs "
        f"{small_added:+.1f} MiB (target: flat, <= 1.2x)  {'PASS' if flat else 'FAIL'}"
    )
    per_image = (big["rss_scan"] - small["rss_scan"]) / (big["images"] - small["images"]) * 2**20
    lines.append(
        f"the scan before it keeps one record per image: {per_image:.0f} bytes per image at its peak "
        f"(ImageNet's 50,000: {per_image * 50_000 / 2**20:.0f} MiB)"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
