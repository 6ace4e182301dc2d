"""Content-addressed, versioned artifact store over fsspec (local directory by default).

Layout under the store root::

    objects/<d[:2]>/<digest>/files/...      the artifact's files
    objects/<d[:2]>/<digest>/manifest.json  written last: an object exists iff its manifest does
    names/<logical name>/versions/000001.json   version -> digest
    names/<logical name>/aliases/<alias>.json   alias -> version (``latest`` is implicit)
    cache/<key>.json                        cache records (see ``tasks/``), verified on every hit
    cache/verified/<digest>.json            local stores: file stats at the last full re-hash
    prefect/                                Prefect's task results for this store
    tmp/                                    staging; publish = atomic rename into objects/

An artifact's digest is the SHA-256 of its sorted file listing, one ``<sha256> <size> <path>``
line per file, so it covers names and contents of every file (one file or a folder alike).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import fsspec
import platformdirs
from fsspec.implementations.local import LocalFileSystem
from pydantic import BaseModel, ConfigDict, Field

from zooflow import provenance
from zooflow.errors import ArtifactNotFoundError, StoreError

SCHEMA_VERSION = 1
_CHUNK = 1 << 20
_HEX_RE = re.compile(r"^(sha256:)?[0-9a-f]{6,64}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]*(/[A-Za-z0-9][A-Za-z0-9._\-]*)*$")
_ALIAS_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]*$")


class FileEntry(BaseModel):
    """One file of an artifact."""

    path: str
    size: int
    sha256: str


class InputRef(BaseModel):
    """An input an artifact was made from (its lineage)."""

    role: str
    digest: str
    kind: str
    name: str | None = None


class Producer(BaseModel):
    """The stage run that produced an artifact."""

    stage: str
    stage_version: str
    params: dict[str, Any] = Field(default_factory=dict)
    code_version: str = ""
    libraries: dict[str, str] = Field(default_factory=dict)
    toolchain: dict[str, Any] | None = None
    host: dict[str, str] = Field(default_factory=dict)


class Manifest(BaseModel):
    """Everything known about one stored artifact."""

    schema_version: int = SCHEMA_VERSION
    kind: str
    digest: str
    size: int
    files: list[FileEntry]
    producer: Producer
    inputs: list[InputRef] = Field(default_factory=list)
    created: str
    meta: dict[str, Any] = Field(default_factory=dict)


class ArtifactRef(BaseModel):
    """What a stage returns: a small, serialisable handle on a stored artifact."""

    model_config = ConfigDict(frozen=True)

    kind: str
    digest: str
    store: str
    files: tuple[str, ...]
    name: str | None = None
    version: int | None = None
    meta: dict[str, Any] = Field(default_factory=dict)

    @property
    def short(self) -> str:
        """The first 12 hex digits of the digest."""
        return self.digest[:12]

    def label(self) -> str:
        """``name@version (digest)`` for messages."""
        head = f"{self.name}@{self.version}" if self.name else self.kind
        return f"{head} ({self.short})"


class VersionRecord(BaseModel):
    """One version of a logical artifact name."""

    name: str
    version: int
    digest: str
    kind: str
    created: str
    aliases: list[str] = Field(default_factory=list)


class CacheRecord(BaseModel):
    """Maps a stage cache key to the artifact it produced and a cache epoch (see ``tasks/``)."""

    key: str
    epoch: str
    digest: str | None = None
    name: str | None = None  # the produced artifact's name@version, so a resumed stage returns the same ref
    version: int | None = None


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a local file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def tree_digest(files: list[FileEntry]) -> str:
    """The artifact digest: SHA-256 of the sorted ``<sha256> <size> <path>`` listing."""
    listing = "".join(f"{f.sha256} {f.size} {f.path}\n" for f in sorted(files, key=lambda f: f.path))
    return hashlib.sha256(listing.encode()).hexdigest()


def scan_dir(root: Path) -> list[FileEntry]:
    """Hash every file below `root` (relative POSIX paths, sorted)."""
    entries = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        entries.append(
            FileEntry(path=path.relative_to(root).as_posix(), size=path.stat().st_size, sha256=sha256_file(path))
        )
    return entries


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class Store:
    """An artifact store rooted at a local path or any fsspec URL (``s3://bucket/prefix``)."""

    def __init__(self, url: str | os.PathLike[str], *, create: bool = True) -> None:
        url = os.fspath(url)
        self.url = url
        try:
            fs, root = fsspec.core.url_to_fs(url)
        except (ValueError, ImportError) as exc:
            raise StoreError(
                f"cannot open artifact store {url!r}: {exc}",
                "pass --store with a local path or an fsspec URL whose backend is installed (e.g. s3fs for s3://)",
            ) from None
        self.fs: fsspec.AbstractFileSystem = fs
        self.root: str = root.rstrip("/") or "/"
        self.is_local = isinstance(fs, LocalFileSystem)
        if self.is_local:
            self.url = str(Path(self.root))
        if create:
            self._check_writable()
        elif not self.fs.exists(self.root):
            raise StoreError(f"no artifact store at {self.url}", "run a stage first, or pass the right --store")

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
            reason = exc.strerror or type(exc).__name__
            raise StoreError(
                f"artifact store {self.url} is not writable ({reason}: {getattr(exc, 'filename', '') or self.url})",
                f"pass --store PATH (or set ZOOFLOW_STORE) to a directory you can write, or fix the permissions of {self.url}",
            ) from None

    def _read_json(self, path: str) -> Any:
        with self.fs.open(path, "rb") as fh:
            return json.loads(fh.read())

    def _write_json(self, path: str, obj: Any) -> None:
        """Write JSON atomically: temp file + rename locally, one PUT elsewhere."""
        data = json.dumps(obj, indent=2, sort_keys=True).encode()
        parent = path.rsplit("/", 1)[0]
        self.fs.makedirs(parent, exist_ok=True)
        if self.is_local:
            tmp = f"{path}.tmp-{uuid.uuid4().hex}"
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        else:
            self.fs.pipe_file(path, data)

    def object_dir(self, digest: str) -> str:
        """Location of an object's folder in the store."""
        return self._p("objects", digest[:2], digest)

    @property
    def prefect_dir(self) -> str:
        """Where Prefect keeps task results for this store (a path or URL)."""
        return self._p("prefect") if not self.is_local else str(Path(self.root) / "prefect")

    # ---------------------------------------------------------------- writing
    @contextlib.contextmanager
    def staging(self) -> Iterator[Path]:
        """A fresh local folder to write an artifact's files into; removed afterwards.

        Locally it sits inside the store so that publishing is a rename on the same file system.
        """
        if self.is_local:
            base = Path(self.root) / "tmp"
            base.mkdir(parents=True, exist_ok=True)
            path = Path(tempfile.mkdtemp(prefix="stage-", dir=base))
        else:
            path = Path(tempfile.mkdtemp(prefix="zooflow-stage-"))
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

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

        Identical content already in the store (and verifying) is not written again; an object
        that fails verification is repaired by the new copy.
        """
        if name is not None and not _NAME_RE.match(name):
            raise StoreError(f"invalid artifact name {name!r}", "use letters, digits, '.', '_', '-' and '/'")
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
        existing = self.exists(digest) and not self.verify(digest)
        if existing:
            manifest = self.manifest(digest)  # first producer wins: same bytes, same artifact
        else:
            self._publish_files(staged, files, digest)
            self._write_json(self.object_dir(digest) + "/manifest.json", manifest.model_dump(mode="json"))
        version = self._register_version(name, manifest) if name else None
        return self.ref(digest, name=name, version=version)

    def _publish_files(self, staged: Path, files: list[FileEntry], digest: str) -> None:
        target = self.object_dir(digest) + "/files"
        for entry in files:
            dest = f"{target}/{entry.path}"
            self.fs.makedirs(dest.rsplit("/", 1)[0], exist_ok=True)
            if self.is_local:
                os.replace(staged / entry.path, dest)  # atomic on one file system
                os.chmod(dest, 0o444)  # stored content is immutable; edits must go through a new version
            else:
                self.fs.put_file(str(staged / entry.path), dest)

    def _register_version(self, name: str, manifest: Manifest) -> int:
        versions = self.versions(name)
        if versions and versions[-1].digest == manifest.digest:
            return versions[-1].version  # re-publishing the latest content makes no new version
        number = versions[-1].version + 1 if versions else 1
        while True:
            path = self._p("names", name, "versions", f"{number:06d}.json")
            record = VersionRecord(
                name=name, version=number, digest=manifest.digest, kind=manifest.kind, created=_now()
            )
            data = json.dumps(record.model_dump(mode="json"), indent=2).encode()
            self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
            if self.is_local:
                try:
                    with open(path, "xb") as fh:  # exclusive create: concurrent writers get distinct numbers
                        fh.write(data)
                    return number
                except FileExistsError:
                    number += 1
            else:
                if self.fs.exists(path):
                    number += 1
                    continue
                self.fs.pipe_file(path, data)
                return number

    def set_alias(self, name: str, alias: str, version: int) -> None:
        """Point `alias` of logical name `name` at `version`."""
        if not _ALIAS_RE.match(alias) or alias == "latest" or alias.isdigit():
            raise StoreError(
                f"invalid alias {alias!r}", "use letters, digits, '.', '_' and '-' (not 'latest' or a number)"
            )
        if version not in {v.version for v in self.versions(name)}:
            raise ArtifactNotFoundError(
                f"{name} has no version {version}", f"`zooflow artifacts list {name}` shows its versions"
            )
        self._write_json(self._p("names", name, "aliases", f"{alias}.json"), {"version": version})

    # ---------------------------------------------------------------- reading
    def exists(self, digest: str) -> bool:
        """Whether a complete object (manifest present) with this digest is stored."""
        return bool(self.fs.exists(self.object_dir(digest) + "/manifest.json"))

    def manifest(self, digest: str) -> Manifest:
        """The manifest of a stored object."""
        path = self.object_dir(digest) + "/manifest.json"
        try:
            return Manifest.model_validate(self._read_json(path))
        except FileNotFoundError:
            raise ArtifactNotFoundError(
                f"no artifact {digest[:12]} in store {self.url}", "`zooflow artifacts list` shows what is stored"
            ) from None

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
        remote = f"{self.object_dir(digest)}/files/{file}"
        if self.is_local:
            return Path(remote)
        local = Path(platformdirs.user_cache_dir("zooflow")) / "objects" / digest / file
        if not local.is_file() or local.stat().st_size != entry.size or sha256_file(local) != entry.sha256:
            local.parent.mkdir(parents=True, exist_ok=True)
            tmp = local.with_name(local.name + f".tmp-{uuid.uuid4().hex}")
            self.fs.get_file(remote, str(tmp))
            os.replace(tmp, local)
        return local

    def directory(self, ref: ArtifactRef | str) -> Path:
        """A local folder holding all of an artifact's files."""
        digest = ref if isinstance(ref, str) else ref.digest
        manifest = self.manifest(digest)
        if self.is_local:
            return Path(self.object_dir(digest)) / "files"
        for entry in manifest.files:
            self.path(digest, entry.path)
        return Path(platformdirs.user_cache_dir("zooflow")) / "objects" / digest

    def verify(self, digest: str) -> list[str]:
        """Re-hash an object's files against its manifest; returns the problems (empty = intact).

        A local object whose files' stats are unchanged since its last clean re-hash is not re-hashed.
        """
        try:
            manifest = self.manifest(digest)
        except ArtifactNotFoundError as exc:
            return [exc.problem]
        except (ValueError, OSError) as exc:
            return [f"manifest of {digest[:12]} is unreadable: {exc}"]
        problems = []
        if tree_digest(manifest.files) != digest:
            problems.append(f"manifest of {digest[:12]} lists files whose digest is not {digest[:12]}")
        base = self.object_dir(digest) + "/files"
        stats = self._file_stats(base, manifest) if self.is_local and not problems else None
        if stats is not None and self._stamp_holds(digest, stats):
            return []
        for entry in manifest.files:
            path = f"{base}/{entry.path}"
            if not self.fs.exists(path):
                problems.append(f"{entry.path}: missing")
                continue
            size = self.fs.size(path)
            if size != entry.size:
                problems.append(f"{entry.path}: size {size} != {entry.size} in manifest")
                continue
            actual = sha256_file(path) if self.is_local else _sha256_remote(self.fs, path)
            if actual != entry.sha256:
                problems.append(f"{entry.path}: sha256 {actual[:12]} != {entry.sha256[:12]} in manifest")
        if not problems and stats is not None:
            self._write_json(self._p("cache", "verified", f"{digest}.json"), {"at": time.time(), "files": stats})
        return problems

    # Why hand-written: re-hashing gigabytes of npz on every cache hit dominated cached runs; like
    # git's index, a local store skips the hash when no file's stat changed since the last full
    # re-hash. ctime cannot be set by tools (a write, chmod or replace changes it), and a file
    # whose ctime is within a second of the stamp is re-hashed ("racy" entries, as in git).
    @staticmethod
    def _file_stats(base: str, manifest: Manifest) -> dict[str, list[int]] | None:
        stats = {}
        for entry in manifest.files:
            try:
                st = os.stat(f"{base}/{entry.path}")
            except OSError:
                return None
            stats[entry.path] = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
        return stats

    def _stamp_holds(self, digest: str, stats: dict[str, list[int]]) -> bool:
        try:
            stamp = self._read_json(self._p("cache", "verified", f"{digest}.json"))
        except (OSError, ValueError):
            return False
        if not isinstance(stamp, dict) or stamp.get("files") != stats:
            return False
        settled = (float(stamp.get("at", 0)) - 1.0) * 1e9
        return all(ctime < settled for _, _, ctime, _ in stats.values())

    def versions(self, name: str) -> list[VersionRecord]:
        """All versions of a logical name, oldest first, with their aliases."""
        base = self._p("names", name, "versions")
        try:
            paths = sorted(p for p in self.fs.ls(base, detail=False) if str(p).endswith(".json"))
        except FileNotFoundError:
            return []
        aliases = self.aliases(name)
        records = []
        for path in paths:
            record = VersionRecord.model_validate(self._read_json(path))
            record.aliases = sorted(a for a, v in aliases.items() if v == record.version)
            records.append(record)
        if records:
            records[-1].aliases = ["latest", *records[-1].aliases]
        return records

    def aliases(self, name: str) -> dict[str, int]:
        """User aliases of a logical name -> version."""
        base = self._p("names", name, "aliases")
        try:
            paths = self.fs.ls(base, detail=False)
        except FileNotFoundError:
            return {}
        return {
            str(p).rsplit("/", 1)[-1].removesuffix(".json"): int(self._read_json(p)["version"])
            for p in paths
            if str(p).endswith(".json")
        }

    def names(self) -> list[str]:
        """Every logical name with at least one version."""
        base = self._p("names")
        found = self.fs.glob(base + "/**/versions/*.json")
        names = {str(p)[len(base) + 1 :].rsplit("/versions/", 1)[0] for p in found}
        return sorted(names)

    def digests(self) -> list[str]:
        """Every complete object in the store."""
        return sorted(str(p).rsplit("/", 2)[-2] for p in self.fs.glob(self._p("objects", "*", "*", "manifest.json")))

    def resolve(self, spec: str) -> ArtifactRef:
        """Turn ``name``, ``name@3``, ``name@alias``, a digest or a unique digest prefix into a ref."""
        spec = spec.strip()
        if _HEX_RE.match(spec):
            prefix = spec.removeprefix("sha256:")
            matches = [d for d in self.digests() if d.startswith(prefix)]
            if len(matches) == 1:
                return self.ref(matches[0])
            if len(matches) > 1:
                raise StoreError(
                    f"digest prefix {prefix!r} is ambiguous ({len(matches)} artifacts)", "give more digits"
                )
        name, _, tag = spec.partition("@")
        versions = self.versions(name)
        if not versions:
            close = [n for n in self.names() if name in n or n in name][:5]
            hint = f"; stored names like it: {', '.join(close)}" if close else ""
            raise ArtifactNotFoundError(
                f"no artifact named {spec!r} in store {self.url}{hint}", "`zooflow artifacts list` shows what is stored"
            )
        if not tag or tag == "latest":
            record = versions[-1]
        elif tag.isdigit():
            found = [v for v in versions if v.version == int(tag)]
            if not found:
                raise ArtifactNotFoundError(f"{name} has no version {tag} (versions 1..{versions[-1].version})")
            record = found[0]
        else:
            aliases = self.aliases(name)
            if tag not in aliases:
                raise ArtifactNotFoundError(f"{name} has no alias {tag!r} (aliases: {', '.join(['latest', *aliases])})")
            record = next(v for v in versions if v.version == aliases[tag])
        return self.ref(record.digest, name=name, version=record.version)

    def lineage(self, digest: str) -> dict[str, Any]:
        """The artifact and, recursively, the artifacts it was made from."""
        seen: set[str] = set()

        def walk(d: str, role: str) -> dict[str, Any]:
            node: dict[str, Any] = {"role": role, "digest": d}
            if d in seen:
                node["repeated"] = True
                return node
            seen.add(d)
            try:
                manifest = self.manifest(d)
            except ArtifactNotFoundError:
                node["missing"] = True
                return node
            node.update(kind=manifest.kind, stage=manifest.producer.stage, created=manifest.created)
            node["inputs"] = [walk(i.digest, i.role) for i in manifest.inputs]
            return node

        return walk(digest, "artifact")

    # ------------------------------------------------------------ cache records
    def cache_record(self, key: str) -> CacheRecord | None:
        """The record for a stage cache key, if any."""
        try:
            return CacheRecord.model_validate(self._read_json(self._p("cache", f"{key}.json")))
        except FileNotFoundError:
            return None
        except ValueError:
            return None  # a damaged record is treated as absent: the stage recomputes

    def write_cache_record(self, record: CacheRecord) -> None:
        """Store a cache record atomically."""
        self._write_json(self._p("cache", f"{record.key}.json"), record.model_dump(mode="json"))

    def cached(self, key: str) -> ArtifactRef | None:
        """The artifact a cache record names (as name@version), if the record has one and it is intact."""
        record = self.cache_record(key)
        if record is None or record.digest is None or self.verify(record.digest):
            return None
        return self.ref(record.digest, name=record.name, version=record.version)

    def recall(self, key: str) -> ArtifactRef | None:
        """The artifact memoised under `key` by `memoize`, if it is still intact (core-level resume)."""
        return self.cached(f"memo-{key}")

    def memoize(self, key: str, ref: ArtifactRef) -> ArtifactRef:
        """Remember that the work identified by `key` produced `ref`; returns `ref`."""
        self.write_cache_record(CacheRecord(key=f"memo-{key}", epoch="memo", digest=ref.digest))
        return ref


def _sha256_remote(fs: fsspec.AbstractFileSystem, path: str) -> str:
    digest = hashlib.sha256()
    with fs.open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def open_store(url: str | os.PathLike[str] | None = None, *, create: bool = True) -> Store:
    """Open the store at `url`, or the default (`ZOOFLOW_STORE`, else the per-user data dir)."""
    from zooflow.config import default_store_url

    return Store(url if url is not None else default_store_url(), create=create)
