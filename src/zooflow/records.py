"""The store's records: manifests, refs, version and cache records, and the rules for names and digests.

Plain pydantic models with no I/O (`zooflow.store` reads and writes them), so a module can name an
artifact, check a digest or compute a tree digest without opening a store.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from zooflow.errors import StoreError
from zooflow.filehash import sha256_file

SCHEMA_VERSION = 1
HEX_RE = re.compile(r"^(sha256:)?[0-9a-f]{6,64}$")
DIGEST_RE = re.compile(r"^[0-9a-f]{64}$")
# Each segment and alias at most 100 characters: one file or folder name each in the store, with
# room for its suffixes (.json, a temp file's .tmp-<32 hex>) under the 255 bytes file systems allow.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,99}(/[A-Za-z0-9][A-Za-z0-9._\-]{0,99})*$")
ALIAS_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,99}$")
KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,200}$")
VERSION_FILE_RE = re.compile(r"^(\d{6,})\.json$")


def check_name(name: str) -> str:
    """A logical artifact name: segments of letters, digits, '.', '_', '-' separated by '/', no '..'."""
    if not isinstance(name, str) or not NAME_RE.match(name) or len(name) > 400:
        raise StoreError(
            f"invalid artifact name {name!r}",
            "use segments of letters, digits, '.', '_' and '-' separated by '/' (each starting with a letter or "
            "digit, at most 100 characters)",
        )
    return name


def check_digest(digest: str) -> str:
    """A full SHA-256 hex digest (64 lowercase hex digits)."""
    if not isinstance(digest, str) or not DIGEST_RE.match(digest):
        raise StoreError(f"invalid artifact digest {digest!r}", "a digest is 64 lowercase hex digits")
    return digest


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
