"""Checking a stored object against its manifest (`Store.verify`), mixed into `zooflow.store.Store`.

Every check reads the manifest and lists the object's files (none missing, none extra, sizes as
listed). Contents are re-hashed, except where the files are provably unchanged since this host last
re-hashed them clean: a local store compares stat stamps (size, mtime, ctime, inode: git's rule),
an object store the listing's ETag, size and modification time. ``full=True`` re-hashes every byte.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zooflow import durable
from zooflow.errors import StoreError
from zooflow.filehash import sha256_file
from zooflow.records import Manifest, tree_digest

if TYPE_CHECKING:
    import fsspec

_CHUNK = 1 << 20


class Integrity:
    """`verify` and the stamps that let a cache hit skip re-hashing unchanged files."""

    if TYPE_CHECKING:  # what `Store` provides
        fs: fsspec.AbstractFileSystem
        is_local: bool

        def _p(self, *parts: str) -> str: ...
        def _read_json(self, path: str) -> Any: ...
        def _write_json(self, path: str, obj: Any) -> None: ...
        def manifest(self, digest: str) -> Manifest: ...
        def object_dir(self, digest: str) -> str: ...
        def read_only(self) -> str | None: ...
        @property
        def local_cache_dir(self) -> Path: ...

    def present_files(self, digest: str) -> set[str]:
        """Relative paths of the files actually below an object's ``files/`` folder."""
        return set(self._listing(digest))

    def _listing(self, digest: str) -> dict[str, dict[str, Any]]:
        """Relative path -> the file system's info (remote: size, ETag, ...) of each file of an object."""
        base = self.object_dir(digest) + "/files"
        if self.is_local:
            found: dict[str, dict[str, Any]] = {}
            for dirpath, _dirs, names in os.walk(base):
                for name in names:
                    found[(Path(dirpath) / name).relative_to(base).as_posix()] = {}
            return found
        try:
            listed = self.fs.find(base, detail=True)
        except FileNotFoundError:
            return {}
        return {str(p)[len(base) + 1 :]: info for p, info in listed.items() if not str(p).endswith("/")}

    def verify(self, digest: str, *, full: bool = False) -> list[str]:
        """Check an object against its manifest; returns the problems (empty = intact)."""
        try:
            manifest = self.manifest(digest)
        except StoreError as exc:
            return [exc.problem]
        problems = []
        if tree_digest(manifest.files) != digest:
            problems.append(f"manifest of {digest[:12]} lists files whose digest is not {digest[:12]}")
        present = self._listing(digest)
        extra = sorted(set(present) - {f.path for f in manifest.files})
        if extra:
            problems.append(f"{len(extra)} extra file(s) not in the manifest: {', '.join(extra[:5])}")
        base = self.object_dir(digest) + "/files"
        stats = None
        if not problems:
            stats = self._file_stats(base, manifest) if self.is_local else _remote_stats(present, manifest)
        if not full and stats is not None and self._stamp_holds(digest, stats):
            return []
        for entry in manifest.files:
            path = f"{base}/{entry.path}"
            if (self.is_local and not os.path.isfile(path)) or (not self.is_local and entry.path not in present):
                problems.append(f"{entry.path}: missing")
                continue
            size = os.path.getsize(path) if self.is_local else int(present[entry.path].get("size", -1))
            if size != entry.size:
                problems.append(f"{entry.path}: size {size} != {entry.size} in manifest")
                continue
            actual = sha256_file(path) if self.is_local else _sha256_remote(self.fs, path)
            if actual != entry.sha256:
                problems.append(f"{entry.path}: sha256 {actual[:12]} != {entry.sha256[:12]} in manifest")
        if not problems and stats is not None:
            with contextlib.suppress(StoreError, OSError):  # a stamp only saves time
                self._write_stamp(digest, {"at": time.time(), "files": stats})
        return problems

    def _stamp_upload(self, digest: str, staged: Path, manifest: Manifest) -> None:
        """After an upload to an object store: where the server's ETag of every file is the MD5 of the
        bytes sent (a single-part upload), the object holds what was hashed; stamp it, so that this
        host's first cache hit does not download it all again. A mismatch is a damaged upload."""
        present = self._listing(digest)
        stats = _remote_stats(present, manifest)
        if stats is None:
            return
        for entry in manifest.files:
            etag = str(stats[entry.path][1]).strip('"')
            if "-" in etag:
                return  # a multipart ETag is no MD5 of the content: the first check re-hashes
            if _md5_file(staged / entry.path) != etag:
                raise StoreError(
                    f"{entry.path} of artifact {digest[:12]} arrived damaged in the store (its ETag is not the MD5 sent)",
                    "run again: the next commit of the same content replaces the damaged copy",
                )
        with contextlib.suppress(OSError):
            self._write_stamp(digest, {"at": time.time(), "files": stats})

    # Why hand-written: re-hashing gigabytes of npz on every cache hit dominated cached runs; like
    # git's index, a local store skips the hash when no file's stat changed since the last full
    # re-hash. ctime cannot be set by tools (a write, chmod or replace changes it), and a file
    # whose ctime is within a second of the stamp is re-hashed ("racy" entries, as in git). What a
    # stamp cannot see (bit rot, a write below the file system) needs `verify(full=True)`. On an
    # object store an object is replaced only whole, with a new ETag and modification time.
    @staticmethod
    def _file_stats(base: str, manifest: Manifest) -> dict[str, list[Any]] | None:
        stats: dict[str, list[Any]] = {}
        for entry in manifest.files:
            try:
                st = os.stat(f"{base}/{entry.path}")
            except OSError:
                return None
            stats[entry.path] = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
        return stats

    def _stamp_path(self, digest: str) -> str:
        """Local stores keep stamps in the store; an object store's, on this host (its own re-hashes)."""
        if self.is_local:
            return self._p("cache", "verified", f"{digest}.json")
        return str(self.local_cache_dir / "verified" / f"{digest}.json")

    def _write_stamp(self, digest: str, stamp: dict[str, Any]) -> None:
        if self.is_local:
            if self.read_only() is None:
                self._write_json(self._stamp_path(digest), stamp)
        else:
            durable.write_atomic(self._stamp_path(digest), json.dumps(stamp).encode())

    def _stamp_holds(self, digest: str, stats: dict[str, list[Any]]) -> bool:
        try:
            with open(self._stamp_path(digest), "rb") as fh:
                stamp = json.loads(fh.read())
        except (OSError, ValueError):
            return False
        if not isinstance(stamp, dict) or stamp.get("files") != stats:
            return False
        if not self.is_local:
            return True
        settled = (float(stamp.get("at", 0)) - 1.0) * 1e9
        return all(ctime < settled for _, _, ctime, _ in stats.values())


def _remote_stats(present: dict[str, dict[str, Any]], manifest: Manifest) -> dict[str, list[Any]] | None:
    """Size, ETag and modification time of each file, from one listing; None where a file lacks an ETag."""
    stats: dict[str, list[Any]] = {}
    for entry in manifest.files:
        info = present.get(entry.path)
        etag = info.get("ETag") or info.get("etag") if info else None
        if info is None or not etag:
            return None
        stats[entry.path] = [int(info.get("size", -1)), str(etag), str(info.get("LastModified", ""))]
    return stats


def _md5_file(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _sha256_remote(fs: fsspec.AbstractFileSystem, path: str) -> str:
    digest = hashlib.sha256()
    with fs.open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
