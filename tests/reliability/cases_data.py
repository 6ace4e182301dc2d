"""Stale data: an image changed in place is noticed, and exactly the work that depends on it is redone."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.reliability.catalogue import case
from zooflow import datasets, npz
from zooflow.config import DataSpec
from zooflow.errors import DatasetError
from zooflow.store import Store


def _same_size_edit(path: Path) -> None:
    """Replace a JPEG with other pixels at exactly the same byte size and mtime (padding after EOI)."""
    stat = path.stat()
    with Image.open(path) as image:
        size = image.size
    pixels = np.random.default_rng(7).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    for quality in (90, 70, 50, 30, 10):
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
        if buffer.tell() <= stat.st_size:
            break
    data = buffer.getvalue()
    assert len(data) <= stat.st_size, "could not make a smaller JPEG"
    path.write_bytes(data + b"\0" * (stat.st_size - len(data)))  # a decoder stops at EOI
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # a careless tool restores the mtime
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns


def _copy(request: pytest.FixtureRequest) -> Path:
    tmp: Path = request.getfixturevalue("tmp_path")
    shutil.copytree(request.getfixturevalue("demo_small"), tmp / "d")
    return tmp / "d"


@case(
    "image-changed-same-size",
    area="stale data",
    fault="an image rewritten in place with other pixels, same size, mtime restored",
    sees="the rescan gives the dataset a new identity; the next npz run recomputes exactly the shard that holds it",
    kept="every other shard (reused, not recomputed)",
    fixed_in="issue 10 #4",
)
def image_changed(request: pytest.FixtureRequest) -> None:
    root = _copy(request)
    store = Store(request.getfixturevalue("tmp_path") / "s")
    cache = Path(store.root) / "cache" / "file-hashes"
    spec = DataSpec(path=str(root / "val"))
    params = npz.NpzParams.for_format("vastai", None, None)
    first = datasets.scan(spec, hash_cache=cache)
    before = npz.build_npz(first, store, params, shard_size=8, show_progress=False)
    victim = first.records[13]  # in shard 1 of 5
    _same_size_edit(root / "val" / victim.name)
    second = datasets.scan(spec, hash_cache=cache)
    assert second.identity != first.identity
    assert [r.name for r in second.records if r not in first.records] == [victim.name]
    built: list[int] = []
    original = npz.build_shard

    def counting(store_, root_, records, first_index, *args, **kwargs):  # type: ignore[no-untyped-def]
        built.append(first_index)
        return original(store_, root_, records, first_index, *args, **kwargs)

    npz.build_shard = counting  # type: ignore[assignment]
    try:
        after = npz.build_npz(second, store, params, shard_size=8, show_progress=False)
    finally:
        npz.build_shard = original  # type: ignore[assignment]
    assert built == [8]
    old = store.manifest(before.digest).inputs
    new = store.manifest(after.digest).inputs
    changed = [i for i, (a, b) in enumerate(zip(old, new, strict=True)) if a.digest != b.digest]
    assert changed == [1]


@case(
    "image-changed-during-run",
    area="stale data",
    fault="an image changed after the dataset was scanned but before its npz shard was made",
    sees="the shard fails: the image changed since the scan, run again (never encoded under the old identity)",
    kept="the other shards",
    fixed_in="issue 10 #4",
)
def image_changed_during_run(request: pytest.FixtureRequest) -> None:
    root = _copy(request)
    store = Store(request.getfixturevalue("tmp_path") / "s")
    dataset = datasets.scan(DataSpec(path=str(root / "val")), hash_cache=Path(store.root) / "cache" / "h")
    _same_size_edit(root / "val" / dataset.records[2].name)
    with pytest.raises(DatasetError, match="changed since the dataset was scanned") as exc:
        npz.build_npz(
            dataset, store, npz.NpzParams.for_format("vastai", None, None), shard_size=12, show_progress=False
        )
    assert "1 of 3 npz shard(s) failed (2 finished and kept)" in exc.value.problem


@case(
    "rescan-reads-no-unchanged-image",
    area="stale data",
    fault="a rescan of an unchanged folder (every run rescans its data)",
    sees="no image is read again: hashes come from the stat-stamped cache (50,000 images in about a second: benchmarks/rescan.py)",
    kept="-",
    fixed_in="issue 10 #4",
)
def rescan_cached(request: pytest.FixtureRequest) -> None:
    import time

    from zooflow.filehash import HashCache, stamp

    root = _copy(request)
    cache = request.getfixturevalue("tmp_path") / "hashes"
    stats = {p.name: stamp(p.stat()) for p in (root / "val").iterdir()}
    first = HashCache(cache, root / "val")
    digests = first.digests(stats)
    assert first.rehashed == len(stats)
    time.sleep(1.1)  # past the racy window of files hashed right after they were written
    assert HashCache(cache, root / "val").digests(stats) == digests
    settled = HashCache(cache, root / "val")
    assert settled.digests(stats) == digests and settled.rehashed == 0
    full = HashCache(cache, root / "val")
    assert full.digests(stats, full=True) == digests and full.rehashed == len(stats)
