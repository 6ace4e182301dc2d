"""Whole-store audit (`zooflow artifacts verify`) and clean-up (`zooflow artifacts gc`).

The audit lists everything that is not as it should be: damaged objects (unreadable manifest;
missing, changed or extra files), object folders without a manifest, version / alias / cache
records that cannot be read, version or cache records whose object is gone, two records that
claim one version (a publish lost where hosts shared a store without a conditional create), and
leftovers of interrupted writes. On an object store, an object folder without a manifest younger
than `GRACE_SECONDS` is not a problem: it may be another host's upload in progress.

`plan_gc` turns that (plus staging of dead processes and unreferenced objects) into
actions; `apply_gc` carries them out. Nothing is ever deleted from a path the user gave: gc only
touches the store's own folders, and damaged records are moved to ``<store>/quarantine/`` rather
than deleted.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from zooflow import durable
from zooflow.errors import StoreError
from zooflow.filehash import sha256_file
from zooflow.records import CacheRecord, Manifest, VersionRecord, check_digest
from zooflow.store import Store

GRACE_SECONDS = 3600.0  # objects and temp files younger than this may belong to a run in progress
_SUBDIRS_NOT_RECORDS = ("verified", "file-hashes")


@dataclass
class Audit:
    """What `audit` found; empty lists mean a healthy store."""

    checked: int = 0
    damaged: dict[str, list[str]] = field(default_factory=dict)  # digest -> problems
    incomplete: list[str] = field(default_factory=list)  # object folders without a manifest
    damaged_records: list[str] = field(default_factory=list)  # paths of unreadable records
    dangling: list[str] = field(default_factory=list)  # "name@version -> digest" whose object is gone
    leftovers: list[str] = field(default_factory=list)  # temp files of interrupted record writes
    missing_cached: list[str] = field(default_factory=list)  # cache record paths whose object is gone
    conflicts: list[Conflict] = field(default_factory=list)  # two records claiming one name@version
    in_flight: list[str] = field(default_factory=list)  # young object folders without a manifest yet

    @property
    def ok(self) -> bool:
        """Whether nothing is wrong."""
        return not (
            self.damaged
            or self.incomplete
            or self.damaged_records
            or self.dangling
            or self.missing_cached
            or self.conflicts
        )

    def lines(self) -> list[str]:
        """One readable line per problem."""
        out = [f"damaged artifact {d[:16]}: " + "; ".join(p) for d, p in sorted(self.damaged.items())]
        out += [f"incomplete object (files but no manifest): {p}" for p in self.incomplete]
        out += [f"damaged record: {p}" for p in self.damaged_records]
        out += [f"version record names a missing artifact: {p}" for p in self.dangling]
        out += [f"cache record names a missing artifact (the next run recomputes it): {p}" for p in self.missing_cached]
        out += [c.line() for c in self.conflicts]
        return out

    def as_dict(self) -> dict[str, object]:
        """JSON-able form (``--json``)."""
        return {
            "checked": self.checked,
            "damaged": self.damaged,
            "incomplete": self.incomplete,
            "damaged_records": self.damaged_records,
            "dangling_versions": self.dangling,
            "leftovers": self.leftovers,
            "missing_cached": self.missing_cached,
            "conflicts": [dataclasses.asdict(c) for c in self.conflicts],
            "in_flight": self.in_flight,
        }


@dataclass
class Conflict:
    """A cache record says its stage published `digest` as name@version, and the version record of
    name@version names another artifact: two writers took one version number, one publish was lost."""

    name: str
    version: int
    recorded: str  # the digest the version record names
    lost: str  # the digest the cache record names
    cache_record: str

    def line(self) -> str:
        """A readable line."""
        return (
            f"two records claim {self.name}@{self.version}: its version record names {self.recorded[:16]}, "
            f"cache record {self.cache_record} names {self.lost[:16]} (a publish lost its version)"
        )


def _object_folders(store: Store) -> list[str]:
    """Digests of every folder under objects/ (complete or not)."""
    found = []
    for path in store.fs.glob(store._p("objects", "*", "*")):
        name = str(path).rstrip("/").rsplit("/", 1)[-1]
        try:
            check_digest(name)
        except StoreError:
            continue
        found.append(name)
    return sorted(found)


def _cache_record_paths(store: Store) -> list[str]:
    base = store._p("cache")
    try:
        paths = store.fs.ls(base, detail=False)
    except FileNotFoundError:
        return []
    return sorted(str(p) for p in paths if str(p).endswith(".json") and not durable.is_temp_name(str(p)))


def _record_files(store: Store) -> list[str]:
    """Every file under names/ (version and alias records, and any stranger there)."""
    try:
        return sorted(str(p) for p in store.fs.find(store._p("names")))
    except FileNotFoundError:
        return []


def _modified(store: Store, path: str) -> float | None:
    """When the newest file under a folder of an object store changed; None if unknown."""
    try:
        stamps = []
        for info in store.fs.find(path, detail=True).values():
            stamp = info.get("LastModified", info.get("mtime", info.get("created")))
            if isinstance(stamp, dt.datetime):
                stamps.append(stamp.timestamp())
            elif isinstance(stamp, (int, float)):
                stamps.append(float(stamp))
        return max(stamps) if stamps else None
    except (OSError, ValueError):
        return None


def audit(store: Store, *, full: bool = False) -> Audit:
    """Check every object and record of the store (``full``: re-hash every byte, ignoring stat stamps)."""
    result = Audit()
    digests = set(store.digests())
    for digest in _object_folders(store):
        if digest not in digests:
            # a local store publishes an object whole (one rename); an object store, file by file with
            # the manifest last: a young folder there may be another host's upload in progress
            changed = None if store.is_local else _modified(store, store.object_dir(digest))
            if not store.is_local and (changed is None or time.time() - changed < GRACE_SECONDS):
                result.in_flight.append(store.object_dir(digest))
            else:
                result.incomplete.append(store.object_dir(digest))
            continue
        result.checked += 1
        problems = store.verify(digest, full=full)
        if problems:
            result.damaged[digest] = problems
    named: dict[tuple[str, int], str] = {}
    for path in _record_files(store):
        leaf = path.rsplit("/", 1)[-1]
        if durable.is_temp_name(leaf):
            result.leftovers.append(path)
            continue
        kind = path.rsplit("/", 2)[-2]
        try:
            doc = store._read_json(path)
            if kind == "versions":
                record = VersionRecord.model_validate(doc)
                check_digest(record.digest)
                if f"{record.version:06d}.json" != leaf:
                    raise ValueError(f"it says version {record.version}")
                if record.digest not in digests:
                    result.dangling.append(f"{record.name}@{record.version} -> {record.digest[:16]} ({path})")
                named[(record.name, record.version)] = record.digest
            elif kind == "aliases":
                int(doc["version"])
        except (ValueError, OSError, KeyError, TypeError, StoreError):
            result.damaged_records.append(path)
    for path in _cache_record_paths(store):
        try:
            cached = CacheRecord.model_validate(store._read_json(path))
        except (ValueError, OSError):
            result.damaged_records.append(path)
            continue
        if cached.digest is None:
            continue  # a stage in progress (or interrupted): nothing produced yet
        if cached.digest not in digests:
            result.missing_cached.append(path)
        recorded = named.get((cached.name, cached.version)) if cached.name and cached.version else None
        if recorded is not None and recorded != cached.digest and cached.name and cached.version:
            result.conflicts.append(Conflict(cached.name, cached.version, recorded, cached.digest, path))
    return result


# ---------------------------------------------------------------------------------------- gc
@dataclass
class Action:
    """One thing gc would do (or did)."""

    kind: str  # staging | owner | leftover | download | unreferenced | repair | quarantine | rebuild | reregister
    target: str
    detail: str = ""
    size: int = 0
    done: bool = False
    error: str | None = None

    def line(self) -> str:
        """A readable line."""
        size = f" ({self.size / 2**20:.1f} MiB)" if self.size else ""
        state = " [done]" if self.done else (f" [failed: {self.error}]" if self.error else "")
        return f"{self.kind}: {self.target}{size}{' - ' + self.detail if self.detail else ''}{state}"


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def stale_staging(store: Store) -> list[Action]:
    """Staging folders of processes on this host that are gone (and their owner lock files)."""
    base = store.staging_dir
    if not base.is_dir():
        return []
    actions = []
    dead: set[str] = set()
    for entry in sorted(base.iterdir()):
        if not entry.name.startswith("stage-") or entry.is_symlink() or not entry.is_dir():
            continue  # zooflow stages in real folders: a link here is not ours to follow
        parts = entry.name.split("-")
        owner = "-".join(parts[1:4]) if len(parts) >= 5 else ""
        alive = durable.owner_alive(store.owners_dir, owner) if owner else None
        if alive is None and owner:
            continue  # another host's staging: only that host knows whether it still runs
        if alive is None and time.time() - entry.stat().st_mtime < GRACE_SECONDS:
            continue  # an older zooflow's staging (no owner in the name): only when old
        if alive is False or alive is None:
            if owner:
                dead.add(owner)
            actions.append(Action("staging", str(entry), "left by a process that is gone", _size(entry)))
    owners = store.owners_dir
    if owners.is_dir():
        for lock in sorted(owners.glob("*.lock")):
            ident = lock.name.removesuffix(".lock")
            if ident in dead or durable.owner_alive(owners, ident) is False:
                actions.append(Action("owner", str(lock), "lock file of a process that is gone"))
    return actions


def clean_staging(store: Store) -> list[Action]:
    """Remove staging left by dead processes of this host (done at the start of every run)."""
    actions = stale_staging(store)
    for action in actions:
        _apply(store, action, None, {})
    return actions


def _reachable(store: Store) -> set[str]:
    """Digests reachable from version records and cache records, through the manifests' inputs."""
    roots: set[str] = set()
    for path in _record_files(store):
        if "/versions/" in path and path.endswith(".json") and not durable.is_temp_name(path):
            try:
                roots.add(str(store._read_json(path)["digest"]))
            except (ValueError, OSError, KeyError, TypeError):
                continue
    for path in _cache_record_paths(store):
        try:
            digest = store._read_json(path).get("digest")
        except (ValueError, OSError, AttributeError):
            continue
        if digest:
            roots.add(str(digest))
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        digest = todo.pop()
        if digest in seen:
            continue
        seen.add(digest)
        try:
            todo += [i.digest for i in store.manifest(digest).inputs]
        except StoreError:
            continue
    return seen


def _age(store: Store, digest: str) -> float:
    """Seconds since the object was published (its folder's mtime; a remote store: its manifest's time)."""
    try:
        if store.is_local:
            return time.time() - os.stat(store.object_dir(digest)).st_mtime
        return (dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(store.manifest(digest).created)).total_seconds()
    except (OSError, ValueError, StoreError):
        return 0.0  # unknown: treated as young, so never collected


def partial_downloads(store: Store) -> list[Action]:
    """Partial downloads (``.part``, with their ``.part.json``) untouched for `GRACE_SECONDS`: a fetch that
    is still running writes to its file every few seconds; an old one is left by a download given up."""
    base = store.downloads_dir
    if not base.is_dir():
        return []
    actions = []
    for part in sorted(base.glob("*.part")):
        if part.is_symlink() or not part.is_file() or time.time() - part.stat().st_mtime < GRACE_SECONDS:
            continue
        actions.append(
            Action("download", str(part), "partial download given up (a new fetch starts over)", _size(part))
        )
    return actions


def plan_gc(store: Store, *, full: bool = False, sources: list[Store] | None = None) -> list[Action]:
    """Everything gc would do, without doing it."""
    actions = stale_staging(store) + partial_downloads(store)
    found = audit(store, full=full)
    for path in found.leftovers:
        if not store.is_local or time.time() - os.stat(path).st_mtime > 60:
            actions.append(Action("leftover", path, "temp file of an interrupted record write"))
    for digest, problems in sorted(found.damaged.items()):
        source = _good_source(store, digest, sources or [])
        if source is not None:
            actions.append(Action("repair", digest, f"from {source}; was: {'; '.join(problems)[:200]}"))
        else:
            actions.append(
                Action("quarantine", store.object_dir(digest), f"no good copy found; {'; '.join(problems)[:200]}")
            )
    for path in found.incomplete:
        actions.append(Action("quarantine", path, "object folder without a manifest"))
    for path in found.damaged_records:
        rebuilt = _rebuild_version(store, path) if "/versions/" in path else None
        if rebuilt is not None:
            actions.append(Action("rebuild", path, f"from the cache record naming {rebuilt.name}@{rebuilt.version}"))
        else:
            actions.append(Action("quarantine", path, "unreadable record"))
    for path in found.missing_cached:
        actions.append(Action("quarantine", path, "cache record naming a missing artifact (the next run recomputes)"))
    stored = set(store.digests()) if found.conflicts else set()
    for conflict in found.conflicts:
        if conflict.lost in stored:
            actions.append(
                Action(
                    "reregister", conflict.cache_record, f"{conflict.lost[:16]} lost {conflict.name}@{conflict.version}"
                )
            )
    reachable = _reachable(store)
    for digest in store.digests():
        if digest not in reachable and digest not in found.damaged and _age(store, digest) > GRACE_SECONDS:
            try:
                size = store.manifest(digest).size
            except StoreError:
                size = 0
            actions.append(Action("unreferenced", digest, "no version, alias or cache record leads to it", size))
    return actions


def apply_gc(store: Store, actions: list[Action], *, sources: list[Store] | None = None) -> list[Action]:
    """Carry out planned actions (each one independently; a failure is recorded on the action)."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    context: dict[str, str] = {"stamp": stamp}
    for action in actions:
        _apply(store, action, sources, context)
    return actions


def _quarantine(store: Store, path: str, stamp: str) -> None:
    rel = os.path.relpath(path, store.root) if store.is_local else path[len(store.root) + 1 :]
    dest = store._p("quarantine", stamp, rel)
    if store.is_local:
        Path(dest).parent.mkdir(parents=True, exist_ok=True)
        os.rename(path, dest)
    else:
        store.fs.mv(path, dest, recursive=True)


def _apply(store: Store, action: Action, sources: list[Store] | None, context: dict[str, str]) -> None:
    try:
        if action.kind in ("staging", "owner", "leftover", "download"):
            target = Path(action.target)
            if action.kind == "staging":
                shutil.rmtree(target)  # the store's own staging folder of a dead process
            else:
                target.unlink(missing_ok=True)
            if action.kind == "download":
                target.with_name(target.name + ".json").unlink(missing_ok=True)
        elif action.kind == "unreferenced":
            if store.is_local:
                target = Path(store.object_dir(action.target))
                for path in target.rglob("*"):
                    if path.is_file() and not path.is_symlink():  # a planted link: never chmod its target
                        path.chmod(0o644)
                shutil.rmtree(target)  # an object of the store's own, unreachable
            else:
                store.fs.rm(store.object_dir(action.target), recursive=True)
        elif action.kind == "quarantine":
            _quarantine(store, action.target, context.get("stamp", "gc"))
        elif action.kind == "rebuild":
            record = _rebuild_version(store, action.target)
            if record is None:
                raise StoreError("no cache record to rebuild it from any more")
            _quarantine(store, action.target, context.get("stamp", "gc"))
            store._write_json(action.target, record.model_dump(mode="json"))
        elif action.kind == "reregister":
            _reregister(store, action)
        elif action.kind == "repair" and not repair(store, action.target, sources or []):
            raise StoreError("the good copy could not be used")
        action.done = True
    except (OSError, StoreError) as exc:
        action.error = str(getattr(exc, "problem", exc))[:200]


def _reregister(store: Store, action: Action) -> None:
    """Give a publish that lost its version number (see `Conflict`) a new version, and point its cache
    record there, so that the artifact is listed again and a resumed stage returns it."""
    record = CacheRecord.model_validate(store._read_json(action.target))
    if not record.name or not record.digest:
        raise StoreError("the cache record names no artifact any more")
    version = store._register_version(record.name, store.manifest(record.digest))
    store._write_json(action.target, record.model_copy(update={"version": version}).model_dump(mode="json"))
    action.detail += f"; now {record.name}@{version}"


def _rebuild_version(store: Store, path: str) -> VersionRecord | None:
    """A damaged version record, rebuilt from a cache record that names the same name@version."""
    rel = path[len(store._p("names")) + 1 :]
    name, _, leaf = rel.rpartition("/versions/")
    try:
        number = int(leaf.removesuffix(".json"))
    except ValueError:
        return None
    for record_path in _cache_record_paths(store):
        try:
            record = CacheRecord.model_validate(store._read_json(record_path))
        except (ValueError, OSError):
            continue
        if record.name == name and record.version == number and record.digest and store.exists(record.digest):
            manifest = store.manifest(record.digest)
            return VersionRecord(
                name=name,
                version=number,
                digest=record.digest,
                kind=manifest.kind,
                created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            )
    return None


def _file_index(store: Store, skip: str) -> dict[str, list[tuple[str, str]]]:
    """sha256 -> [(digest, file path)] over every other object's manifest."""
    index: dict[str, list[tuple[str, str]]] = {}
    for digest in store.digests():
        if digest == skip:
            continue
        try:
            manifest = store.manifest(digest)
        except StoreError:
            continue
        for entry in manifest.files:
            index.setdefault(entry.sha256, []).append((digest, entry.path))
    return index


def _good_copy_of(store: Store, manifest: Manifest, sources: list[Store]) -> dict[str, Path] | None:
    """For every file of `manifest`, a local path holding exactly its bytes (or None if one is missing)."""
    digest = manifest.digest
    found: dict[str, Path] = {}
    index: dict[str, list[tuple[str, str]]] | None = None
    base = Path(store.object_dir(digest)) / "files" if store.is_local else None
    for entry in manifest.files:
        candidates: list[Path] = []
        if base is not None:
            candidates.append(base / entry.path)
        else:
            candidates.append(store.remote_copy_dir(digest) / entry.path)
        for other in sources:
            try:
                if other.exists(digest) and not other.verify(digest, full=True):
                    candidates.append(other.path(digest, entry.path))
            except StoreError:
                continue
        if store.is_local:
            if index is None:
                index = _file_index(store, digest)
            candidates += [Path(store.object_dir(d)) / "files" / p for d, p in index.get(entry.sha256, [])]
        good = next(
            (
                c
                for c in candidates
                if c.is_file() and c.stat().st_size == entry.size and sha256_file(c) == entry.sha256
            ),
            None,
        )
        if good is None:
            return None
        found[entry.path] = good
    return found


def _good_source(store: Store, digest: str, sources: list[Store]) -> str | None:
    try:
        manifest = store.manifest(digest)
    except StoreError:
        for other in sources:
            if other.exists(digest) and not other.verify(digest, full=True):
                return other.url
        return None
    copies = _good_copy_of(store, manifest, sources)
    if copies is None:
        return None
    where = {str(p.parent) for p in copies.values()}
    return "the object's intact files" if len(where) <= 1 and store.is_local else "intact copies of its files"


def repair(store: Store, digest: str, sources: list[Store]) -> bool:
    """Republish a damaged object from good copies of its files (same SHA-256); True on success."""
    try:
        manifest = store.manifest(digest)
    except StoreError:
        manifest = next((o.manifest(digest) for o in sources if o.exists(digest)), None)  # type: ignore[assignment]
        if manifest is None:
            return False
    copies = _good_copy_of(store, manifest, sources)
    if copies is None:
        return False
    staged = Path(tempfile.mkdtemp(prefix=f"stage-{durable.owner_id(store.owners_dir)}-repair-", dir=_tmp(store)))
    try:
        for rel, source in copies.items():
            dest = staged / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, dest)
        store.republish(staged, manifest)
    finally:
        shutil.rmtree(staged, ignore_errors=True)  # our own staging folder
    return not store.verify(digest, full=True)


def _tmp(store: Store) -> Path:
    base = store.staging_dir
    base.mkdir(parents=True, exist_ok=True)
    return base


def describe(actions: list[Action]) -> str:
    """A JSON summary of actions (``--json``)."""
    return json.dumps(
        [
            {
                "kind": a.kind,
                "target": a.target,
                "detail": a.detail,
                "size": a.size,
                "done": a.done,
                "error": a.error,
            }
            for a in actions
        ]
    )
