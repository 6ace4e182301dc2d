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
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from benchmarks.flow import measure


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--per-class", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="cached runs per setup (median)")
    parser.add_argument("--smoke", action="store_true", help="no warm-up run, one cached run: checks the script")
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="zooflow-bench-shared-")
    os.environ.setdefault("PREFECT_RESULTS_LOCAL_STORAGE_PATH", os.path.join(root, "prefect-results"))
    os.environ["XDG_CACHE_HOME"] = os.path.join(root, "cache")
    from zooflow.runconfig import RunConfig

    def config(store: str, classes: int, per_class: int) -> RunConfig:
        return RunConfig(
            demo=True,
            store=store,
            data={"demo": {"classes": classes, "per_class": per_class}},
            calibration={"allow_short": classes < 1000},
        )

    redis_proc, redis_url = _redis(root)
    server, s3_store = _s3()
    try:
        if not args.smoke:
            measure(config(os.path.join(root, "warmup"), 5, 1))  # starts the ephemeral API
        setups = {
            "local store, flock": (os.path.join(root, "local-flock"), ""),
            "local store, Redis lock": (os.path.join(root, "local-redis"), redis_url),
            "s3 store, Redis lock": (s3_store, redis_url),
        }
        results: dict[str, tuple[dict[str, Any], float]] = {}
        for label, (store, locks) in setups.items():
            os.environ["ZOOFLOW_LOCKS"] = locks
            cold = measure(config(store, args.classes, args.per_class))
            cached = [
                measure(config(store, args.classes, args.per_class))["wall"]
                for _ in range(1 if args.smoke else args.repeats)
            ]
            results[label] = (cold, statistics.median(cached))
    finally:
        server.terminate()
        redis_proc.terminate()
    base_cold, base_cached = results["local store, flock"]
    stages = base_cold["stages"]
    runs = 1 if args.smoke else args.repeats
    print(f"demo set: {args.classes * args.per_class} images; {stages} stages; cached: median of {runs} run(s)")
    for label, (cold, cached) in results.items():
        print(f"{label:26s}: cold {cold['wall']:6.1f} s, cached {cached:5.2f} s")
    for label, (cold, cached) in list(results.items())[1:]:
        for kind, wall, base in (("cold", cold["wall"], base_cold["wall"]), ("cached", cached, base_cached)):
            per_stage = (wall - base) / stages
            print(
                f"overhead per stage, {label} ({kind}): {per_stage:+.3f} s  "
                f"target <= 0.5 s: {'PASS' if per_stage <= 0.5 else 'FAIL'}"
            )


if __name__ == "__main__":
    main()
