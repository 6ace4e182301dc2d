"""Dataset rescan target (issue 10): with each image's content hash in the dataset's identity, a
rescan of 50,000 unchanged images stays about a second.

In one process, on a flat ImageNet-layout folder of N files (small random files: what a rescan
costs does not depend on image size, only the first, cold hash does):

- baseline: the scan as it was before content hashes (list the folder, read the labels, stat),
  i.e. `datasets.scan` with hashing switched off;
- cold: the first scan with hashes (every file read and hashed; 4 threads);
- warm: the rescan of the unchanged folder (hashes from the stat-stamped cache, no file read);
- one changed: the rescan after one file was rewritten in place with the same size and mtime
  (exactly that file is re-hashed, and the dataset's identity changes).

Prints the times and warm/baseline. Usage: ``uv run python benchmarks/rescan.py [--images 50000]``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from unittest import mock


def make_folder(root: Path, images: int, size: int) -> None:
    """``val/ILSVRC2012_val_%08d.JPEG`` files of random bytes and a val_label.txt."""
    val = root / "val"
    val.mkdir(parents=True)
    lines = []
    for number in range(1, images + 1):
        name = f"ILSVRC2012_val_{number:08d}.JPEG"
        (val / name).write_bytes(os.urandom(size))
        lines.append(f"{name} {number % 1000}\n")
    (root / "val_label.txt").write_text("".join(lines))


def timed(fn):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--size", type=int, default=2048, help="bytes per file")
    args = parser.parse_args()

    from zooflow import datasets
    from zooflow.config import DataSpec
    from zooflow.filehash import HashCache

    with tempfile.TemporaryDirectory(prefix="zooflow-rescan-") as tmp:
        root = Path(tmp)
        make_folder(root, args.images, args.size)
        spec = DataSpec(path=str(root / "val"))
        cache = root / "hashes"

        def no_hashes(self, stats, *, full=False, workers=4):  # type: ignore[no-untyped-def]
            return dict.fromkeys(stats, "")

        with mock.patch.object(HashCache, "digests", no_hashes):
            datasets.scan(spec, hash_cache=cache)  # warm the OS's caches for every variant alike
            _, baseline = timed(lambda: datasets.scan(spec, hash_cache=cache))
        cold_set, cold = timed(lambda: datasets.scan(spec, hash_cache=cache))
        time.sleep(1.2)  # files written within a second of their hash are re-hashed once (racy)
        datasets.scan(spec, hash_cache=cache)
        warm_set, warm = timed(lambda: datasets.scan(spec, hash_cache=cache))
        assert warm_set.identity == cold_set.identity

        victim = root / "val" / warm_set.records[args.images // 2].name
        stat = victim.stat()
        victim.write_bytes(os.urandom(stat.st_size))
        os.utime(victim, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        changed_set, changed = timed(lambda: datasets.scan(spec, hash_cache=cache))
        differ = [a.name for a, b in zip(warm_set.records, changed_set.records, strict=True) if a != b]

    print(f"{args.images} files of {args.size} bytes, 2 cores")
    print(f"  baseline scan (no content hashes): {baseline:6.2f} s")
    print(f"  first scan, every file hashed:      {cold:6.2f} s")
    print(f"  rescan, unchanged:                  {warm:6.2f} s   ({warm / baseline:.2f}x the baseline)")
    print(f"  rescan, one file edited in place:   {changed:6.2f} s   (records that differ: {differ})")
    print(f"  identity changed: {changed_set.identity != warm_set.identity}")


if __name__ == "__main__":
    main()
