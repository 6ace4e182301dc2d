"""Benchmark: the exact ``model`` npz preprocessing vs torchvision's reference transform.

Measured in one run on generated ImageNet-sized JPEGs (500x375 / 375x500 / 500x333, quality 90,
textured so they decode like photos):

1. images/s per core: zooflow's exact path (decode -> resize -> crop -> uint8, what the npz
   stage stores) vs torchvision ``Resize(256) / CenterCrop(224) / ToTensor / Normalize`` from
   the same files (torch on 1 thread), best of interleaved repeats;
2. scaling of both on 2 processes;
3. the whole npz stage (``build_npz``, 2 workers, writing files and hashing into a store),
   extrapolated to the 50,000 images of ImageNet val;
4. peak memory (RSS of the stage's process and of its largest worker) at 2,000 vs 20,000 images.

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
    """Run scan + npz stage in a fresh process; report wall time and peak RSS (self, largest worker).

    RSS is sampled every 20 ms with psutil over the process and its pool workers
    (``RUSAGE_CHILDREN`` would also count helper processes and is reported only at exit).
    """
    code = f"""
import json, threading, time, psutil
from zooflow import datasets, npz
from zooflow.config import DataSpec
from zooflow.store import Store
if __name__ == "__main__":
    me, peak, done = psutil.Process(), {{"self": 0, "worker": 0}}, threading.Event()
    def sample():
        while not done.is_set():
            peak["self"] = max(peak["self"], me.memory_info().rss)
            for child in me.children(recursive=True):
                try:
                    if "spawn_main" in " ".join(child.cmdline()):
                        peak["worker"] = max(peak["worker"], child.memory_info().rss)
                except psutil.Error:
                    pass
            time.sleep(0.02)
    sampler = threading.Thread(target=sample)
    sampler.start()
    ds = datasets.scan(DataSpec(path={data!r})).limited({limit!r})
    t = time.perf_counter()
    npz.build_npz(ds, Store({store!r}), npz.NpzParams.for_format("model", None, None), shard_size=1000,
                  workers={workers}, show_progress=False)
    wall = time.perf_counter() - t
    done.set()
    sampler.join()
    print(json.dumps({{"images": len(ds.records), "wall": wall,
        "rss_self_mb": peak["self"] / 2**20, "rss_worker_mb": peak["worker"] / 2**20}}))
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
    parser.add_argument("--quick", action="store_true", help="skip the 20,000-image memory run")
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

        small = labelled_set(root / "set2k", images, 2000)
        run = stage_run(str(root / "store2k"), small, None, workers=2)
        minutes = run["wall"] / run["images"] * 50_000 / 60
        print(
            f"npz stage, 2 workers: {run['images']} images in {run['wall']:.1f} s "
            f"({run['images'] / run['wall']:.0f} images/s) -> 50,000 in {minutes:.1f} min (target <= 4)  {'PASS' if minutes <= 4 else 'FAIL'}"
        )
        if not args.quick:
            large = labelled_set(root / "set20k", images, 20_000)
            big = stage_run(str(root / "store20k"), large, None, workers=2)
            print(
                f"peak RSS at  2,000 images: stage {run['rss_self_mb']:.0f} MiB, largest worker {run['rss_worker_mb']:.0f} MiB"
            )
            print(
                f"peak RSS at 20,000 images: stage {big['rss_self_mb']:.0f} MiB, largest worker {big['rss_worker_mb']:.0f} MiB"
            )
            growth = max(big["rss_self_mb"] / run["rss_self_mb"], big["rss_worker_mb"] / run["rss_worker_mb"])
            print(
                f"memory growth for 10x the images: {growth:.2f}x (target: flat, <= 1.2x)  {'PASS' if growth <= 1.2 else 'FAIL'}"
            )


if __name__ == "__main__":
    main()
