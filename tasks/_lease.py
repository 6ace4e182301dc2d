"""Prefect's Redis lock manager with a lease: hosts that share a store compute each cache key once.

prefect-redis's `RedisLockManager` takes a lock with no expiry unless a `hold_timeout` is given,
and Prefect's transactions never give one: a holder killed mid-task (a host lost, SIGKILL) would
block every later run of that key for ever. Here each lock is taken with a lease of `lease`
seconds, and a thread of the holder's process renews its leases every `lease / 3` seconds while
they are held. A holder that dies stops renewing, and its lock expires within one lease.

A lease lost while its holder lives (the process stalled for a whole lease, Redis restarted) is
logged: another host may then compute the same key too. That costs time, not correctness: an
artifact's object is its content's digest, and every record is created first-writer-wins.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from prefect.logging import get_logger
from prefect_redis import RedisLockManager
from redis.exceptions import LockError, RedisError

from zooflow.errors import ConfigError

logger = get_logger("zooflow.locks")
DEFAULT_LEASE = 30.0  # seconds; a dead holder's key is free again at most this long after its death


class LeasedRedisLockManager(RedisLockManager):
    """prefect-redis's lock manager whose locks expire unless their (living) holder renews them."""

    def __init__(self, url: str, lease: float = DEFAULT_LEASE) -> None:
        super().__init__(connection_url=url)
        self.url = url
        self.lease = lease
        self._guard = threading.Lock()
        self._renewer: threading.Thread | None = None

    def __deepcopy__(self, memo: dict[int, Any]) -> LeasedRedisLockManager:
        return self  # shared by every copy of a cache policy: the held locks and their renewer live here

    def __reduce__(self) -> tuple[Any, ...]:
        # A task sent to a Dask worker carries its cache policy: the worker uses its own process's
        # manager for the same Redis (held locks and the renewing thread never travel).
        return (redis_lock_manager, (self.url, self.lease))

    def acquire_lock(
        self, key: str, holder: str, acquire_timeout: float | None = None, hold_timeout: float | None = None
    ) -> bool:
        """Take the key's lock for one lease (renewed while held); wait up to `acquire_timeout` (None: for ever)."""
        acquired = super().acquire_lock(key, holder, acquire_timeout, hold_timeout or self.lease)
        if acquired:
            self._start_renewing()
        return acquired

    async def aacquire_lock(
        self, key: str, holder: str, acquire_timeout: float | None = None, hold_timeout: float | None = None
    ) -> bool:
        """`acquire_lock` off the event loop (one kind of lock, so one thread renews them all)."""
        return await asyncio.to_thread(self.acquire_lock, key, holder, acquire_timeout, hold_timeout)

    def release_lock(self, key: str, holder: str) -> None:
        """Drop the key's lock if `holder` holds it; a lease that had already expired is only logged."""
        name = self._lock_name_for_key(key)
        with self._guard:
            lock = self._locks.get(name)
            if lock is None or not self.is_lock_holder(key, holder):
                return
            del self._locks[name]
        try:
            lock.release()  # type: ignore[union-attr]  # only sync locks are taken here
        except LockError:
            logger.warning("the lock on %s had expired before its holder released it", key)

    def wait_for_lock(self, key: str, timeout: float | None = None) -> bool:
        """Wait until nobody holds the key's lock (False if `timeout` passes first).

        prefect-redis takes the lock to wait for it, with no expiry: a waiter killed in that moment
        would leave the key locked for ever. Watching the key takes nothing.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.is_locked(key):
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.1)
        return True

    async def await_for_lock(self, key: str, timeout: float | None = None) -> bool:
        """`wait_for_lock` off the event loop."""
        return await asyncio.to_thread(self.wait_for_lock, key, timeout)

    def _start_renewing(self) -> None:
        with self._guard:
            if self._renewer is None or not self._renewer.is_alive():
                self._renewer = threading.Thread(target=self._renew, name="zooflow-lock-lease", daemon=True)
                self._renewer.start()

    def _renew(self) -> None:
        """Every third of a lease, extend every lock this process holds to a full lease again."""
        while True:
            time.sleep(self.lease / 3)
            with self._guard:
                held = list(self._locks.items())
            for name, lock in held:
                try:
                    lock.reacquire()  # type: ignore[union-attr]
                except LockError:
                    with self._guard:
                        if self._locks.get(name) is not lock:
                            continue  # released in the meantime
                        del self._locks[name]
                    logger.warning(
                        "the lease on %s expired while its holder ran: another host may compute the same "
                        "key (a waste of time only: artifacts and records are first-writer-wins)",
                        name,
                    )
                except RedisError as exc:
                    logger.warning("could not renew the lease on %s (%s); will try again", name, exc)


_MANAGERS: dict[tuple[str, float], LeasedRedisLockManager] = {}
_MANAGERS_GUARD = threading.Lock()


def redis_lock_manager(url: str, lease: float = DEFAULT_LEASE) -> LeasedRedisLockManager:
    """The process's lock manager for one Redis (one per URL, so held locks are shared); checks Redis answers."""
    with _MANAGERS_GUARD:
        found = _MANAGERS.get((url, lease))
        if found is not None:
            return found
        manager = LeasedRedisLockManager(url, lease)
        try:
            manager.client.ping()
        except (RedisError, OSError) as exc:
            raise ConfigError(
                f"ZOOFLOW_LOCKS={url}: Redis does not answer there ({exc})",
                "start Redis there (Debian: apt-get install redis-server), correct the URL, "
                "or unset ZOOFLOW_LOCKS to lock on this host only",
            ) from None
        _MANAGERS[(url, lease)] = manager
        return manager
