"""A damaged store: every reader names the damage and its repair; verify lists it; gc repairs it."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.catalogue import case
from tests.reliability.helpers import MODEL, cli, no_traceback, snapshot
from zooflow.store import ArtifactRef, CacheRecord, Store


def _store_with_checkpoint(request: pytest.FixtureRequest) -> tuple[Store, ArtifactRef]:
    from zooflow.fetch import fetch_checkpoint

    tmp: Path = request.getfixturevalue("tmp_path")
    store = Store(tmp / "s")
    ref = fetch_checkpoint(str(request.getfixturevalue("checkpoint_file")), store, model=MODEL, show_progress=False)
    return store, ref


def _commit(store: Store, files: dict[str, bytes], name: str | None = None, **meta: object) -> ArtifactRef:
    with store.staging("test") as staged:
        for rel, data in files.items():
            (staged / rel).parent.mkdir(parents=True, exist_ok=True)
            (staged / rel).write_bytes(data)
        return store.commit(staged, kind="thing", stage="test", stage_version="1", name=name, meta=dict(meta))


def _writable(path: Path) -> Path:
    path.chmod(0o644)
    return path


@case(
    "empty-version-record",
    area="corrupt store",
    fault="a 0-byte version record (what a full disk left before records were written atomically)",
    sees="`artifacts list` shows the rest and names the record with the repair (exit 1); `fetch NAME` names it; `verify` lists it; `gc --apply` rebuilds it from the cache record that names that version",
    kept="every artifact; after gc the record is whole again and nothing else changed",
    fixed_in="issue 10 #3",
)
def empty_version_record(request: pytest.FixtureRequest) -> None:
    store, ref = _store_with_checkpoint(request)
    name = f"{MODEL}/checkpoint"
    ref2 = _commit(store, {"model.pth": b"second"}, name=name)
    store.write_cache_record(CacheRecord(key="fetch-abc", epoch="e", digest=ref2.digest, name=name, version=2))
    record = Path(store.root) / "names" / name / "versions" / "000002.json"
    record.write_bytes(b"")
    code, out, err = cli("artifacts", "list", "--store", store.url, "--json")
    assert code == 1 and [r["version"] for r in json.loads(out)] == [1] and "000002.json" in err and "gc --apply" in err
    code, _, err = cli("artifacts", "show", name, "--store", store.url)
    assert code == 2 and "version record(s) of" in err and "000002.json" in err
    no_traceback(err)
    code, out, _ = cli("artifacts", "verify", "--store", store.url, "--json")
    assert code == 1 and json.loads(out)["damaged_records"] == [str(record)]
    code, _, err = cli("artifacts", "gc", "--apply", "--store", store.url)
    assert code == 0 and "rebuild" in err
    assert store.resolve(name).digest == ref2.digest and store.resolve(f"{name}@1").digest == ref.digest
    assert cli("artifacts", "verify", "--store", store.url)[0] == 0


@case(
    "truncated-manifest",
    area="corrupt store",
    fault="a manifest.json cut short",
    sees="`artifacts show` / `lineage` exit 2 naming the manifest, no JSONDecodeError; `verify` lists it; committing the same content (the stage's next run) replaces the object",
    kept="the version record; after the rerun, the same digest, intact",
    fixed_in="issue 10 #12",
)
def truncated_manifest(request: pytest.FixtureRequest) -> None:
    store, ref = _store_with_checkpoint(request)
    manifest = Path(store.object_dir(ref.digest)) / "manifest.json"
    manifest.write_bytes(manifest.read_bytes()[:50])
    for command in ("show", "lineage"):
        code, _, err = cli("artifacts", command, ref.digest[:12], "--store", store.url)
        code2, _, err2 = cli("artifacts", command, f"{MODEL}/checkpoint", "--store", store.url)
        assert code == code2 == 2 and "manifest of artifact" in err and "is damaged" in err2
        no_traceback(err + err2)
    assert cli("artifacts", "verify", "--store", store.url)[0] == 1
    again, _ = _store_with_checkpoint(request)
    assert again.verify(ref.digest, full=True) == [] and again.resolve(f"{MODEL}/checkpoint").version == 1


@case(
    "bit-rot-behind-the-stamp",
    area="corrupt store",
    fault="a stored file's bytes change while its stat stamp stays (bit rot, a write below the file system)",
    sees="`verify` (stat stamps, as a cache hit) says intact, as documented; `verify --full` finds it; committing identical content repairs it",
    kept="the artifact, repaired in place under the same digest",
    fixed_in="issue 10 #5",
)
def bit_rot(request: pytest.FixtureRequest) -> None:
    store, ref = _store_with_checkpoint(request)
    assert store.verify(ref.digest, full=True) == []
    path = _writable(store.path(ref))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    # the stamp now matches the changed file, as if the change had bypassed the file system
    st = path.stat()
    stamp = {"at": time.time() + 5, "files": {path.name: [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]}}
    (Path(store.root) / "cache" / "verified" / f"{ref.digest}.json").write_text(json.dumps(stamp))
    assert cli("artifacts", "verify", "--store", store.url)[0] == 0  # the documented limit of a stamp
    code, out, _ = cli("artifacts", "verify", "--full", "--store", store.url, "--json")
    assert code == 1 and "sha256" in json.loads(out)["damaged"][ref.digest][0]
    again, _ = _store_with_checkpoint(request)  # the same content committed again
    assert again.verify(ref.digest, full=True) == []


@case(
    "extra-file-in-object",
    area="corrupt store",
    fault="a stray file dropped into a stored artifact's folder (it broke every later demo run)",
    sees="`verify` lists the extra file; a cache hit recomputes; committing the same content replaces the object without it",
    kept="the artifact's own files",
    fixed_in="issue 10 #6",
)
def extra_file(request: pytest.FixtureRequest) -> None:
    store, ref = _store_with_checkpoint(request)
    stray = Path(store.object_dir(ref.digest)) / "files" / "stray.txt"
    stray.write_text("x")
    assert store.verify(ref.digest) == ["1 extra file(s) not in the manifest: stray.txt"]
    code, out, _ = cli("artifacts", "verify", "--store", store.url, "--json")
    assert code == 1 and ref.digest in json.loads(out)["damaged"]
    store.write_cache_record(CacheRecord(key="k", epoch="e", digest=ref.digest))
    assert store.cached("k") is None  # a cache hit on it recomputes
    _store_with_checkpoint(request)
    assert not stray.exists() and store.verify(ref.digest, full=True) == []


@case(
    "manifest-deleted-version-remains",
    area="corrupt store",
    fault="an artifact's manifest deleted while a version record still names it",
    sees="`verify` lists the version record that names a missing artifact; resolving the name says its manifest is gone and what to rerun",
    kept="the version record; the rerun restores the artifact under the same digest",
    fixed_in="issue 10 #6",
)
def manifest_deleted(request: pytest.FixtureRequest) -> None:
    store, ref = _store_with_checkpoint(request)
    (Path(store.object_dir(ref.digest)) / "manifest.json").unlink()
    code, out, _ = cli("artifacts", "verify", "--store", store.url, "--json")
    report = json.loads(out)
    assert code == 1 and report["dangling_versions"] and report["incomplete"] == [store.object_dir(ref.digest)]
    code, _, err = cli("artifacts", "show", f"{MODEL}/checkpoint", "--store", store.url)
    assert code == 2 and "its manifest is gone" in err
    _store_with_checkpoint(request)
    assert cli("artifacts", "verify", "--store", store.url)[0] == 0


@case(
    "file-deleted-from-object",
    area="corrupt store",
    fault="a file deleted from a stored artifact that a cache record names",
    sees="the cache hit fails verification and the stage recomputes (only that stage; see the flow tests)",
    kept="every other artifact",
)
def file_deleted(request: pytest.FixtureRequest) -> None:
    store = Store(request.getfixturevalue("tmp_path") / "s")
    ref = _commit(store, {"a.bin": b"a", "b.bin": b"b"})
    store.write_cache_record(CacheRecord(key="k", epoch="e", digest=ref.digest))
    assert store.cached("k") is not None
    (Path(store.object_dir(ref.digest)) / "files" / "a.bin").unlink()
    assert store.cached("k") is None and store.verify(ref.digest) == ["a.bin: missing"]


@case(
    "damaged-cache-record",
    area="corrupt store",
    fault="a cache record cut short",
    sees="treated as no record: the stage recomputes; `verify` lists the record; gc moves it aside",
    kept="the artifacts",
    fixed_in="issue 10 #6",
)
def damaged_cache_record(request: pytest.FixtureRequest) -> None:
    store = Store(request.getfixturevalue("tmp_path") / "s")
    ref = _commit(store, {"a.bin": b"a"}, name="x/thing")
    store.write_cache_record(CacheRecord(key="k", epoch="e", digest=ref.digest))
    path = Path(store.root) / "cache" / "k.json"
    path.write_text('{"key": "k", "ep')
    assert store.cache_record("k") is None and store.cached("k") is None
    code, out, _ = cli("artifacts", "verify", "--store", store.url, "--json")
    assert code == 1 and json.loads(out)["damaged_records"] == [str(path)]
    assert cli("artifacts", "gc", "--apply", "--store", store.url)[0] == 0
    assert not path.exists() and list((Path(store.root) / "quarantine").rglob("k.json"))
    assert cli("artifacts", "verify", "--store", store.url)[0] == 0


@case(
    "gc-unreferenced-objects",
    area="corrupt store",
    fault="objects no version or cache record leads to (left by experiments or older runs)",
    sees="`artifacts gc` lists them with their size (dry run); `--apply` removes them",
    kept="everything reachable from a version or cache record, including the inputs in its lineage",
)
def gc_unreferenced(request: pytest.FixtureRequest) -> None:
    store = Store(request.getfixturevalue("tmp_path") / "s")
    named = _commit(store, {"a.bin": b"a"}, name="x/named")
    with store.staging("test") as staged:
        (staged / "b.bin").write_bytes(b"input")
        lone = store.commit(staged, kind="thing", stage="test", stage_version="1")
    with store.staging("test") as staged:
        (staged / "c.bin").write_bytes(b"made from the lone one")
        child = store.commit(staged, kind="thing", stage="test", stage_version="1", inputs={"src": lone})
    store.write_cache_record(CacheRecord(key="k", epoch="e", digest=child.digest))
    orphan = _commit(store, {"d.bin": b"nobody's"})
    old = time.time() - 7200
    for digest in store.digests():
        os.utime(store.object_dir(digest), (old, old))
    code, _, err = cli("artifacts", "gc", "--store", store.url)
    assert code == 0 and f"unreferenced: {orphan.digest}" in err and "--apply" in err and store.exists(orphan.digest)
    assert cli("artifacts", "gc", "--apply", "--store", store.url)[0] == 0
    assert not store.exists(orphan.digest)
    assert all(store.exists(r.digest) for r in (named, lone, child))


@case(
    "two-records-one-version",
    area="corrupt store",
    fault="two hosts took one version number of a name (what check-then-put let happen on a shared object store): the second version record overwrote the first",
    sees="`verify` names both records (the version record and the cache record of the lost publish; exit 1); `gc --apply` gives the lost artifact the next version and points its cache record there",
    kept="both artifacts, each under a version; the version that stood stays as it was",
    fixed_in="issue 32",
)
def two_records_one_version(request: pytest.FixtureRequest) -> None:
    from zooflow.records import VersionRecord

    store = Store(request.getfixturevalue("tmp_path") / "s")
    lost = _commit(store, {"a.bin": b"host a's result"}, name="x/race")
    store.write_cache_record(CacheRecord(key="k-a", epoch="e", digest=lost.digest, name="x/race", version=1))
    won = _commit(store, {"a.bin": b"host b's result"})  # host b looked before a's record existed ...
    record = VersionRecord(
        name="x/race", version=1, digest=won.digest, kind="thing", created="2026-12-06T00:00:00+00:00"
    )
    store._write_json(store._p("names", "x/race", "versions", "000001.json"), record.model_dump(mode="json"))
    store.write_cache_record(CacheRecord(key="k-b", epoch="e", digest=won.digest, name="x/race", version=1))
    code, out, _ = cli("artifacts", "verify", "--store", store.url, "--json")
    [conflict] = json.loads(out)["conflicts"]
    assert code == 1 and conflict["lost"] == lost.digest and conflict["recorded"] == won.digest
    code, _, err = cli("artifacts", "verify", "--store", store.url)
    assert code == 1 and "two records claim x/race@1" in err and "k-a.json" in err
    code, _, err = cli("artifacts", "gc", "--apply", "--store", store.url)
    assert code == 0 and "reregister" in err and "now x/race@2" in err, err
    assert [(v.version, v.digest) for v in store.versions("x/race")] == [(1, won.digest), (2, lost.digest)]
    assert store.cached("k-a") == store.ref(lost.digest, name="x/race", version=2)
    assert cli("artifacts", "verify", "--store", store.url)[0] == 0


@case(
    "cache-record-names-a-missing-object",
    area="corrupt store",
    fault="an artifact deleted by hand from a shared store while a cache record (and its version) still names it",
    sees="`verify` lists the cache record and the version record (exit 1); the next run recomputes that stage; `gc --apply` moves the cache record aside",
    kept="every other artifact and record",
    fixed_in="issue 32",
)
def cache_record_missing_object(request: pytest.FixtureRequest) -> None:
    import shutil

    store = Store(request.getfixturevalue("tmp_path") / "s")
    ref = _commit(store, {"a.bin": b"a"}, name="x/gone")
    keep = _commit(store, {"b.bin": b"b"}, name="x/kept")
    store.write_cache_record(CacheRecord(key="k", epoch="e", digest=ref.digest, name="x/gone", version=1))
    folder = Path(store.object_dir(ref.digest))
    for path in folder.rglob("*"):
        path.chmod(0o644)
    shutil.rmtree(folder)  # the test's own store: the user's deletion
    code, out, _ = cli("artifacts", "verify", "--store", store.url, "--json")
    report = json.loads(out)
    assert code == 1 and report["missing_cached"] == [str(Path(store.root) / "cache" / "k.json")]
    assert report["dangling_versions"] and store.cached("k") is None
    code, _, err = cli("artifacts", "gc", "--apply", "--store", store.url)
    assert code == 0 and "cache record naming a missing artifact" in err
    assert store.cache_record("k") is None and store.verify(keep.digest) == []


@case(
    "gc-repairs-from-a-good-copy",
    area="corrupt store",
    fault="a stored file damaged whose bytes also exist in another artifact (a calibration image and the dataset it came from)",
    sees="`artifacts gc --full` plans a repair; `--apply` republishes the artifact from the intact copy",
    kept="the artifact, intact under the same digest; the copy it came from",
    fixed_in="issue 10 #5",
)
def gc_repairs(request: pytest.FixtureRequest) -> None:
    store = Store(request.getfixturevalue("tmp_path") / "s")
    image = os.urandom(5000)
    source = _commit(store, {"val/img.JPEG": image, "val_label.txt": b"img.JPEG 0\n"}, name="demo/data")
    copy = _commit(store, {"images/img.JPEG": image, "calibration.json": b"{}"}, name="demo/calibration")
    damaged = _writable(store.path(copy, "images/img.JPEG"))
    damaged.write_bytes(b"\0" * 5000)
    code, _, err = cli("artifacts", "gc", "--full", "--store", store.url)
    assert code == 0 and f"repair: {copy.digest}" in err
    assert cli("artifacts", "gc", "--apply", "--full", "--store", store.url)[0] == 0
    assert store.verify(copy.digest, full=True) == [] and store.verify(source.digest, full=True) == []
    assert store.path(copy, "images/img.JPEG").read_bytes() == image


@case(
    "interrupted-record-write",
    area="corrupt store",
    fault="a process killed while it wrote a version record (its temp file is left)",
    sees="nothing: readers never see the temp file; the next version number is still taken in order; gc removes the leftover",
    kept="every record",
    fixed_in="issue 10 #3",
)
def interrupted_write(request: pytest.FixtureRequest) -> None:
    store = Store(request.getfixturevalue("tmp_path") / "s")
    _commit(store, {"a": b"1"}, name="x/y")
    folder = Path(store.root) / "names" / "x" / "y" / "versions"
    leftover = folder / "000002.json.tmp-deadbeef"
    leftover.write_bytes(b'{"name": "x/y", "ver')
    os.utime(leftover, (time.time() - 120, time.time() - 120))
    assert [v.version for v in store.versions("x/y")] == [1]
    assert _commit(store, {"a": b"2"}, name="x/y").version == 2
    assert cli("artifacts", "verify", "--store", store.url)[0] == 0
    assert cli("artifacts", "gc", "--apply", "--store", store.url)[0] == 0 and not leftover.exists()


@case(
    "nightly-rehashes-cache-hits",
    area="corrupt store",
    fault="bit rot behind the stat stamp in an artifact that a stage's cache hit would reuse",
    sees="an ordinary run reuses it (the stamp holds, as documented); a run under the nightly's full-verify tag re-hashes the hit, finds the damage and recomputes the stage",
    kept="the artifact, repaired by the recompute (same digest)",
    fixed_in="issue 10 #5",
)
def nightly_rehash(request: pytest.FixtureRequest) -> None:
    request.getfixturevalue("prefect_api")
    from prefect import flow, tags, task

    from flows._stages import Stages
    from tasks._cache import FULL_VERIFY_TAG, ArtifactCachePolicy, remember, resumable
    from zooflow.store import open_store

    calls: list[str] = []

    @task(
        name="reliability-thing",
        cache_policy=ArtifactCachePolicy(stage="thing", stage_version="1"),
        persist_result=True,
        result_serializer="json",
    )
    @resumable
    def make(text: str, store_url: str) -> ArtifactRef:
        calls.append(text)
        return remember(_commit(open_store(store_url), {"a.bin": text.encode() * 1000}))

    @flow(name="reliability-nightly-rehash")
    def run(store_url: str, full: bool) -> ArtifactRef:
        with tags(*([FULL_VERIFY_TAG] if full else [])):
            ref: ArtifactRef = Stages(store_url).run("thing", make, text="x")
        return ref

    store = Store(request.getfixturevalue("tmp_path") / "s")
    ref = run(store.url, False)
    assert calls == ["x"] and store.verify(ref.digest, full=True) == []
    path = _writable(store.path(ref))
    path.write_bytes(b"y" + path.read_bytes()[1:])
    st = path.stat()
    stamp = {"at": time.time() + 5, "files": {path.name: [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]}}
    (Path(store.root) / "cache" / "verified" / f"{ref.digest}.json").write_text(json.dumps(stamp))
    assert run(store.url, False).digest == ref.digest and calls == ["x"]  # the stamp holds: reused
    assert run(store.url, True).digest == ref.digest and calls == ["x", "x"]  # re-hashed in full: recomputed
    assert store.verify(ref.digest, full=True) == []


@contextlib.contextmanager
def _read_only(folder: Path) -> Iterator[Path]:
    """`folder` bind-mounted read-only beside itself (a real read-only file system: root ignores permissions)."""
    import subprocess

    view = folder.with_name(folder.name + "-ro")
    view.mkdir()
    done = subprocess.run(["mount", "--bind", str(folder), str(view)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot bind-mount here ({done.stderr.decode().strip()[:100]}): the read-only case needs it")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(view)], check=True, capture_output=True)
        yield view
    finally:
        subprocess.run(["umount", "-l", str(view)], capture_output=True)


@case(
    "read-only-store",
    area="corrupt store",
    fault="the store is on a read-only mount (a team's mirror, a snapshot) and holds one damaged artifact",
    sees="list, show, lineage, verify (which names the damage, exit 1, and repairs nothing) and eval work; "
    "alias, gc --apply and calib exit 2 naming the store and why it is read-only, with the fix "
    "(EROFS tracebacks before)",
    kept="the store, byte for byte",
    fixed_in="issue 29 #3",
)
def read_only_store(request: pytest.FixtureRequest) -> None:
    import numpy as np

    from tests.support.outputs import labelled_npz, stored_outputs

    store, ckpt = _store_with_checkpoint(request)
    npz = labelled_npz(store, ["a.JPEG", "b.JPEG"], [1, 2])
    outputs = stored_outputs(store, npz, np.eye(4)[[1, 3]], name="m/onnxruntime/fp32")
    damaged = _commit(store, {"w.bin": b"weights"}, name="m/thing")
    path = store.path(damaged, "w.bin")
    _writable(path).write_bytes(b"weightz")  # same size: only a re-hash sees it
    tmp: Path = request.getfixturevalue("tmp_path")
    before = snapshot(tmp / "s")
    with _read_only(tmp / "s") as ro:
        at = ["--store", str(ro)]
        for args in (["artifacts", "list"], ["artifacts", "show", f"{MODEL}/checkpoint"], ["artifacts", "gc"]):
            code, _, err = cli(*args, *at)
            assert code == 0, (args, err)
        code, _, err = cli("artifacts", "verify", "--full", *at)
        assert code == 1 and f"damaged artifact {damaged.digest[:16]}: w.bin" in err, err
        code, out, err = cli("eval", "--outputs", outputs.digest, *at)
        assert code == 0 and "top1_rate: 50.000" in out, (out, err)
        for args, command in (
            (["artifacts", "alias", f"{MODEL}/checkpoint@1", "good"], "`zooflow artifacts alias`"),
            (["artifacts", "gc", "--apply"], "`zooflow artifacts gc --apply`"),
        ):
            code, _, err = cli(*args, *at)
            assert code == 2 and f"artifact store {ro} is read-only" in err and command in err, err
            assert "mounted read-only" in err and "remount" in err
        data: Path = request.getfixturevalue("demo_small")
        code, _, err = cli("calib", "--data", str(data / "val"), "--out", str(tmp / "c"), "--allow-short", *at)
        assert code == 2 and "is not writable" in err and "Read-only file system" in err, err
        no_traceback(err)
    assert snapshot(tmp / "s") == before
    assert ckpt.digest in store.digests()


@case(
    "store-is-not-a-store",
    area="bad input",
    fault="`--store` names a file, an ftp:// URL, or an s3:// bucket without credentials",
    sees="exit 2 naming each: a file, not a store folder / a ftp:// location cannot hold a store (its schemes "
    "listed) / cannot reach the store (the SDK's reason); before, a file listed an empty table with exit 0 and "
    "the others ended in tracebacks",
    kept="the file, untouched",
    fixed_in="issue 29 #7",
)
def store_not_a_store(request: pytest.FixtureRequest) -> None:
    tmp: Path = request.getfixturevalue("tmp_path")
    afile = tmp / "notes.txt"
    afile.write_text("mine\n")
    env = {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_CONFIG_FILE": str(tmp / "none")}
    for store, says in (
        (str(afile), f"artifact store {afile} is a file, not a store folder"),
        ("ftp://127.0.0.1/x", "a ftp:// location cannot hold a zooflow store"),
        ("s3://zooflow-no-such-bucket/x", "cannot reach artifact store s3://zooflow-no-such-bucket/x"),
    ):
        for args in (["artifacts", "list"], ["fetch", "--demo"]):
            code, _, err = cli(*args, "--store", store, env=env)
            assert code == 2 and says in err, (store, args, err)
            no_traceback(err)
    assert afile.read_text() == "mine\n"


@case(
    "names-too-long",
    area="bad input",
    fault="a 250-character alias (`artifacts alias NAME@1 aaaa...`) or artifact name in a reference",
    sees="exit 2: invalid alias / invalid artifact name, saying at most 100 characters (an ENAMETOOLONG traceback before)",
    kept="the store; no temp file of the alias record is left",
    fixed_in="issue 29 #7",
)
def names_too_long(request: pytest.FixtureRequest) -> None:
    store, _ = _store_with_checkpoint(request)
    at = ["--store", str(store.root)]
    code, _, err = cli("artifacts", "alias", f"{MODEL}/checkpoint@1", "a" * 250, *at)
    assert code == 2 and "invalid alias" in err and "up to 100" in err, err
    code, _, err = cli("artifacts", "show", "b" * 250 + "/onnx", *at)
    assert code == 2 and "invalid artifact name" in err and "at most 100" in err, err
    assert not list((Path(store.root) / "names").rglob("*.tmp-*"))
    assert store.aliases(f"{MODEL}/checkpoint") == {}
