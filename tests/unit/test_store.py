"""Content-addressed store: digests, dedupe, versions, aliases, verify, lineage, atomicity."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from zooflow.errors import ArtifactNotFoundError, StoreError
from zooflow.records import tree_digest
from zooflow.store import Store


def _put(store: Store, files: dict[str, bytes], name: str = "m/thing", **kw):  # type: ignore[no-untyped-def]
    with store.staging() as staged:
        for rel, data in files.items():
            (staged / rel).parent.mkdir(parents=True, exist_ok=True)
            (staged / rel).write_bytes(data)
        return store.commit(staged, kind=kw.pop("kind", "thing"), stage="test", stage_version="1", name=name, **kw)


def test_digest_is_sha256_of_the_file_listing(store: Store) -> None:
    ref = _put(store, {"a.txt": b"hello", "sub/b.bin": b"x" * 10})
    listing = f"{hashlib.sha256(b'hello').hexdigest()} 5 a.txt\n{hashlib.sha256(b'x' * 10).hexdigest()} 10 sub/b.bin\n"
    assert ref.digest == hashlib.sha256(listing.encode()).hexdigest()
    manifest = store.manifest(ref.digest)
    assert tree_digest(manifest.files) == ref.digest
    assert manifest.size == 15
    assert [f.path for f in manifest.files] == ["a.txt", "sub/b.bin"]
    assert store.path(ref, "a.txt").read_bytes() == b"hello"


def test_manifest_records_producer_lineage_and_versions(store: Store) -> None:
    src = _put(store, {"x": b"1"}, name="m/src", kind="checkpoint")
    ref = _put(
        store,
        {"y": b"2"},
        params={"opset": 11},
        inputs={"checkpoint": src},
        meta={"note": "hi"},
        libraries={"torch": "2.13.0"},
    )
    manifest = store.manifest(ref.digest)
    assert manifest.producer.stage == "test"
    assert manifest.producer.params == {"opset": 11}
    assert manifest.producer.libraries == {"torch": "2.13.0"}
    assert manifest.producer.code_version.startswith("zooflow ")
    assert [(i.role, i.digest, i.kind) for i in manifest.inputs] == [("checkpoint", src.digest, "checkpoint")]
    assert manifest.created
    assert manifest.meta == {"note": "hi"}
    tree = store.lineage(ref.digest)
    assert tree["inputs"][0]["digest"] == src.digest
    assert tree["inputs"][0]["kind"] == "checkpoint"


def test_same_content_is_stored_once_and_makes_no_new_version(store: Store) -> None:
    first = _put(store, {"a": b"same"})
    second = _put(store, {"a": b"same"})
    assert first == second
    assert first.version == 1
    assert store.digests() == [first.digest]
    assert [v.version for v in store.versions("m/thing")] == [1]


def test_new_content_gets_increasing_versions_and_aliases(store: Store) -> None:
    v1 = _put(store, {"a": b"one"})
    v2 = _put(store, {"a": b"two"})
    assert (v1.version, v2.version) == (1, 2)
    assert store.resolve("m/thing").digest == v2.digest
    assert store.resolve("m/thing@latest").digest == v2.digest
    assert store.resolve("m/thing@1").digest == v1.digest
    store.set_alias("m/thing", "nightly-2026-11-28", 1)
    assert store.resolve("m/thing@nightly-2026-11-28").digest == v1.digest
    assert store.versions("m/thing")[0].aliases == ["nightly-2026-11-28"]
    assert store.versions("m/thing")[1].aliases == ["latest"]
    assert store.resolve(v1.digest[:10]).digest == v1.digest
    with pytest.raises(ArtifactNotFoundError, match="no version 9"):
        store.resolve("m/thing@9")
    with pytest.raises(ArtifactNotFoundError, match="no alias 'prod'"):
        store.resolve("m/thing@prod")
    with pytest.raises(ArtifactNotFoundError, match="no artifact named 'm/other'"):
        store.resolve("m/other")
    with pytest.raises(StoreError, match="invalid alias"):
        store.set_alias("m/thing", "latest", 1)


def test_verify_detects_modified_missing_and_truncated_files(store: Store) -> None:
    ref = _put(store, {"a": b"payload", "b": b"other"})
    assert store.verify(ref.digest) == []
    path = store.path(ref, "a")
    os.chmod(path, 0o644)
    path.write_bytes(b"pAyload")
    assert store.verify(ref.digest) == [
        f"a: sha256 {hashlib.sha256(b'pAyload').hexdigest()[:12]} != {hashlib.sha256(b'payload').hexdigest()[:12]} in manifest"
    ]
    path.write_bytes(b"pay")
    assert store.verify(ref.digest) == ["a: size 3 != 7 in manifest"]
    store.path(ref, "b").unlink()
    assert "b: missing" in store.verify(ref.digest)


def test_verify_skips_the_rehash_only_while_no_file_changed(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    import zooflow.integrity as store_mod

    ref = _put(store, {"a": b"payload", "b": b"other"})
    real_time = store_mod.time.time
    monkeypatch.setattr(store_mod.time, "time", lambda: real_time() + 5)  # the stamp is older than any write
    assert store.verify(ref.digest) == []  # full re-hash, stamp written
    monkeypatch.setattr(store_mod.time, "time", real_time)

    def no_hashing(path: object) -> str:
        raise AssertionError("re-hashed an unchanged object")

    monkeypatch.setattr(store_mod, "sha256_file", no_hashing)
    assert store.verify(ref.digest) == []  # stats unchanged: trusted without hashing
    monkeypatch.undo()

    path = store.path(ref, "a")
    before = path.stat()
    os.chmod(path, 0o644)
    path.write_bytes(b"pAyload")  # same size, and the old mtime forged back: only ctime tells
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert store.verify(ref.digest) == [
        f"a: sha256 {hashlib.sha256(b'pAyload').hexdigest()[:12]} != {hashlib.sha256(b'payload').hexdigest()[:12]} in manifest"
    ]


def test_committing_identical_content_repairs_a_damaged_object(store: Store) -> None:
    ref = _put(store, {"a": b"payload"})
    path = store.path(ref, "a")
    os.chmod(path, 0o644)
    path.write_bytes(b"garbage")
    assert store.verify(ref.digest)
    again = _put(store, {"a": b"payload"})
    assert again.digest == ref.digest
    assert store.verify(ref.digest) == []


def test_stored_files_are_read_only(store: Store) -> None:
    ref = _put(store, {"a": b"payload"})
    assert store.path(ref, "a").stat().st_mode & 0o222 == 0


def test_a_failing_stage_leaves_nothing_behind(store: Store) -> None:
    def crashing_stage() -> None:
        with store.staging() as staged:
            (staged / "half.onnx").write_bytes(b"partial")
            raise RuntimeError("stage crashed")

    with pytest.raises(RuntimeError, match="stage crashed"):
        crashing_stage()
    assert store.digests() == []
    assert store.names() == []
    assert list((Path(store.root) / "tmp").glob("stage-*")) == []


def test_object_without_manifest_does_not_exist(store: Store) -> None:
    ref = _put(store, {"a": b"payload"})
    (Path(store.object_dir(ref.digest)) / "manifest.json").unlink()
    assert not store.exists(ref.digest)
    assert store.verify(ref.digest) == [f"no artifact {ref.digest[:12]} in store {store.url}"]


def test_unwritable_store_path_fails_with_a_fix(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError) as exc:
        Store(blocker / "store")
    assert "is not writable" in exc.value.problem
    assert "--store" in (exc.value.fix or "")
    assert "ZOOFLOW_STORE" in (exc.value.fix or "")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_directory_is_reported(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    with pytest.raises(StoreError, match="Permission denied"):
        Store(ro / "store")


def test_missing_store_is_reported_when_reading(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no artifact store at"):
        Store(tmp_path / "nothing-here", create=False)


def test_store_works_over_fsspec_memory_filesystem() -> None:
    store = Store("memory://zooflow-test-store")
    ref = _put(store, {"model.onnx": b"bytes"})
    assert not store.is_local
    assert store.verify(ref.digest) == []
    assert store.path(ref).read_bytes() == b"bytes"
    assert store.resolve("m/thing").version == 1


def test_a_remote_objects_folder_is_fetched_once_and_a_changed_copy_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Readers ask for an artifact's folder once per record: 200 images read 20,000 manifests from S3
    when every call checked every file again. Now the copy is checked once per process while its files'
    stat stamps hold; a local copy that changed is checked, and fetched, again."""
    import uuid

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    store = Store(f"memory://zooflow-copies-{uuid.uuid4().hex[:8]}")
    ref = _put(store, {f"img{n:03d}.bin": f"image {n}".encode() for n in range(50)})
    fetched: list[str] = []
    real_get = store.fs.get_file
    monkeypatch.setattr(
        store.fs, "get_file", lambda remote, local, **kw: fetched.append(remote) or real_get(remote, local)
    )
    assert store.directory(ref) == store.remote_copy_dir(ref.digest) and fetched == []  # the publisher's own copy
    import shutil

    shutil.rmtree(store.remote_copy_dir(ref.digest))  # as on another host
    store = Store(store.url)
    read: list[str] = []
    real_manifest = store.manifest
    monkeypatch.setattr(store, "manifest", lambda digest: read.append(digest) or real_manifest(digest))
    folders = {store.directory(ref) for _ in range(50)}
    assert len(folders) == 1 and len(fetched) == 50  # each file once, for 50 calls
    assert len(read) == 50  # one manifest read per call (before: 2,550, one more per file per call)
    copy = next(iter(folders)) / "img007.bin"
    copy.chmod(0o644)
    copy.write_bytes(b"tampered")
    assert (store.directory(ref) / "img007.bin").read_bytes() == b"image 7"
    assert len(fetched) == 51 and fetched[-1].endswith("img007.bin")


def test_gc_never_follows_a_link_out_of_the_store(store: Store, tmp_path: Path) -> None:
    """A link planted in the store (a `stage-*` entry to a user's folder; an unreferenced object's file
    swapped for a link to a user's file with the same bytes) is never followed: what it points at keeps
    its files and its permissions."""
    from zooflow import storecheck

    old = 1_000_000_000.0  # 2001: older than any grace period
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("keep")
    (mine / "read-only.txt").write_bytes(b"unreferenced")  # the same bytes as the object's file
    (mine / "read-only.txt").chmod(0o444)
    store.staging_dir.mkdir(parents=True, exist_ok=True)
    (store.staging_dir / "stage-old").symlink_to(mine, target_is_directory=True)
    os.utime(mine, (old, old))
    ref = _put(store, {"a.bin": b"unreferenced"}, name=None)  # type: ignore[arg-type]
    obj = Path(store.object_dir(ref.digest))
    (obj / "files" / "a.bin").chmod(0o644)
    (obj / "files" / "a.bin").unlink()
    (obj / "files" / "a.bin").symlink_to(mine / "read-only.txt")  # verifies: same name, same bytes
    os.utime(obj, (old, old))

    planned = storecheck.plan_gc(store)
    assert not [a for a in planned if a.kind == "staging"]  # the link is not the store's staging folder
    assert [a.target for a in planned if a.kind == "unreferenced"] == [ref.digest]
    storecheck.apply_gc(store, planned)
    assert not obj.exists()
    assert (mine / "keep.txt").read_text() == "keep" and (mine / "read-only.txt").read_bytes() == b"unreferenced"
    assert (mine / "read-only.txt").stat().st_mode & 0o777 == 0o444
