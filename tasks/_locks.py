"""Prefect lock managers: concurrent runs of the same work compute it once.

``ZOOFLOW_LOCKS`` chooses: unset (or ``flock``) locks among the processes of one host, with a
``flock`` under the store (local stores) or under the host's cache folder (remote ones);
``redis://host:6379/0`` locks among every host that uses that Redis (`tasks._lease`), for a team
whose hosts share one store.

Tasks run with SERIALIZABLE isolation: before a task computes, it takes the lock of its cache key;
a second run (another process, thread or Dask worker on this host) that reaches the same key
waits, then finds the first run's result and ends Cached.

Why not Prefect's `FileSystemLockManager`: its lock is a file that only its holder removes, with
no expiry by default, so a run killed while holding one blocks every later run of that key.
A ``flock`` is dropped by the kernel when its holder dies, even by SIGKILL.
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

from zooflow.durable import FileLock
from zooflow.errors import ConfigError
from zooflow.store import Store

LOCKS_ENV = "ZOOFLOW_LOCKS"
LEASE_ENV = "ZOOFLOW_LOCK_LEASE"
REDIS_SCHEMES = ("redis://", "rediss://", "unix://", "redis+sentinel://", "rediss+sentinel://")


class FlockLockManager:
    """Per-key exclusive locks under one folder (implements `prefect.locking.protocol.LockManager`)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._held: dict[str, tuple[str, FileLock]] = {}
        self._guard = threading.Lock()

    def __deepcopy__(self, memo: dict[int, Any]) -> FlockLockManager:
        return self  # shared by every copy of a cache policy: the held locks live here

    def __reduce__(self) -> tuple[Any, ...]:
        # A task sent to a Dask worker carries its cache policy, and with it this manager: the worker
        # takes its own process's manager of the same folder (locks held here never travel; a
        # threading.Lock cannot be pickled, which stopped every `--runner dask` on a local store).
        return (lock_manager, (self.folder,))

    def _path(self, key: str) -> Path:
        return self.folder / f"{key.replace('/', '_')}.lock"

    def acquire_lock(
        self, key: str, holder: str, acquire_timeout: float | None = None, hold_timeout: float | None = None
    ) -> bool:
        """Take the key's lock (waiting up to `acquire_timeout` seconds; forever if None)."""
        with self._guard:
            held = self._held.get(key)
            if held is not None and held[0] == holder:
                return True
        lock = FileLock(self._path(key))
        if acquire_timeout is None:
            lock.acquire()
        else:
            deadline = time.monotonic() + acquire_timeout
            while not lock.acquire(blocking=False):
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.05)
        with self._guard:
            self._held[key] = (holder, lock)
        return True

    async def aacquire_lock(
        self, key: str, holder: str, acquire_timeout: float | None = None, hold_timeout: float | None = None
    ) -> bool:
        """`acquire_lock` off the event loop."""
        return await asyncio.to_thread(self.acquire_lock, key, holder, acquire_timeout, hold_timeout)

    def release_lock(self, key: str, holder: str) -> None:
        """Drop the key's lock if `holder` holds it."""
        with self._guard:
            held = self._held.get(key)
            if held is None or held[0] != holder:
                return
            del self._held[key]
        held[1].release()

    def is_locked(self, key: str) -> bool:
        """Whether anyone (this process or another) holds the key's lock."""
        with self._guard:
            if key in self._held:
                return True
        probe = FileLock(self._path(key))
        if probe.acquire(blocking=False):
            probe.release()
            return False
        return True

    def is_lock_holder(self, key: str, holder: str) -> bool:
        """Whether `holder` holds the key's lock."""
        with self._guard:
            held = self._held.get(key)
        return held is not None and held[0] == holder

    def wait_for_lock(self, key: str, timeout: float | None = None) -> bool:
        """Wait until nobody holds the key's lock (False if `timeout` passes first)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.is_locked(key):
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    async def await_for_lock(self, key: str, timeout: float | None = None) -> bool:
        """`wait_for_lock` off the event loop."""
        return await asyncio.to_thread(self.wait_for_lock, key, timeout)


_MANAGERS: dict[str, FlockLockManager] = {}
_MANAGERS_GUARD = threading.Lock()


def lock_manager(folder: Path) -> FlockLockManager:
    """The process's lock manager for a folder (one per folder, so held locks are shared)."""
    with _MANAGERS_GUARD:
        found = _MANAGERS.get(str(folder))
        if found is None:
            found = _MANAGERS[str(folder)] = FlockLockManager(folder)
        return found


def _shown(url: str) -> str:
    """The URL with any password masked (for messages)."""
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)


def _lease() -> float:
    from tasks._lease import DEFAULT_LEASE

    text = os.environ.get(LEASE_ENV, "").strip()
    if not text:
        return DEFAULT_LEASE
    try:
        lease = float(text)
    except ValueError:
        lease = 0.0
    if not lease > 0:
        raise ConfigError(
            f"{LEASE_ENV}={text!r} is not a number of seconds",
            f"set it to the seconds a dead holder's lock may block the others (e.g. 30), or unset it for {DEFAULT_LEASE:g}",
        )
    return lease


def for_store(store: Store) -> Any:
    """The lock manager `ZOOFLOW_LOCKS` chooses for the store's cache keys (see the module's doc)."""
    setting = os.environ.get(LOCKS_ENV, "").strip()
    if setting.startswith(REDIS_SCHEMES):
        from tasks._lease import redis_lock_manager

        try:
            return redis_lock_manager(setting, _lease())
        except ConfigError as exc:
            raise ConfigError(exc.problem.replace(setting, _shown(setting)), exc.fix) from None
    if setting not in ("", "flock"):
        raise ConfigError(
            f"{LOCKS_ENV}={_shown(setting)!r} names no lock backend",
            "set it to redis://HOST:6379/0 (one Redis shared by every host of a shared store), "
            "or to flock / unset it (locks among this host's processes)",
        )
    return lock_manager(store.lock_dir if store.lock_dir is not None else store.local_cache_dir / "locks")


def describe(store: Store) -> str:
    """What `for_store` uses, in words (recorded in a run's summary; passwords masked)."""
    manager = for_store(store)
    if isinstance(manager, FlockLockManager):
        return f"flock, this host's processes ({manager.folder})"
    return f"{_shown(manager.url)}, every host that uses it (lease {manager.lease:g} s)"
