"""The store's names and records: versions and aliases of logical names, resolving ``name@tag``, lineage,
and the stage cache records. `zooflow.store.Store` holds the objects and mixes this in.

Every record is one small JSON file written whole (`zooflow.durable`); a version number is taken by
exclusive create, so two writers never share one.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from typing import TYPE_CHECKING, Any

from zooflow import durable
from zooflow.errors import ArtifactNotFoundError, DamagedRecordError, StoreError
from zooflow.records import (
    ALIAS_RE,
    DIGEST_RE,
    HEX_RE,
    KEY_RE,
    NAME_RE,
    VERSION_FILE_RE,
    ArtifactRef,
    CacheRecord,
    Manifest,
    VersionRecord,
    check_digest,
    check_name,
)

if TYPE_CHECKING:
    import fsspec

REPAIR_HINT = "`zooflow artifacts gc --apply` repairs or moves aside damaged records; then run again"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(exc).__name__}: {first[:160]}" if first else type(exc).__name__


class Catalog:
    """Logical names (versions, aliases), resolution, lineage and cache records over a store's files."""

    if TYPE_CHECKING:  # what `Store` provides
        url: str
        fs: fsspec.AbstractFileSystem

        def _p(self, *parts: str) -> str: ...
        def _read_json(self, path: str) -> Any: ...
        def _write_json(self, path: str, obj: Any) -> None: ...
        def _create_json(self, path: str, obj: Any) -> bool: ...
        def lock(self, what: str) -> contextlib.AbstractContextManager[None]: ...
        def exists(self, digest: str) -> bool: ...
        def manifest(self, digest: str) -> Manifest: ...
        def ref(self, digest: str, *, name: str | None = None, version: int | None = None) -> ArtifactRef: ...
        def verify(self, digest: str, *, full: bool = False) -> list[str]: ...

    # ------------------------------------------------------------------ names
    def _register_version(self, name: str, manifest: Manifest) -> int:
        with self.lock(f"name:{name}"):
            records, damaged = self._version_records(name)
            highest = max([r.version for r in records] + [n for n, _ in damaged], default=0)
            if records and records[-1].digest == manifest.digest and records[-1].version == highest:
                return records[-1].version  # re-publishing the latest content makes no new version
            number = highest + 1
            while True:
                path = self._p("names", name, "versions", f"{number:06d}.json")
                record = VersionRecord(
                    name=name, version=number, digest=manifest.digest, kind=manifest.kind, created=_now()
                )
                if self._create_json(path, record.model_dump(mode="json")):
                    return number
                number += 1  # another writer (another host) took it

    def set_alias(self, name: str, alias: str, version: int) -> None:
        """Point `alias` of logical name `name` at `version`: one whole record; where several hosts move
        one alias at once, the last writer wins (a version is never lost, see `_register_version`)."""
        check_name(name)
        if not ALIAS_RE.match(alias) or alias == "latest" or alias.isdigit():
            raise StoreError(
                f"invalid alias {alias!r}",
                "use up to 100 letters, digits, '.', '_' and '-' (not 'latest' or a number)",
            )
        if version not in {v.version for v in self.versions(name)}:
            raise ArtifactNotFoundError(
                f"{name} has no version {version}", f"`zooflow artifacts list {name}` shows its versions"
            )
        self._write_json(self._p("names", name, "aliases", f"{alias}.json"), {"version": version})

    def _version_records(self, name: str) -> tuple[list[VersionRecord], list[tuple[int, str]]]:
        """(readable version records, oldest first; damaged ones as (number, path))."""
        base = self._p("names", check_name(name), "versions")
        self.fs.invalidate_cache(base)  # another host's versions: an object store's listing is cached
        try:
            paths = sorted(str(p) for p in self.fs.ls(base, detail=False))
        except FileNotFoundError:
            return [], []
        records, damaged = [], []
        for path in paths:
            match = VERSION_FILE_RE.match(path.rsplit("/", 1)[-1])
            if match is None:
                continue  # a temp file of an interrupted write, or a stranger: see storecheck
            number = int(match.group(1))
            try:
                record = VersionRecord.model_validate(self._read_json(path))
                check_digest(record.digest)
                if record.version != number or record.name != name:
                    raise ValueError(f"it says {record.name}@{record.version}")
            except (ValueError, OSError, StoreError):
                damaged.append((number, path))
                continue
            records.append(record)
        return records, damaged

    def versions(self, name: str) -> list[VersionRecord]:
        """All versions of a logical name, oldest first, with their aliases; damaged records are an error."""
        records, damaged = self._version_records(name)
        if damaged:
            raise DamagedRecordError(
                f"{len(damaged)} version record(s) of {name} are damaged: {', '.join(p for _, p in damaged)}",
                REPAIR_HINT,
            )
        aliases = self.aliases(name)
        for record in records:
            record.aliases = sorted(a for a, v in aliases.items() if v == record.version)
        if records:
            records[-1].aliases = ["latest", *records[-1].aliases]
        return records

    def aliases(self, name: str) -> dict[str, int]:
        """User aliases of a logical name -> version; a damaged alias record is an error naming it."""
        base = self._p("names", check_name(name), "aliases")
        self.fs.invalidate_cache(base)
        try:
            paths = self.fs.ls(base, detail=False)
        except FileNotFoundError:
            return {}
        found = {}
        for path in map(str, paths):
            alias = path.rsplit("/", 1)[-1]
            if not alias.endswith(".json") or durable.is_temp_name(alias):
                continue
            try:
                found[alias.removesuffix(".json")] = int(self._read_json(path)["version"])
            except (ValueError, OSError, KeyError, TypeError) as exc:
                raise DamagedRecordError(f"alias record {path} is damaged ({_reason(exc)})", REPAIR_HINT) from None
        return found

    def names(self) -> list[str]:
        """Every logical name with at least one version record."""
        base = self._p("names")
        self.fs.invalidate_cache()  # other hosts' names: an object store's listings are cached
        found = self.fs.glob(base + "/**/versions/*.json")
        names = {str(p)[len(base) + 1 :].rsplit("/versions/", 1)[0] for p in found}
        return sorted(n for n in names if NAME_RE.match(n))

    def digests(self) -> list[str]:
        """Every complete object in the store."""
        self.fs.invalidate_cache()
        found = (str(p).rsplit("/", 2)[-2] for p in self.fs.glob(self._p("objects", "*", "*", "manifest.json")))
        return sorted(d for d in found if DIGEST_RE.match(d))

    def resolve(self, spec: str) -> ArtifactRef:
        """Turn ``name``, ``name@3``, ``name@alias``, a digest or a unique digest prefix into a ref."""
        spec = spec.strip()
        if HEX_RE.match(spec):
            prefix = spec.removeprefix("sha256:")
            matches = [d for d in self.digests() if d.startswith(prefix)]
            if len(matches) == 1:
                return self.ref(matches[0])
            if len(matches) > 1:
                raise StoreError(
                    f"digest prefix {prefix!r} is ambiguous ({len(matches)} artifacts)", "give more digits"
                )
        name, _, tag = spec.partition("@")
        check_name(name)
        if tag and not (tag.isdigit() or ALIAS_RE.match(tag)):
            raise StoreError(f"invalid version or alias {tag!r} in {spec!r}", "use NAME, NAME@VERSION or NAME@ALIAS")
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
            matching = [v for v in versions if v.version == aliases[tag]]
            if not matching:
                raise DamagedRecordError(
                    f"alias {name}@{tag} points at version {aliases[tag]}, which is gone", REPAIR_HINT
                )
            record = matching[0]
        if not self.exists(record.digest):
            raise ArtifactNotFoundError(
                f"{name}@{record.version} names artifact {record.digest[:12]}, which is not in the store "
                "(its manifest is gone)",
                "run the stage that made it again; `zooflow artifacts verify` lists every such record",
            )
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
            except StoreError as exc:
                node["damaged"] = exc.problem
                return node
            node.update(kind=manifest.kind, stage=manifest.producer.stage, created=manifest.created)
            node["inputs"] = [walk(i.digest, i.role) for i in manifest.inputs]
            return node

        return walk(digest, "artifact")

    # ------------------------------------------------------------ cache records
    def _cache_path(self, key: str) -> str:
        if not KEY_RE.match(key):
            raise StoreError(f"invalid cache key {key!r}", "this is a bug; please report it")
        return self._p("cache", f"{key}.json")

    def cache_record(self, key: str) -> CacheRecord | None:
        """The record for a stage cache key, if any (a damaged record counts as none: the stage recomputes)."""
        try:
            return CacheRecord.model_validate(self._read_json(self._cache_path(key)))
        except FileNotFoundError:
            return None
        except (ValueError, OSError):
            return None

    def write_cache_record(self, record: CacheRecord, *, exclusive: bool = False) -> bool:
        """Store a cache record whole; with `exclusive`, only if none exists yet (False if one did)."""
        path = self._cache_path(record.key)
        if exclusive:
            return self._create_json(path, record.model_dump(mode="json"))
        self._write_json(path, record.model_dump(mode="json"))
        return True

    def cached(self, key: str, *, full: bool = False) -> ArtifactRef | None:
        """The artifact a cache record names (as name@version), if the record has one and it is intact."""
        record = self.cache_record(key)
        if record is None or record.digest is None or not DIGEST_RE.match(record.digest):
            return None
        if self.verify(record.digest, full=full):
            return None
        return self.ref(record.digest, name=record.name, version=record.version)

    def recall(self, key: str) -> ArtifactRef | None:
        """The artifact memoised under `key` by `memoize`, if it is still intact (core-level resume)."""
        return self.cached(f"memo-{key}")

    def memoize(self, key: str, ref: ArtifactRef) -> ArtifactRef:
        """Remember that the work identified by `key` produced `ref`; returns `ref`."""
        self.write_cache_record(CacheRecord(key=f"memo-{key}", epoch="memo", digest=ref.digest))
        return ref
