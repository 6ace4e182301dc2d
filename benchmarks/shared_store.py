"""Shared-store target (issue 32): the remote records and the Redis lock add <= 0.5 s per stage.

In one process (Prefect's ephemeral API, started by a warm-up flow first), deploy_classifier on the
demo set, cold then cached, three ways:
  local store, flock (the one-host default)          -- the baseline
  local store, ZOOFLOW_LOCKS=redis://...             -- what the Redis lock adds
  s3:// store (moto on 127.0.0.1), Redis lock        -- the team setup: remote records, objects and results
Overhead per stage = (wall time - the baseline's wall time) / stages. moto and redis-server run on
this machine, so the network is loopback: a real S3 adds its round trips on top (~20-50 ms a request).

Usage: ``uv run python benchmarks/shared_store.py [--classes 100 --per-class 2 --repeats 3]``
(needs Debian's redis-server on PATH).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

from benchmarks.flow import demo_config, measure


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _redis(folder: str) -> tuple[subprocess.Popen[bytes], str]:
    import redis

    exe = shutil.which("redis-server")
    if exe is None:
        raise SystemExit("redis-server is not on PATH (Debian: apt-get install redis-server)")
    port = _port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", folder],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(200):
        try:
            redis.Redis.from_url(url).ping()
            return proc, url
        except redis.ConnectionError:
            time.sleep(0.05)
    raise SystemExit("redis-server did not start")


def _s3() -> tuple[subprocess.Popen[bytes], str]:
    """moto's S3 server in a process of its own (in this one it would share the interpreter's lock
    with the flow and slow both)."""
    import s3fs

    port = _port()
    server = subprocess.Popen(
        [os.path.join(os.path.dirname(sys.executable), "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(400):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            time.sleep(0.05)
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": endpoint,
            "FSSPEC_S3_ENDPOINT_URL": endpoint,
        }
    )
    s3fs.S3FileSystem(endpoint_url=endpoint).mkdir("bench")
    return server, "s3://bench/store"


class Timer:
    """Seconds spent inside the store's record operations and the lock managers' calls, summed over
    the threads that ran tasks (outermost call only: a record read inside a version listing counts once)."""

    RECORDS = ("_read_json", "_write_json", "_create_json", "exists", "_listing", "_version_records")
    LOCKS = ("acquire_lock", "release_lock", "is_locked", "wait_for_lock")

    def __init__(self) -> None:
        self.seconds = {"records": 0.0, "locks": 0.0}
        self._local = threading.local()
        self._guard = threading.Lock()

    def wrap(self, owner: Any, name: str, kind: str) -> None:
        real = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            if getattr(self._local, "depth", 0):
                return real(*args, **kwargs)
            self._local.depth = 1
            start = time.perf_counter()
            try:
                return real(*args, **kwargs)
            finally:
                self._local.depth = 0
                with self._guard:
                    self.seconds[kind] += time.perf_counter() - start

        setattr(owner, name, timed)

    def install(self) -> None:
        from tasks._lease import LeasedRedisLockManager
        from tasks._locks import FlockLockManager
        from zooflow.store import Store

        for name in self.RECORDS:
            self.wrap(Store, name, "records")
        for manager in (FlockLockManager, LeasedRedisLockManager):
            for name in self.LOCKS:
                self.wrap(manager, name, "locks")

    def take(self) -> dict[str, float]:
        with self._guard:
            taken, self.seconds = self.seconds, {"records": 0.0, "locks": 0.0}
        return taken


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--per-class", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="cached runs per setup (median)")
    parser.add_argument(
        "--smoke", action="store_true", help="no warm-up run, one cached run, no local Redis setup: checks the script"
    )
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="zooflow-bench-shared-")
    os.environ.setdefault("PREFECT_RESULTS_LOCAL_STORAGE_PATH", os.path.join(root, "prefect-results"))
    os.environ["XDG_CACHE_HOME"] = os.path.join(root, "cache")
    redis_proc, redis_url = _redis(root)
    server, s3_store = _s3()
    timer = Timer()
    timer.install()
    runs = 1 if args.smoke else args.repeats
    try:
        if not args.smoke:
            measure(demo_config(os.path.join(root, "warmup"), 5, 1))  # starts the ephemeral API
        setups = {
            "local store, flock": (os.path.join(root, "local-flock"), ""),
            "local store, Redis lock": (os.path.join(root, "local-redis"), redis_url),
            "s3 store, Redis lock": (s3_store, redis_url),
        }
        if args.smoke:  # the baseline and the team setup are enough to check the script
            del setups["local store, Redis lock"]
        results: dict[str, dict[str, Any]] = {}
        for label, (store, locks) in setups.items():
            os.environ["ZOOFLOW_LOCKS"] = locks
            timer.take()
            cold = measure(demo_config(store, args.classes, args.per_class))
            cold_ops = timer.take()
            cached, cached_ops = [], []
            for _ in range(runs):
                cached.append(measure(demo_config(store, args.classes, args.per_class))["wall"])
                cached_ops.append(timer.take())
            middle = sorted(range(runs), key=lambda n: cached[n])[runs // 2]
            results[label] = {
                "cold": cold["wall"],
                "cached": cached[middle],
                "stages": cold["stages"],
                "ops": {"cold": cold_ops, "cached": cached_ops[middle]},
            }
    finally:
        server.terminate()
        redis_proc.terminate()
    _report(results, args.classes * args.per_class, runs)


def _report(results: dict[str, dict[str, Any]], images: int, runs: int) -> None:
    base = results["local store, flock"]
    stages = base["stages"]
    print(f"demo set: {images} images; {stages} stages; cached: the median of {runs} run(s)")
    for label, r in results.items():
        ops = r["ops"]
        print(
            f"{label:24s}: cold {r['cold']:5.1f} s (records {ops['cold']['records']:.2f} s, locks "
            f"{ops['cold']['locks']:.2f} s), cached {r['cached']:5.2f} s (records "
            f"{ops['cached']['records']:.2f} s, locks {ops['cached']['locks']:.2f} s)"
        )
    shared = results["s3 store, Redis lock"]
    for kind in ("cold", "cached"):
        records = (shared["ops"][kind]["records"] - base["ops"][kind]["records"]) / stages
        locks = (shared["ops"][kind]["locks"] - base["ops"][kind]["locks"]) / stages
        print(
            f"overhead per stage ({kind}), remote records + Redis lock vs local records + flock: "
            f"{records:+.3f} + {locks:+.3f} = {records + locks:+.3f} s  "
            f"target <= 0.5 s: {'PASS' if records + locks <= 0.5 else 'FAIL'}"
        )
    for label, r in list(results.items())[1:]:
        cold, cached = ((r[k] - base[k]) / stages for k in ("cold", "cached"))
        print(f"whole run per stage, {label} vs local store, flock: cold {cold:+.3f} s, cached {cached:+.3f} s")


if __name__ == "__main__":
    main()
