"""Content hashes of dataset images, cached by stat stamp (as git's index caches blob ids).

A rescan re-hashes only the files whose (size, mtime, ctime, inode) changed since they were
hashed, and the "racy" ones written less than a second before their hash was taken (a same-size
edit within one clock tick would keep the stamp). Tools can set a file's mtime (``touch -d``,
``cp -p``, ``tar``) but not its ctime, so an in-place edit that restores size and mtime is still
noticed. What no stamp can show (bit rot, a write that bypasses the file system) takes a full
re-hash: ``full=True`` (``--rehash``; nightly regression runs always do it).

Why hand-written: no maintained library keeps a stat-keyed hash cache for a folder of files;
this is a JSON map plus a thread pool (hashlib releases the GIL while it hashes).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from zooflow import durable

_CHUNK = 1 << 20
_BATCH = 64  # files per hashing job
_RACY_NS = 1_000_000_000
CACHE_VERSION = 1


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


Stamp = tuple[int, int, int, int]


def stamp(st: os.stat_result) -> Stamp:
    """The part of a stat that changes when a file's content is written: size, mtime, ctime, inode.

    Scans keep this, not the ``stat_result`` (a third of its memory: 50,000 images are 50,000 of them)."""
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


class HashCache:
    """SHA-256 of the files below one folder, remembered by stat stamp in one JSON file."""

    def __init__(self, cache_dir: Path | None, root: Path) -> None:
        self.root = root
        real = os.path.realpath(root)
        name = hashlib.sha256(real.encode()).hexdigest()[:20]
        self.file = cache_dir / f"{name}.json" if cache_dir is not None else None
        self.entries: dict[str, list[int | str]] = {}
        self.rehashed = 0
        if self.file is not None and self.file.is_file():
            try:
                doc = json.loads(self.file.read_bytes())
                if doc.get("version") == CACHE_VERSION and doc.get("root") == real:
                    self.entries = doc["entries"]
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                self.entries = {}  # a damaged cache only costs a re-hash

    def _trusted(self, name: str, seen: Stamp) -> str | None:
        entry = self.entries.get(name)
        if not entry or len(entry) != 6:
            return None
        size, mtime, ctime, ino, digest, hashed_at = entry
        if (size, mtime, ctime, ino) != seen or not isinstance(hashed_at, int):
            return None
        if ctime >= hashed_at - _RACY_NS or mtime >= hashed_at - _RACY_NS:  # type: ignore[operator]
            return None  # racy: written too close to the hash to trust the stamp
        return str(digest)

    def digests(self, stats: Mapping[str, Stamp], *, full: bool = False, workers: int = 4) -> dict[str, str]:
        """name -> SHA-256 for every file in `stats` (names relative to the root, `stamp`s as scanned)."""
        result: dict[str, str] = {}
        todo: list[str] = []
        for name, st in stats.items():
            known = None if full else self._trusted(name, st)
            if known is None:
                todo.append(name)
            else:
                result[name] = known

        def one(name: str) -> tuple[str, str, int]:
            hashed_at = time.time_ns()  # taken before the read, as the racy check needs
            return name, sha256_file(self.root / name), hashed_at

        def batch(names: list[str]) -> list[tuple[str, str, int]]:
            return [one(name) for name in names]

        if todo:
            # ThreadPoolExecutor.map makes one future per item (its chunksize is ignored for threads):
            # 50,000 futures were ~70 MB, so the names go in batches of _BATCH.
            batches = [todo[i : i + _BATCH] for i in range(0, len(todo), _BATCH)]
            with ThreadPoolExecutor(max(1, min(workers, len(batches)))) as pool:
                for done in pool.map(batch, batches):
                    for name, digest, hashed_at in done:
                        result[name] = digest
                        self.entries[name] = [*stats[name], digest, hashed_at]
        self.rehashed = len(todo)
        stale = set(self.entries) - set(stats)
        for name in stale:
            del self.entries[name]
        if (todo or stale) and self.file is not None:
            self._save()
        return result

    def _save(self) -> None:
        assert self.file is not None
        # the cache only saves time: a read-only or full cache folder means re-hashing next time
        with contextlib.suppress(OSError):
            durable.write_atomic(self.file, self._chunks())

    def _chunks(self) -> Iterator[str]:
        """The cache file's JSON, one entry per chunk (50,000 entries are ~8 MB as one string)."""
        head = {"version": CACHE_VERSION, "root": os.path.realpath(self.root)}
        yield json.dumps(head, separators=(",", ":"))[:-1] + ',"entries":{'
        for number, (name, entry) in enumerate(self.entries.items()):
            yield ("," if number else "") + json.dumps(name) + ":" + json.dumps(entry, separators=(",", ":"))
        yield "}}"
