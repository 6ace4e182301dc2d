"""Which lock manager ZOOFLOW_LOCKS chooses, its refusals, and the Redis lease kept alive by its holder."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tasks._locks import FlockLockManager, describe, for_store
from tests.support.redis import redis_server
from tests.support.s3 import free_port
from zooflow.errors import ConfigError
from zooflow.store import open_store


def test_unset_locks_among_this_hosts_processes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ZOOFLOW_LOCKS", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    local = open_store(str(tmp_path / "store"))
    manager = for_store(local)
    assert isinstance(manager, FlockLockManager) and manager.folder == local.lock_dir
    assert describe(local) == f"flock, this host's processes ({local.lock_dir})"
    remote = open_store("memory://team/store")  # a remote store: the host's own cache folder holds the flocks
    manager = for_store(remote)
    assert isinstance(manager, FlockLockManager)
    assert manager.folder == remote.local_cache_dir / "locks"
    assert str(manager.folder).startswith(str(tmp_path / "cache"))


@pytest.mark.parametrize(
    ("setting", "lease", "says"),
    [
        ("redsi://127.0.0.1:6379/0", "", "ZOOFLOW_LOCKS='redsi://127.0.0.1:6379/0' names no lock backend"),
        ("redis://user:s3cret@127.0.0.1:{port}/0", "", "ZOOFLOW_LOCKS=redis://user:***@127.0.0.1:{port}/0: Redis"),
        ("redis://127.0.0.1:{port}/0", "soon", "ZOOFLOW_LOCK_LEASE='soon' is not a number of seconds"),
        ("redis://127.0.0.1:{port}/0", "-3", "ZOOFLOW_LOCK_LEASE='-3' is not a number of seconds"),
    ],
)
def test_a_bad_setting_is_refused_in_a_sentence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setting: str, lease: str, says: str
) -> None:
    port = free_port()  # nothing listens there
    monkeypatch.setenv("ZOOFLOW_LOCKS", setting.format(port=port))
    monkeypatch.setenv("ZOOFLOW_LOCK_LEASE", lease)
    with pytest.raises(ConfigError) as caught:
        for_store(open_store(str(tmp_path / "store")))
    message = str(caught.value)
    assert says.format(port=port) in message
    assert "s3cret" not in message
    assert "fix:" in message and ("unset" in message or "seconds" in message)


def test_a_living_holder_keeps_its_lock_past_the_lease_and_a_release_frees_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks._lease import LeasedRedisLockManager

    with redis_server(tmp_path / "redis") as url:
        monkeypatch.setenv("ZOOFLOW_LOCKS", url)
        monkeypatch.setenv("ZOOFLOW_LOCK_LEASE", "0.6")
        holder = for_store(open_store(str(tmp_path / "store")))
        assert isinstance(holder, LeasedRedisLockManager) and holder.lease == 0.6
        assert describe(open_store(str(tmp_path / "store"))) == f"{url}, every host that uses it (lease 0.6 s)"
        other = LeasedRedisLockManager(url, 0.6)  # another host's manager
        assert holder.acquire_lock("key", "host-a")
        assert 0 < holder.client.pttl("lock:key") <= 600
        time.sleep(2.0)  # three leases: renewed meanwhile
        assert holder.is_lock_holder("key", "host-a") and holder.is_locked("key")
        assert not other.acquire_lock("key", "host-b", acquire_timeout=0.3)
        assert not other.wait_for_lock("key", timeout=0.2)
        holder.release_lock("key", "host-b")  # not the holder: nothing happens
        assert holder.is_locked("key")
        holder.release_lock("key", "host-a")
        assert other.wait_for_lock("key", timeout=1)
        assert other.acquire_lock("key", "host-b", acquire_timeout=1)
        other.release_lock("key", "host-b")
        assert not other.is_locked("key")
