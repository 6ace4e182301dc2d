"""An S3 bucket on moto's server on 127.0.0.1, for tests of stores on s3:// (no real S3 here)."""

from __future__ import annotations

import contextlib
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def moto_bucket(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, prefix: str = "zooflow-test") -> Iterator[str]:
    """A fresh bucket (its name made unique: moto's buckets outlive its server within a process) with the
    credentials and endpoint in the environment, so child processes reach it too; yields its s3:// URL.

    moto checks If-None-Match and then stores, in two steps, on its request threads: two conditional
    PUTs can both pass the check (seen once in CI: 7 versions of 8). S3 does both atomically; with its
    PUTs serialised, moto does too."""
    import s3fs
    from moto.s3.responses import S3Response
    from moto.server import ThreadedMotoServer

    atomic = threading.Lock()
    put_object = S3Response.put_object
    puts: list[int] = []

    def serialised(self: Any) -> Any:
        with atomic:
            puts.append(1)
            return put_object(self)

    monkeypatch.setattr(S3Response, "put_object", serialised)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
        "FSSPEC_S3_ENDPOINT_URL": endpoint,  # s3fs's endpoint_url through fsspec's environment config
        "XDG_CACHE_HOME": str(tmp_path / "cache"),  # the local copies of remote artifacts
    }.items():
        monkeypatch.setenv(key, value)
    s3fs.S3FileSystem.clear_instance_cache()
    bucket = f"{prefix}-{uuid.uuid4().hex[:8]}"
    s3fs.S3FileSystem(endpoint_url=endpoint).mkdir(bucket)
    try:
        yield f"s3://{bucket}/store"
        assert puts, "moto's PUTs did not go through the serialising wrapper"
    finally:
        server.stop()
