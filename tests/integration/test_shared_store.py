"""Many hosts, one store: "hosts" (processes with their own caches, temp folders, Prefect homes and
environments) run the same work at once against one S3-compatible server (moto) and one Redis
(Debian's redis-server), both on 127.0.0.1, with ``ZOOFLOW_LOCKS`` set as docs/team.md says."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.redis import redis_server
from tests.support.s3 import moto_bucket

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_api")]

LEASE = 15.0  # seconds: long enough that the four hosts reach the dead host's key before it expires
PER_RUN = {"dataset": 4, "reference-onnx": 0, "reference-npz": 0, "compiled": 0, "outputs": 0}  # see below
RUN = ("run", "--demo", "--demo-classes", "4", "--demo-per-class", "1", "--allow-short", "--bench-batch", "1")


@pytest.fixture
def shared(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(the s3:// store, the redis:// URL) that every host is given."""
    with moto_bucket(monkeypatch, tmp_path) as store, redis_server(tmp_path / "redis") as redis_url:
        yield store, redis_url


def _host(tmp_path: Path, name: str, store: str, redis_url: str, lease: float = LEASE) -> dict[str, str]:
    """One host's environment: the shared store, Redis and Prefect API; everything local its own."""
    from prefect.settings import PREFECT_API_URL

    home = tmp_path / name
    for folder in ("cache", "tmp", "prefect"):
        (home / folder).mkdir(parents=True, exist_ok=True)
    return {
        **os.environ,
        "ZOOFLOW_STORE": store,
        "ZOOFLOW_LOCKS": redis_url,
        "ZOOFLOW_LOCK_LEASE": str(lease),
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "XDG_CACHE_HOME": str(home / "cache"),  # local copies of remote artifacts, and this host's flocks
        "TMPDIR": str(home / "tmp"),  # staging
        "PREFECT_HOME": str(home / "prefect"),
    }


def _start(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    exe = Path(sys.executable).with_name("zooflow")
    return subprocess.Popen(
        [str(exe), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )


def _summary(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    summary: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    assert summary["status"] == "completed", summary
    return summary


def _lock_keys(redis_url: str) -> list[str]:
    import redis

    return [k.decode() for k in redis.Redis.from_url(redis_url).keys("lock:*")]


def test_four_hosts_compute_every_key_once_and_take_over_a_dead_hosts_lock(
    shared: tuple[str, str], tmp_path: Path
) -> None:
    """A fifth host dies (SIGKILL, its whole process group) holding the first stage's lock; then four
    hosts start the same run at once. The lock frees within its lease and is taken over, every cache
    key is computed by one host while the others wait on its lock and read it Cached, and every
    name has one version (the same content from every host)."""
    import redis

    from zooflow.store import Store

    store_url, redis_url = shared
    client = redis.Redis.from_url(redis_url)
    doomed = _start(_host(tmp_path, "doomed", store_url, redis_url), *RUN, "--json")
    deadline = time.monotonic() + 300
    while not (held := _lock_keys(redis_url)):
        assert doomed.poll() is None and time.monotonic() < deadline, "the run ended before it took a lock"
        time.sleep(0.01)
    key = held[0]
    dead_token = client.get(key)
    os.killpg(doomed.pid, signal.SIGKILL)  # no release, no renewal
    doomed.wait()
    killed_at = time.monotonic()
    assert 0 < client.pttl(key) <= LEASE * 1000  # it expires with the lease, not never

    hosts = [_start(_host(tmp_path, f"host{i}", store_url, redis_url), *RUN, "--json") for i in range(4)]
    taken_over = None
    while taken_over is None and any(h.poll() is None for h in hosts):  # watch the key change hands
        token = client.get(key)
        if token is not None and token != dead_token:
            taken_over = time.monotonic() - killed_at
        time.sleep(0.01)
    summaries = [_summary(proc) for proc in hosts]
    print(f"the dead host held {key}; taken over {taken_over:.2f} s after the kill (lease {LEASE:g} s)")
    assert taken_over is not None and taken_over <= LEASE + 1.0  # within the lease (plus the polling)

    states = {stage: Counter(s["artifacts"][stage]["state"] for s in summaries) for stage in summaries[0]["artifacts"]}
    digests = {stage: {s["artifacts"][stage]["digest"] for s in summaries} for stage in states}
    assert all(len(d) == 1 for d in digests.values()), digests  # one artifact per stage, whoever made it
    # The dataset is each run's own scan of its folder (its key holds the run), and an fp32 run's
    # reference stages are its own stages under the same keys (Cached within the run, on every host).
    computed = {stage: n["Completed"] for stage, n in states.items()}
    assert computed == {stage: PER_RUN.get(stage, 1) for stage in states}, states
    assert all(s["verdict"]["passed"] for s in summaries)
    assert {s["locks"] for s in summaries} == {f"{redis_url}, every host that uses it (lease {LEASE:g} s)"}
    assert _lock_keys(redis_url) == []  # every lock was released

    store = Store(store_url)
    for name in store.names():
        assert [v.version for v in store.versions(name)] == [1], name
