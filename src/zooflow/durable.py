"""Durable small writes, exclusive creates, advisory locks and process ownership, for local paths.

Why hand-written: fsspec offers neither an atomic exclusive create nor a lock, and the standard
library spreads the pieces (``os.link``, ``os.replace``, ``fcntl.flock``, ``fsync`` of a folder)
over several modules. Each function here is a few lines over those calls.

- `write_atomic`: temp file in the same folder, fsync, rename over the target, fsync the folder.
  A reader sees the old content or the new, never a part; a full disk leaves the old file (or
  none) and no temp file behind.
- `create_atomic`: the same, but the target must not exist (``os.link`` fails if it does), so
  concurrent writers each get a distinct name and nobody ever sees an empty file.
- `FileLock`: an exclusive ``flock``; the kernel drops it when its holder dies (even by SIGKILL),
  so a crashed run never leaves a lock that blocks the next one.
- `owner_id` / `owner_alive`: each process holds a lock on ``<dir>/<host>-<pid>-<nonce>.lock`` for
  its lifetime; staging folders carry that id, and whoever can take the lock knows the owner is gone.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import socket
import threading
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from zooflow.errors import DiskFullError, ZooflowError

_TMP_MARK = ".tmp-"


def fsync_dir(folder: str | os.PathLike[str]) -> None:
    """Make a rename or link inside `folder` durable (best effort where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_temp(path: Path, data: bytes | Iterable[str]) -> Path:
    """A synced temp file beside `path` holding `data` (bytes, or text chunks streamed as UTF-8)."""
    tmp = path.with_name(f"{path.name}{_TMP_MARK}{uuid.uuid4().hex}")
    try:
        with open(tmp, "xb") as fh:
            if isinstance(data, bytes):
                fh.write(data)
            else:
                for chunk in data:  # e.g. json's iterencode: no whole copy of a large document in memory
                    fh.write(chunk.encode())
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def write_atomic(path: str | os.PathLike[str], data: bytes | Iterable[str]) -> None:
    """Replace `path` with `data` (bytes, or text chunks) atomically and durably."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _write_temp(target, data)
    try:
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)


def create_atomic(path: str | os.PathLike[str], data: bytes) -> bool:
    """Create `path` holding `data`, complete or not at all; False if it already exists."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _write_temp(target, data)
    try:
        os.link(tmp, target)  # fails with FileExistsError: first writer wins
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(target.parent)
    return True


def is_temp_name(name: str) -> bool:
    """Whether a file name is one of `write_atomic`'s temp files."""
    return _TMP_MARK in name


class FileLock:
    """An exclusive advisory lock on a file (``flock``), released on exit or when the process dies.

    Locks taken through different `FileLock` objects exclude each other, also between threads of
    one process (each has its own open file description).
    """

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True) -> None:
        self.path = Path(path)
        self.create = create  # False: only an existing file, opened read-only (a probe; works on a read-only store)
        self._fd: int | None = None

    def acquire(self, blocking: bool = True) -> bool:
        """Take the lock; with ``blocking=False`` return False at once if someone holds it."""
        if self.create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT if self.create else os.O_RDONLY, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def release(self) -> None:
        """Drop the lock (closing the descriptor releases it)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


# ------------------------------------------------------------------------------ process ownership
_OWNERS: dict[str, tuple[str, FileLock]] = {}
_OWNERS_LOCK = threading.Lock()


def host_tag() -> str:
    """This host's name as it appears in owner ids (no '-' so ids split cleanly)."""
    return socket.gethostname().replace("-", "_") or "host"


def owner_id(owners_dir: str | os.PathLike[str]) -> str:
    """This process's owner id under `owners_dir`, holding its lock file for the process lifetime."""
    key = str(Path(owners_dir))
    pid = os.getpid()
    with _OWNERS_LOCK:
        found = _OWNERS.get(key)
        if found is not None and found[0].split("-")[1] == str(pid):
            return found[0]
        ident = f"{host_tag()}-{pid}-{uuid.uuid4().hex[:8]}"
        lock = FileLock(Path(owners_dir) / f"{ident}.lock")
        lock.acquire()
        _OWNERS[key] = (ident, lock)
        return ident


def owner_alive(owners_dir: str | os.PathLike[str], ident: str) -> bool | None:
    """True if the owner still runs, False if it is gone, None if it is another host's (unknowable here)."""
    parts = ident.split("-")
    if len(parts) != 3 or parts[0] != host_tag():
        return None
    path = Path(owners_dir) / f"{ident}.lock"
    if not path.exists():
        return False
    probe = FileLock(path, create=False)
    try:
        taken = probe.acquire(blocking=False)
    except FileNotFoundError:
        return False  # released and removed meanwhile
    if taken:
        probe.release()
        return False
    return True


def release_dead_owner(owners_dir: str | os.PathLike[str], ident: str) -> None:
    """Remove a dead owner's lock file."""
    (Path(owners_dir) / f"{ident}.lock").unlink(missing_ok=True)


# ------------------------------------------------------------------------------------ disk full
def is_disk_full(exc: BaseException) -> bool:
    """Whether an error is 'no space left on device' (or a quota)."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def _human(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"  # pragma: no cover - the loop returns


def _nearest(path: Path) -> Path:
    """`path` or its nearest existing parent (what a full disk leaves of a path may be gone)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def disk_full_error(exc: OSError, where: str | os.PathLike[str], what: str) -> DiskFullError:
    """The error for a full disk: which path, during what, how much space is left there."""
    # a copy or rename names its source first and its destination second (shutil.copyfile's sendfile
    # too): the destination is what filled up
    path = Path(getattr(exc, "filename2", None) or getattr(exc, "filename", None) or where)
    probe = _nearest(path)
    try:
        usage = shutil.disk_usage(probe)
        space = f"{_human(usage.free)} free of {_human(usage.total)} on the file system holding {probe}"
    except OSError:
        space = "free space unknown"
    return DiskFullError(
        f"disk full while {what} wrote {path} ({space})",
        "free space there (or point --store / --out at a larger disk) and run again: "
        "everything finished before this is kept, and a rerun resumes from it",
    )


NEARLY_FULL = 1 << 20  # bytes: below this, a failed write is taken for a full disk


def _free(where: str | os.PathLike[str]) -> int | None:
    try:
        return shutil.disk_usage(_nearest(Path(where))).free
    except OSError:
        return None


@contextlib.contextmanager
def disk_full_as_error(where: str | os.PathLike[str], what: str) -> Iterator[None]:
    """Turn 'no space left' inside the block into a `DiskFullError` that says where and during what.

    Tools often wrap ENOSPC in their own errors (ONNX Runtime: "Protobuf serialization failed"),
    so any other failure while the file system holding `where` has under 1 MiB left is reported
    as a full disk too, with the tool's own message.
    """
    try:
        yield
    except OSError as exc:
        if is_disk_full(exc):
            raise disk_full_error(exc, where, what) from None
        raise
    except ZooflowError:
        raise
    except Exception as exc:
        free = _free(where)
        if free is None or free >= NEARLY_FULL:
            raise
        full = disk_full_error(OSError(errno.ENOSPC, "No space left on device"), where, what)
        raise DiskFullError(
            f"{full.problem}; the tool said: {type(exc).__name__}: {str(exc)[:200]}", full.fix
        ) from None
