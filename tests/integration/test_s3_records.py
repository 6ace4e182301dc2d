"""Many hosts, one S3 store: records are created with S3's conditional PUT (If-None-Match: *), so the
first writer of a version number wins and no version is lost.

The S3 server is moto's on 127.0.0.1 (it implements conditional writes); the "hosts" are processes
with caches of their own, publishing different contents under one name at the same moment.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.s3 import moto_bucket

pytestmark = pytest.mark.slow

PUBLISH = """
import pathlib, sys, tempfile, time
from zooflow.store import Store
store = Store(sys.argv[1])
staged = pathlib.Path(tempfile.mkdtemp()) / "files"
staged.mkdir()
(staged / "result.txt").write_text(sys.argv[2])
while time.time() < float(sys.argv[3]):  # every host publishes at the same moment
    time.sleep(0.001)
ref = store.commit(staged, kind="demo", stage="race", stage_version="1", name="race/result")
print(ref.version, ref.digest)
"""


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    """A bucket on a local moto S3 server; credentials and endpoint in the environment."""
    with moto_bucket(monkeypatch, tmp_path, "zooflow-race") as url:
        yield url


def test_eight_hosts_publishing_under_one_name_at_once_keep_every_version(s3: str, tmp_path: Path) -> None:
    """Before: 8 publishes at once kept 2 version records (check-then-put). Now versions 1..8, one per content."""
    from zooflow.store import Store

    start = time.time() + 8  # after every interpreter has imported zooflow
    hosts = []
    for n in range(8):
        env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / f"host{n}" / "cache")}
        hosts.append(
            subprocess.Popen(
                [sys.executable, "-c", PUBLISH, s3, f"content of host {n}", str(start)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    said = [h.communicate(timeout=120) for h in hosts]
    assert all(h.returncode == 0 for h in hosts), [err[-2000:] for _, err in said]
    published = {int(out.split()[0]): out.split()[1] for out, _ in said}
    versions = Store(s3).versions("race/result")
    assert [v.version for v in versions] == list(range(1, 9)), [v.version for v in versions]
    assert {v.version: v.digest for v in versions} == published  # each host's version names its content
    assert len(set(published.values())) == 8


def _slow_puts(fs: Any, delay: float) -> None:
    """Every PUT waits `delay` first: the window between a check and its put, made wide."""
    real = fs.pipe_file

    def pipe_file(path: str, data: bytes, **kwargs: Any) -> Any:
        time.sleep(delay)
        return real(path, data, **kwargs)

    fs.pipe_file = pipe_file


@pytest.mark.parametrize("scheme", ["conditional PUT", "check-then-put"])
def test_a_delay_between_check_and_put_loses_a_record_only_in_the_old_scheme(
    s3: str, scheme: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four writers create one record at once with 0.5 s between looking and writing. The conditional
    PUT lets exactly one win; check-then-put (what zooflow did, kept only for a declared single writer
    on a backend without conditional writes) lets all four "win", each overwriting the last."""
    from zooflow.store import Store

    store = Store(s3)
    if scheme == "check-then-put":
        monkeypatch.setattr(store, "scheme", "gs")  # a backend without conditional writes ...
        monkeypatch.setenv("ZOOFLOW_SINGLE_WRITER", "1")  # ... whose user declared one writer
    _slow_puts(store.fs, 0.5)
    path = store._p("names", "race", "versions", "000001.json")
    won: list[int] = []

    def write(n: int) -> None:
        if store._create_json(path, {"writer": n}):
            won.append(n)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    kept = store._read_json(path)["writer"]
    if scheme == "conditional PUT":
        assert won == [kept], (won, kept)  # one winner, and the record is the winner's
    else:
        assert len(won) == 4 and kept in won  # four writers were told they won; three records are lost


def test_a_backend_without_conditional_writes_is_refused_unless_one_writer_is_declared(
    s3: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from zooflow.errors import StoreError
    from zooflow.store import Store

    store = Store(s3)
    monkeypatch.setattr(store, "scheme", "gs")
    with pytest.raises(StoreError, match="first writer wins across hosts") as info:
        store._create_json(store._p("names", "x", "versions", "000001.json"), {})
    assert "ZOOFLOW_SINGLE_WRITER=1" in str(info.value)


def test_verify_finds_the_publishes_the_old_scheme_lost_and_gc_gives_them_versions(
    s3: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four hosts publish different contents under one name with check-then-put and 0.5 s between looking
    and writing, each remembering its version in a cache record as a stage does: versions are lost.
    `artifacts verify` (the console script, on the S3 store) names every lost one; `gc --apply` gives each
    a version of its own, and the store verifies clean."""
    import json

    from zooflow.records import CacheRecord
    from zooflow.store import Store

    store = Store(s3)
    monkeypatch.setattr(store, "scheme", "gs")  # no conditional writes ...
    monkeypatch.setenv("ZOOFLOW_SINGLE_WRITER", "1")  # ... and one writer declared, wrongly
    staged = {}
    for n in range(4):
        with store.staging("race") as folder:
            (folder / "result.txt").write_text(f"content of host {n}")
            staged[n] = store.commit(folder, kind="demo", stage="race", stage_version="1")  # objects, no names yet
    _slow_puts(store.fs, 0.5)

    def publish(n: int) -> None:
        version = store._register_version("race/result", store.manifest(staged[n].digest))
        record = CacheRecord(key=f"race-{n}", epoch="e", digest=staged[n].digest, name="race/result", version=version)
        store.write_cache_record(record)

    threads = [threading.Thread(target=publish, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    kept = {v.digest for v in store.versions("race/result")}
    lost = {ref.digest for ref in staged.values()} - kept
    assert lost, "the old scheme lost nothing this time"

    exe = Path(sys.executable).with_name("zooflow")
    verify = subprocess.run([str(exe), "artifacts", "verify", "--store", s3, "--json"], capture_output=True, text=True)
    assert verify.returncode == 1, verify.stderr[-2000:]
    assert {c["lost"] for c in json.loads(verify.stdout)["conflicts"]} == lost
    gc = subprocess.run([str(exe), "artifacts", "gc", "--apply", "--store", s3], capture_output=True, text=True)
    assert gc.returncode == 0 and gc.stderr.count("reregister") == len(lost), gc.stderr[-2000:]
    versions = Store(s3).versions("race/result")
    assert [v.version for v in versions] == [1, 2, 3, 4][: len(versions)] and len(versions) == 4
    assert {v.digest for v in versions} == {ref.digest for ref in staged.values()}
    again = subprocess.run([str(exe), "artifacts", "verify", "--store", s3], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]


def test_gc_on_a_shared_store_leaves_another_hosts_upload_in_progress_alone(
    s3: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On S3 an object's files go up before its manifest, and its records come after: a young object
    folder without a manifest, or an object no record names yet, may be another host's publish in
    progress. verify does not call it damage and gc leaves it; only the age floor stands between."""
    from zooflow import storecheck
    from zooflow.store import Store

    store = Store(s3)
    with store.staging("race") as folder:
        (folder / "result.txt").write_text("half uploaded")
        uploading = store.commit(folder, kind="demo", stage="race", stage_version="1")
    store.fs.rm_file(store.object_dir(uploading.digest) + "/manifest.json")  # its manifest is not up yet
    with store.staging("race") as folder:
        (folder / "result.txt").write_text("published, records not written yet")
        unnamed = store.commit(folder, kind="demo", stage="race", stage_version="1")

    exe = Path(sys.executable).with_name("zooflow")
    verify = subprocess.run([str(exe), "artifacts", "verify", "--store", s3], capture_output=True, text=True)
    assert verify.returncode == 0 and "1 object(s) without a manifest yet" in verify.stderr, verify.stderr[-2000:]
    gc = subprocess.run([str(exe), "artifacts", "gc", "--apply", "--store", s3], capture_output=True, text=True)
    assert gc.returncode == 0, gc.stderr[-2000:]
    assert store.fs.exists(store.object_dir(uploading.digest) + "/files/result.txt") and store.exists(unnamed.digest)

    monkeypatch.setattr(storecheck, "GRACE_SECONDS", 0.0)  # an hour later, nobody finished them
    planned = {(a.kind, a.target) for a in storecheck.plan_gc(Store(s3))}
    assert planned == {("quarantine", store.object_dir(uploading.digest)), ("unreferenced", unnamed.digest)}


def test_a_cache_hit_on_s3_skips_the_rehash_only_while_the_listing_is_unchanged_since_a_check(
    s3: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cache hit downloaded every file of the artifact to re-hash it (a cached run on S3 read the whole
    dataset again). The first check on a host re-hashes and keeps the listing's ETags on that host; later
    checks trust files whose ETag, size and time are unchanged. A file replaced with other bytes of the
    same size has a new ETag, and is re-hashed and caught."""
    from zooflow import integrity
    from zooflow.errors import StoreError
    from zooflow.store import Store

    store = Store(s3)
    real = integrity._sha256_remote

    def no_hashing(fs: Any, path: str) -> str:
        raise AssertionError("re-hashed an unchanged object")

    monkeypatch.setattr(integrity, "_sha256_remote", no_hashing)
    with store.staging("t") as folder:
        (folder / "a.bin").write_bytes(b"payload")
        (folder / "b.bin").write_bytes(b"other")
        ref = store.commit(folder, kind="demo", stage="t", stage_version="1")
    # the upload's ETags are the MD5s of the bytes sent: stamped at publish, trusted by its listing
    assert store.verify(ref.digest) == [] and Store(s3).verify(ref.digest) == []
    monkeypatch.setattr(integrity, "_sha256_remote", real)
    stamp = Store(s3).local_cache_dir / "verified" / f"{ref.digest}.json"
    stamp.unlink()
    assert Store(s3).verify(ref.digest) == [] and stamp.is_file()  # no stamp: re-hashed, then stamped
    md5 = integrity._md5_file
    monkeypatch.setattr(integrity, "_md5_file", lambda path: "0" * 32)  # the bytes that arrived differ
    with store.staging("t") as folder:
        (folder / "c.bin").write_bytes(b"sent")
        with pytest.raises(StoreError, match="arrived damaged"):
            store.commit(folder, kind="demo", stage="t", stage_version="1")
    monkeypatch.setattr(integrity, "_md5_file", md5)
    store.fs.pipe_file(store.object_dir(ref.digest) + "/files/a.bin", b"pAyload")  # same size, new bytes
    problems = Store(s3).verify(ref.digest)
    assert len(problems) == 1 and problems[0].startswith("a.bin: sha256 ")
    assert len(Store(s3).verify(ref.digest, full=True)) == 1
