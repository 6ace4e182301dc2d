"""Content-addressed, versioned artifact store over fsspec (local directory by default).

Layout under the store root::

    objects/<d[:2]>/<digest>/files/...      the artifact's files (read-only)
    objects/<d[:2]>/<digest>/manifest.json  an object exists iff its manifest does
    names/<logical name>/versions/000001.json   version -> digest
    names/<logical name>/aliases/<alias>.json   alias -> version (``latest`` is implicit)
    cache/<key>.json                        cache records (see ``tasks/``), verified on every hit
    cache/verified/<digest>.json            local stores: file stats at the last clean re-hash
                                            (object stores: on each host, see `zooflow.integrity`)
    cache/file-hashes/                      local stores: dataset images' hashes by stat stamp
    prefect/                                Prefect's task results for this store
    locks/                                  advisory locks (local stores): one writer per key, name, object
    tmp/                                    staging (``stage-<owner>-*``), owners/ (live processes),
                                            downloads/ (resumable partial downloads)

An artifact's digest is the SHA-256 of its sorted file listing, one ``<sha256> <size> <path>``
line per file, so it covers names and contents of every file (one file or a folder alike).

Every small record is written whole or not at all (`zooflow.durable`: temp file, fsync, rename;
version numbers by exclusive create). A local object is assembled beside the store and published
by one folder rename, so it appears complete or not at all; a damaged copy found when the same
content is committed again is moved aside and replaced. Readers name a damaged record and its
repair instead of crashing; `zooflow.storecheck` audits and repairs the whole store.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import fsspec
import platformdirs
from fsspec.implementations.local import LocalFileSystem

from zooflow import durable, provenance
from zooflow.catalog import REPAIR_HINT, Catalog, _now, _reason
from zooflow.errors import ArtifactNotFoundError, DamagedRecordError, StoreError, ZooflowError
from zooflow.filehash import sha256_file
from zooflow.integrity import Integrity
from zooflow.records import (
    ArtifactRef,
    CacheRecord,
    FileEntry,
    InputRef,
    Manifest,
    Producer,
    check_digest,
    check_name,
    scan_dir,
    tree_digest,
)

# the records a store hands out, importable from here as before (defined in zooflow.records)
__all__ = [
    "REPAIR_HINT",
    "ArtifactRef",
    "CacheRecord",
    "FileEntry",
    "Manifest",
    "Store",
    "open_store",
    "sha256_file",
]

_REACHED: set[str] = set()  # remote stores this process has written to
FLAT = ("s3", "s3a", "gs", "gcs", "az", "abfs")  # object stores: a key needs no folder made first


# Where a store may live: local folders, and object stores whose writes are whole or absent.
STORE_SCHEMES = ("file", "local", "s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "memory")
# Object stores whose create is exclusive on the server, so the first writer of a record wins across
# hosts: S3's conditional PUT (``If-None-Match: *``, s3fs's ``mode="create"``); memory is one process.
EXCLUSIVE_CREATE = ("s3", "s3a", "memory")
SINGLE_WRITER_ENV = "ZOOFLOW_SINGLE_WRITER"  # "1": the one host that writes a gs/az store says so


def _lock_name(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:40]


class Store(Catalog, Integrity):
    """An artifact store rooted at a local path or any fsspec URL (``s3://bucket/prefix``)."""

    def __init__(self, url: str | os.PathLike[str], *, create: bool = True) -> None:
        url = os.fspath(url)
        self.url = url
        scheme = url.split("://", 1)[0].lower() if "://" in url else "file"
        if scheme not in STORE_SCHEMES:
            raise StoreError(
                f"artifact store {url!r}: a {scheme}:// location cannot hold a zooflow store (it needs whole-object "
                "writes that readers never see half-done)",
                f"pass --store a local folder or one of {', '.join(f'{s}://' for s in STORE_SCHEMES if s != 'file')}",
            )
        try:
            fs, root = fsspec.core.url_to_fs(url)
        except (ValueError, ImportError) as exc:
            raise StoreError(
                f"cannot open artifact store {url!r}: {exc}",
                "pass --store with a local path or an fsspec URL whose backend is installed (e.g. s3fs for s3://)",
            ) from None
        except OSError as exc:
            raise StoreError(
                f"cannot reach artifact store {url!r}: {_reason(exc)}",
                "check the address and that its server runs and lets you in, or pass another --store",
            ) from None
        self.fs: fsspec.AbstractFileSystem = fs
        self.scheme = scheme
        self.root: str = root.rstrip("/") or "/"
        self.is_local = isinstance(fs, LocalFileSystem)
        self._copies: dict[str, list[tuple[int, int, int]] | None] = {}  # remote digest -> its checked copy's stamps
        if self.is_local:
            self.url = str(Path(self.root))
            if Path(self.root).exists() and not Path(self.root).is_dir():
                raise StoreError(
                    f"artifact store {self.url} is a file, not a store folder",
                    "pass --store a folder (a new one, or one zooflow made), or set ZOOFLOW_STORE to one",
                )
        try:
            if create:
                if self.is_local or self.url not in _REACHED:  # a remote store: once per process
                    self._check_writable()
                    _REACHED.add(self.url)
            elif not self.fs.exists(self.root):
                raise StoreError(f"no artifact store at {self.url}", "run a stage first, or pass the right --store")
        except ZooflowError:
            raise
        except Exception as exc:  # object-store SDKs raise their own types (no credentials, DNS)
            if self.is_local and not isinstance(exc, OSError):
                raise
            raise StoreError(
                f"cannot reach artifact store {self.url}: {_reason(exc)}",
                "check the address, the credentials and that its server runs, or pass another --store",
            ) from None

    # ------------------------------------------------------------------ basics
    def _p(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def _check_writable(self) -> None:
        probe = self._p("tmp", f".probe-{uuid.uuid4().hex}")
        try:
            self.fs.makedirs(self._p("tmp"), exist_ok=True)
            self.fs.pipe_file(probe, b"ok")
            self.fs.rm_file(probe)
        except OSError as exc:
            if durable.is_disk_full(exc):
                raise durable.disk_full_error(exc, self.root, "zooflow") from None
            reason = exc.strerror or type(exc).__name__
            raise StoreError(
                f"artifact store {self.url} is not writable ({reason}: {getattr(exc, 'filename', '') or self.url})",
                f"pass --store PATH (or set ZOOFLOW_STORE) to a directory you can write, or fix the permissions of {self.url}",
            ) from None

    def read_only(self) -> str | None:
        """Why this (local) store cannot be written, or None: a read-only mount, or no write permission."""
        if not self.is_local:
            return None
        try:
            if os.statvfs(self.root).f_flag & os.ST_RDONLY:
                return "its file system is mounted read-only"
        except OSError:
            return None
        if not os.access(self.root, os.W_OK):
            return "you have no permission to write it"
        return None

    def require_writable(self, command: str) -> None:
        """Refuse (StoreError) a command that must write this store when it is read-only."""
        why = self.read_only()
        if why is not None:
            raise StoreError(
                f"artifact store {self.url} is read-only ({why}); `{command}` needs to write it; nothing was changed",
                f"pass --store a store you can write (or remount {self.url} read-write); read commands "
                "(artifacts list, show, lineage, verify, eval, report of a stored report) work on it as it is",
            )

    def _read_json(self, path: str) -> Any:
        with self.fs.open(path, "rb") as fh:
            return json.loads(fh.read())

    def _write_json(self, path: str, obj: Any) -> None:
        """Write JSON whole or not at all: temp file + fsync + rename locally, one PUT elsewhere."""
        data = json.dumps(obj, indent=2, sort_keys=True).encode()
        with durable.disk_full_as_error(path, "the artifact store"):
            if self.is_local:
                durable.write_atomic(path, data)
            else:
                self._parent(path)
                self.fs.pipe_file(path, data)

    def _parent(self, path: str) -> None:
        """Make the folder `path` goes in, where folders exist (not on object stores: s3fs's makedirs is a request)."""
        if self.scheme not in FLAT:
            self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)

    def _create_json(self, path: str, obj: Any) -> bool:
        """Create a JSON record only if none exists (first writer wins); False if one did."""
        data = json.dumps(obj, indent=2, sort_keys=True).encode()
        with durable.disk_full_as_error(path, "the artifact store"):
            if self.is_local:
                return durable.create_atomic(path, data)
            self._parent(path)
            if self.scheme in EXCLUSIVE_CREATE:  # one conditional PUT: the server refuses a second writer
                try:
                    self.fs.pipe_file(path, data, mode="create")
                except FileExistsError:
                    return False
                return True
            if os.environ.get(SINGLE_WRITER_ENV) != "1":
                raise StoreError(
                    f"artifact store {self.url}: zooflow cannot create records on {self.scheme}:// so that the first "
                    "writer wins across hosts (two hosts could take one version number)",
                    f"use a local folder or s3:// for a store several hosts write; where only this host writes, "
                    f"set {SINGLE_WRITER_ENV}=1",
                )
            if self.fs.exists(path):  # single writer: check-then-put cannot race
                return False
            self.fs.pipe_file(path, data)
            return True

    def object_dir(self, digest: str) -> str:
        """Location of an object's folder in the store."""
        check_digest(digest)
        return self._p("objects", digest[:2], digest)

    @property
    def prefect_dir(self) -> str:
        """Where Prefect keeps task results for this store (a path or URL)."""
        return self._p("prefect") if not self.is_local else str(Path(self.root) / "prefect")

    @property
    def local_cache_dir(self) -> Path:
        """A local folder for caches that only speed things up (stat stamps, file hashes)."""
        if self.is_local:
            return Path(self.root) / "cache"
        return Path(platformdirs.user_cache_dir("zooflow")) / "stores" / _lock_name(self.url)[:16]

    @property
    def owners_dir(self) -> Path:
        """Where live processes hold their owner locks (see `zooflow.durable.owner_id`)."""
        return self.staging_dir / "owners"

    @property
    def downloads_dir(self) -> Path:
        """Where partial downloads wait to be resumed (``<id>-<name>.part``)."""
        if self.is_local:
            return Path(self.root) / "tmp" / "downloads"
        return Path(platformdirs.user_cache_dir("zooflow")) / "downloads"

    @property
    def staging_dir(self) -> Path:
        """Where artifacts are assembled before they are published."""
        if self.is_local:
            return Path(self.root) / "tmp"
        return Path(tempfile.gettempdir()) / "zooflow-staging"

    @contextlib.contextmanager
    def lock(self, what: str) -> Iterator[None]:
        """An exclusive lock on `what` among processes of this host (local stores; a no-op elsewhere)."""
        if not self.is_local:
            yield
            return
        with durable.FileLock(Path(self.root) / "locks" / "store" / f"{_lock_name(what)}.lock"):
            yield

    @property
    def lock_dir(self) -> Path | None:
        """The folder for per-key locks of Prefect transactions (local stores only)."""
        return Path(self.root) / "locks" / "keys" if self.is_local else None

    # ---------------------------------------------------------------- writing
    @contextlib.contextmanager
    def staging(self, stage: str | None = None) -> Iterator[Path]:
        """A fresh local folder to write an artifact's files into; removed afterwards.

        Its name carries this process's owner id, so staging left by a killed run is recognised
        and removed at the next start (`zooflow.storecheck.clean_staging`). A full disk becomes a
        `DiskFullError` that names the path and the stage.
        """
        base = self.staging_dir
        what = f"the {stage} stage" if stage else "zooflow"
        with durable.disk_full_as_error(base, what):
            base.mkdir(parents=True, exist_ok=True)
            owner = durable.owner_id(self.owners_dir)
            path = Path(tempfile.mkdtemp(prefix=f"stage-{owner}-", dir=base))
        try:
            with durable.disk_full_as_error(path, what):
                yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)  # our own staging folder, never a user's path

    def commit(
        self,
        staged: Path,
        *,
        kind: str,
        stage: str,
        stage_version: str,
        name: str | None = None,
        params: Mapping[str, Any] | None = None,
        inputs: Mapping[str, ArtifactRef] | None = None,
        meta: Mapping[str, Any] | None = None,
        libraries: Mapping[str, str] | None = None,
        toolchain: Mapping[str, Any] | None = None,
    ) -> ArtifactRef:
        """Publish the files under `staged` as one artifact, record its manifest and version.

        Identical content already in the store (and intact, re-hashed in full) is not written
        again; a damaged copy is replaced by the new one.
        """
        if name is not None:
            check_name(name)
        with durable.disk_full_as_error(staged, f"the {stage} stage"):
            files = scan_dir(staged)
            if not files:
                raise StoreError(f"stage {stage!r} produced no files", "this is a bug in the stage; please report it")
            digest = tree_digest(files)
            manifest = Manifest(
                kind=kind,
                digest=digest,
                size=sum(f.size for f in files),
                files=files,
                producer=Producer(
                    stage=stage,
                    stage_version=stage_version,
                    params=dict(params or {}),
                    code_version=provenance.code_version(),
                    libraries=dict(libraries or {}),
                    toolchain=dict(toolchain) if toolchain is not None else None,
                    host=provenance.host(),
                ),
                inputs=[
                    InputRef(role=role, digest=ref.digest, kind=ref.kind, name=ref.name)
                    for role, ref in (inputs or {}).items()
                ],
                created=_now(),
                meta=dict(meta or {}),
            )
            with self.lock(f"object:{digest}"):
                if self.exists(digest) and not self.verify(digest, full=True):
                    manifest = self.manifest(digest)  # first producer wins: same bytes, same artifact
                elif self.is_local:
                    self._publish_local(staged, files, manifest)
                else:
                    self._publish_remote(staged, files, manifest)
            version = self._register_version(name, manifest) if name else None
        return self.ref(digest, name=name, version=version)

    def _publish_local(self, staged: Path, files: list[FileEntry], manifest: Manifest) -> None:
        """Assemble the object beside the store and publish it with one folder rename."""
        owner = durable.owner_id(self.owners_dir)
        assembly = Path(tempfile.mkdtemp(prefix=f"stage-{owner}-obj-", dir=self.staging_dir))
        try:
            for entry in files:
                dest = assembly / "files" / entry.path
                dest.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.replace(staged / entry.path, dest)
                except OSError:  # another file system: copy instead
                    shutil.copyfile(staged / entry.path, dest)
                os.chmod(dest, 0o444)  # stored content is immutable; edits must go through a new version
            durable.write_atomic(assembly / "manifest.json", _dump(manifest))
            target = Path(self.object_dir(manifest.digest))
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():  # damaged or incomplete: move it aside, then publish the good copy
                aside = self.staging_dir / f"stage-{owner}-damaged-{manifest.digest[:16]}-{uuid.uuid4().hex[:8]}"
                os.rename(target, aside)
                shutil.rmtree(aside, ignore_errors=True)  # the store's own damaged copy, moved aside above
                (Path(self.root) / "cache" / "verified" / f"{manifest.digest}.json").unlink(missing_ok=True)
            os.rename(assembly, target)
            durable.fsync_dir(target.parent)
        finally:
            shutil.rmtree(assembly, ignore_errors=True)  # our own assembly folder (gone once published)

    def _publish_remote(self, staged: Path, files: list[FileEntry], manifest: Manifest) -> None:
        """Upload every file, remove stray ones, write the manifest last."""
        base = self.object_dir(manifest.digest)
        expected = {f"{base}/files/{entry.path}" for entry in files}
        for path in self._present_remote(base):
            if path not in expected:
                self.fs.rm_file(path)
        dests = [f"{base}/files/{entry.path}" for entry in files]
        for dest in dests:
            self._parent(dest)
        self.fs.put([str(staged / entry.path) for entry in files], dests)  # concurrent on s3fs
        self.fs.pipe_file(f"{base}/manifest.json", _dump(manifest))
        self._stamp_upload(manifest.digest, staged, manifest)
        for entry in files:  # this host's copy is the bytes just hashed and sent: no download to read it
            with contextlib.suppress(OSError):
                self._local_copy(manifest.digest, entry, source=staged / entry.path)

    def _present_remote(self, base: str) -> list[str]:
        try:
            return [p for p in self.fs.find(base + "/files") if not p.endswith("/")]
        except FileNotFoundError:
            return []

    def republish(self, staged: Path, manifest: Manifest) -> None:
        """Publish an object again from `staged`, whose files must match `manifest` (gc's repair)."""
        files = scan_dir(staged)
        if tree_digest(files) != manifest.digest:
            raise StoreError(f"the files to republish are not artifact {manifest.digest[:12]}", "use intact copies")
        with self.lock(f"object:{manifest.digest}"):
            if self.is_local:
                self._publish_local(staged, files, manifest)
            else:
                self._publish_remote(staged, files, manifest)

    # ---------------------------------------------------------------- reading
    def exists(self, digest: str) -> bool:
        """Whether a complete object (manifest present) with this digest is stored."""
        return bool(self.fs.exists(self.object_dir(digest) + "/manifest.json"))

    def manifest(self, digest: str) -> Manifest:
        """The manifest of a stored object; a damaged one is a `DamagedRecordError` naming the file."""
        path = self.object_dir(digest) + "/manifest.json"
        try:
            data = self._read_json(path)
            manifest = Manifest.model_validate(data)
        except FileNotFoundError:
            raise ArtifactNotFoundError(
                f"no artifact {digest[:12]} in store {self.url}", "`zooflow artifacts list` shows what is stored"
            ) from None
        except (ValueError, OSError) as exc:
            raise DamagedRecordError(
                f"the manifest of artifact {digest[:12]} is damaged ({path}: {_reason(exc)})",
                "run the stage that made it again (or commit the same content): the object is replaced; " + REPAIR_HINT,
            ) from None
        if manifest.digest != digest:
            raise DamagedRecordError(
                f"the manifest at {path} describes {manifest.digest[:12]}, not {digest[:12]}", REPAIR_HINT
            )
        return manifest

    def ref(self, digest: str, *, name: str | None = None, version: int | None = None) -> ArtifactRef:
        """An `ArtifactRef` for a stored object."""
        manifest = self.manifest(digest)
        return ArtifactRef(
            kind=manifest.kind,
            digest=digest,
            store=self.url,
            files=tuple(f.path for f in manifest.files),
            name=name,
            version=version,
            meta=manifest.meta,
        )

    def path(self, ref: ArtifactRef | str, file: str | None = None) -> Path:
        """A local path to one file of an artifact (downloaded and verified if the store is remote)."""
        digest = ref if isinstance(ref, str) else ref.digest
        manifest = self.manifest(digest)
        names = [f.path for f in manifest.files]
        if file is None:
            if len(names) != 1:
                raise StoreError(f"artifact {digest[:12]} has {len(names)} files; name one of: {', '.join(names[:10])}")
            file = names[0]
        entry = next((f for f in manifest.files if f.path == file), None)
        if entry is None:
            raise ArtifactNotFoundError(
                f"artifact {digest[:12]} has no file {file!r}", f"its files: {', '.join(names[:10])}"
            )
        if self.is_local:
            return Path(f"{self.object_dir(digest)}/files/{file}")
        return self._local_copy(digest, entry)

    def _local_copy(self, digest: str, entry: FileEntry, source: Path | None = None) -> Path:
        """This machine's copy of one file of a remote object, unless an intact copy is there: downloaded,
        or copied from `source` (the bytes this host just uploaded)."""
        local = self.remote_copy_dir(digest) / entry.path
        if not local.is_file() or local.stat().st_size != entry.size or sha256_file(local) != entry.sha256:
            local.parent.mkdir(parents=True, exist_ok=True)
            tmp = local.with_name(local.name + f".tmp-{uuid.uuid4().hex}")
            with durable.disk_full_as_error(tmp, "reading from the artifact store"):
                if source is not None:
                    shutil.copyfile(source, tmp)
                else:
                    self.fs.get_file(f"{self.object_dir(digest)}/files/{entry.path}", str(tmp))
            os.replace(tmp, local)
        return local

    @staticmethod
    def remote_copy_dir(digest: str) -> Path:
        """Where a remote object's files are kept on this machine once read."""
        return Path(platformdirs.user_cache_dir("zooflow")) / "objects" / digest

    def directory(self, ref: ArtifactRef | str) -> Path:
        """A local folder holding all of an artifact's files."""
        digest = ref if isinstance(ref, str) else ref.digest
        manifest = self.manifest(digest)
        if self.is_local:
            return Path(self.object_dir(digest)) / "files"
        # Readers call this once per record (e.g. per image pair), so a copy checked in full is
        # remembered with its files' stat stamps: re-checking every file for every call read the
        # manifest and hashed every file again per file (20,000 requests for 200 images).
        folder = self.remote_copy_dir(digest)
        if self._copies.get(digest) is not None and self._copies[digest] == _stamps(folder, manifest):
            return folder
        for entry in manifest.files:
            self._local_copy(digest, entry)
        self._copies[digest] = _stamps(folder, manifest)
        return folder


def _stamps(folder: Path, manifest: Manifest) -> list[tuple[int, int, int]] | None:
    """(size, mtime, inode) of each of a local copy's files; None if one is missing."""
    try:
        return [(st.st_size, st.st_mtime_ns, st.st_ino) for st in (os.stat(folder / f.path) for f in manifest.files)]
    except OSError:
        return None


def _dump(manifest: Manifest) -> bytes:
    return json.dumps(manifest.model_dump(mode="json"), indent=2, sort_keys=True).encode()


def open_store(url: str | os.PathLike[str] | None = None, *, create: bool = True) -> Store:
    """Open the store at `url`, or the default (`ZOOFLOW_STORE`, else the per-user data dir)."""
    from zooflow.config import default_store_url

    return Store(url if url is not None else default_store_url(), create=create)
