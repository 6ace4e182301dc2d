"""Fetch stage: a checkpoint from an http(s) URL, a file:// URL, a local path, or a local init.

Downloads stream into a partial file that survives interruptions: the next attempt (or the
next run) resumes it with an HTTP Range request. The result is SHA-256 verified against an
explicit digest and against OpenMMLab's file-name convention (``...-5d6cec73.pth``: the first 8
hex digits of the file's SHA-256); on a mismatch nothing is kept.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import tenacity
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from zooflow import durable, models, provenance, registry
from zooflow.config import DEMO_CHECKPOINT
from zooflow.errors import CheckpointError, ChecksumError, FetchError
from zooflow.store import ArtifactRef, Store, sha256_file

STAGE = "fetch"
STAGE_VERSION = "1"
_SUFFIX_RE = re.compile(r"-([0-9a-f]{8})\.[A-Za-z0-9]+$")


@dataclass(frozen=True)
class FetchPolicy:
    """Retry and timeout settings for downloads (tests shorten the waits)."""

    attempts: int = 5
    backoff_initial: float = 1.0
    backoff_max: float = 16.0
    timeout: float = 30.0  # per read: a server that sends nothing for this long
    chunk_size: int = 1 << 16
    attempt_deadline: float = 3600.0  # per attempt, whatever the server sends (a trickle never ends otherwise)
    low_speed_bytes: int = 1024  # an attempt that receives fewer bytes than this ...
    low_speed_seconds: float = 60.0  # ... within this many seconds is given up (curl's --speed-limit/--speed-time)
    max_bytes: int = 8 << 30  # the largest checkpoint accepted (decoded); mmcls's largest are about 1.3 GB
    max_ratio: float = 50.0  # a compressed body may decode to at most this many times its size (a gzip bomb)


class _TransientError(Exception):
    """A failure worth retrying (5xx, 429, a dropped connection, a short body)."""


def digest_from_filename(name: str) -> str | None:
    """The 8-hex-digit SHA-256 prefix of an OpenMMLab file name, e.g. ``...-5d6cec73.pth``."""
    match = _SUFFIX_RE.search(name)
    return match.group(1) if match else None


def source_kind(source: str) -> str:
    """``init``, ``http`` or ``file`` (file:// URLs and local paths)."""
    if source == DEMO_CHECKPOINT:
        return "init"
    scheme = urllib.parse.urlsplit(source).scheme.lower()
    if scheme in ("http", "https"):
        return "http"
    if scheme in ("", "file") or len(scheme) == 1:  # len 1: a Windows drive letter
        return "file"
    raise FetchError(
        f"unsupported checkpoint source {source!r}", "use an http(s):// URL, a file:// URL or a local path"
    )


def local_path(source: str) -> Path:
    """The file a file:// URL or a plain path points at."""
    if source.lower().startswith("file://"):
        return Path(urllib.parse.unquote(urllib.parse.urlsplit(source).path))
    return Path(source).expanduser()


def file_name(source: str) -> str:
    """The last path component of a URL or path ('' for the demo's local init)."""
    if source == DEMO_CHECKPOINT:
        return ""
    return urllib.parse.unquote(urllib.parse.urlsplit(source).path).rsplit("/", 1)[-1]


MAX_NAME = 120  # characters of a file name kept in the store (file systems allow 255 bytes per name)


def stored_name(source: str, default: str = "checkpoint.pth") -> str:
    """A file name for the checkpoint in the store: the source's own, unless it is no usable name
    (``..`` from ``%2e%2e``, empty, a control character) or too long (then shortened, its suffix kept)."""
    name = file_name(source)
    if name in ("", ".", "..") or any(ord(c) < 32 or c in "/\\" for c in name):
        return default
    if len(name.encode("utf-8", "surrogateescape")) > MAX_NAME:
        stem, dot, suffix = name.rpartition(".")
        suffix = suffix[:16] if dot else ""
        keep = MAX_NAME - len(suffix) - 1 - 17
        short = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:16]
        name = f"{(stem or name).encode()[:keep].decode('utf-8', 'ignore')}-{short}" + (f".{suffix}" if suffix else "")
    return name


def expectations(source: str, sha256: str | None) -> list[tuple[str, str]]:
    """(where the claim comes from, expected hex digest or prefix) pairs the file must satisfy."""
    claims = []
    if sha256:
        claims.append(("the given --sha256", sha256.lower()))
    suffix = digest_from_filename(file_name(source))
    if suffix:
        claims.append((f"the file name's OpenMMLab suffix -{suffix}", suffix))
    return claims


def _check_digest(actual: str, claims: list[tuple[str, str]], source: str) -> None:
    for origin, expected in claims:
        if not actual.startswith(expected):
            raise ChecksumError(
                f"checksum mismatch for {source}: expected SHA-256 {expected}... ({origin}), got {actual}; "
                "the file was not kept",
                "the download is corrupt or the file changed upstream: fetch again, or check the URL and the digest",
                expected=expected,
                actual=actual,
            )


def _partial_path(store: Store, url: str) -> Path:
    """Where a download in progress lives; kept across runs so an interruption resumes."""
    base = store.downloads_dir
    base.mkdir(parents=True, exist_ok=True)
    name = stored_name(url, "download")
    return base / f"{hashlib.sha256(url.encode()).hexdigest()[:16]}-{name}.part"


def _content_range_total(value: str | None) -> int | None:
    if not value or "/" not in value:
        return None
    total = value.rsplit("/", 1)[1].strip()
    return int(total) if total.isdigit() else None


def _validators(part: Path) -> dict[str, Any]:
    """What the server said about the file a partial download belongs to (ETag, Last-Modified, length)."""
    try:
        doc = json.loads(_sidecar(part).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _sidecar(part: Path) -> Path:
    return part.with_name(part.name + ".json")


def _if_range(info: dict[str, Any]) -> str | None:
    """The validator for If-Range: a strong ETag, else Last-Modified (RFC 9110 forbids weak ETags there)."""
    etag = info.get("etag")
    if isinstance(etag, str) and etag and not etag.startswith("W/"):
        return etag
    modified = info.get("last_modified")
    return modified if isinstance(modified, str) and modified else None


def _restart(part: Path) -> None:
    part.unlink(missing_ok=True)
    _sidecar(part).unlink(missing_ok=True)


def _encoding(response: httpx.Response) -> str | None:
    """The body's content coding if the server applied one (we ask for identity), else None."""
    coding = response.headers.get("Content-Encoding", "").strip().lower()
    return coding if coding not in ("", "identity") else None


class _Limits:
    """What one attempt may take: a deadline, a floor on speed, and a cap on the (decoded) size."""

    def __init__(self, policy: FetchPolicy, url: str) -> None:
        self.policy, self.url = policy, url
        self.start = time.monotonic()
        self.window_start, self.window_bytes = self.start, 0

    def check(self, got: int, decoded: int, cap: int, coding: str | None, part: Path) -> None:
        now = time.monotonic()
        if decoded > cap:
            _restart(part)  # garbage, never resumed
            how = f"{coding}-compressed body decodes" if coding else "body is"
            raise FetchError(
                f"download of {self.url} stopped: its {how} larger than {cap / 2**20:.0f} MiB "
                f"(a checkpoint is at most {self.policy.max_bytes / 2**30:.0f} GiB, and a compressed one may "
                f"grow at most {self.policy.max_ratio:g}x); nothing was kept",
                "check the URL: the server sends something that is not a checkpoint (or a decompression bomb)",
            )
        self.window_bytes += got
        if now - self.start > self.policy.attempt_deadline:
            raise _TransientError(
                f"the attempt took longer than its deadline of {self.policy.attempt_deadline:g} s (a trickling server)"
            )
        if now - self.window_start >= self.policy.low_speed_seconds:
            if self.window_bytes < self.policy.low_speed_bytes:
                raise _TransientError(
                    f"only {self.window_bytes} bytes arrived in {now - self.window_start:.0f} s "
                    f"(below {self.policy.low_speed_bytes} bytes per {self.policy.low_speed_seconds:g} s)"
                )
            self.window_start, self.window_bytes = now, 0


def _download_once(
    client: httpx.Client, url: str, part: Path, progress: Progress | None, task: Any, policy: FetchPolicy
) -> None:
    have = part.stat().st_size if part.exists() else 0
    info = _validators(part) if have else {}
    validator = _if_range(info)
    if have and (validator is None or info.get("url") != url or info.get("encoding")):
        _restart(part)  # without a validator a resumed body could belong to another version of the file
        have = 0  # (and a decoded body cannot be resumed: Range counts the server's compressed bytes)
    headers = {"Accept-Encoding": "identity"}  # the checkpoint's own bytes: its digest is over them
    if have and validator:
        headers |= {"Range": f"bytes={have}-", "If-Range": validator}
    limits = _Limits(policy, url)
    with client.stream("GET", url, headers=headers) as response:
        status = response.status_code
        if status == 416:  # nothing left to send: complete if we hold the whole file
            total = _content_range_total(response.headers.get("Content-Range"))
            if total is not None and have == total:
                return
            _restart(part)
            raise _TransientError(f"server refused to resume at byte {have}; restarting the download")
        if status == 429 or status >= 500:
            raise _TransientError(f"HTTP {status} from {url}")
        if status >= 400:
            hint = (
                "check the URL (or the model name it came from)"
                if status == 404
                else "check the URL and your access to it"
            )
            raise FetchError(f"cannot download {url}: HTTP {status} {response.reason_phrase}", hint)
        etag, modified = response.headers.get("ETag"), response.headers.get("Last-Modified")
        coding = _encoding(response)
        if status == 206 and not coding:
            start = response.headers.get("Content-Range", "").removeprefix("bytes ").split("-", 1)[0]
            if start.strip() != str(have):
                _restart(part)
                raise _TransientError(f"server resumed at byte {start}, not {have}; restarting the download")
            if (etag and info.get("etag") and etag != info["etag"]) or (
                modified and info.get("last_modified") and modified != info["last_modified"]
            ):
                _restart(part)  # If-Range was ignored: the rest belongs to another version of the file
                raise _TransientError("the file changed on the server since the download began; restarting it")
            mode = "ab"
            total = _content_range_total(response.headers.get("Content-Range"))
        else:
            if status == 206:
                _restart(part)
                raise _TransientError("the server compressed a resumed part; restarting the download")
            if have:
                _restart(part)  # the file changed (If-Range did not match) or Range was ignored: start over
            have, mode = 0, "wb"
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            record = {"url": url, "etag": etag, "last_modified": modified, "total": total, "encoding": coding}
            with durable.disk_full_as_error(part, "the fetch stage"):
                durable.write_atomic(_sidecar(part), json.dumps(record).encode())
        # a compressed body's Content-Length counts compressed bytes: the decoded size is capped instead
        cap = policy.max_bytes if not coding or total is None else min(policy.max_bytes, int(total * policy.max_ratio))
        if progress is not None:
            progress.update(task, total=None if coding else total, completed=have)
        decoded = have
        with durable.disk_full_as_error(part, "the fetch stage"), open(part, mode) as fh:
            for chunk in response.iter_bytes():
                fh.write(chunk)
                decoded += len(chunk)
                limits.check(len(chunk), decoded, cap, coding, part)
                if progress is not None:
                    progress.update(task, advance=len(chunk))
            raw = response.num_bytes_downloaded  # the bytes on the wire (compressed, if the server compressed)
        size = raw if coding else part.stat().st_size
        if total is not None and size != total:
            raise _TransientError(f"connection closed after {size} of {total} bytes")


def download(url: str, part: Path, *, policy: FetchPolicy, show_progress: bool) -> dict[str, Any]:
    """Download `url` into `part`, resuming what is there, retrying transient failures with backoff.

    Returns what the server said about the file (ETag, Last-Modified, length; None where it said nothing).
    """
    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(policy.attempts),
        wait=tenacity.wait_exponential(multiplier=policy.backoff_initial, max=policy.backoff_max),
        retry=tenacity.retry_if_exception_type((_TransientError, httpx.TransportError)),
        reraise=True,
    )
    progress = (
        Progress(
            TextColumn("[bold]fetch[/] {task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            transient=True,
        )
        if show_progress
        else None
    )
    try:
        with httpx.Client(follow_redirects=True, timeout=policy.timeout, max_redirects=10) as client:
            if progress is not None:
                progress.start()
            task = progress.add_task(part.name.split("-", 1)[-1].removesuffix(".part")) if progress else None
            for attempt in retrying:
                with attempt:
                    _download_once(client, url, part, progress, task, policy)
    except (_TransientError, httpx.TransportError) as exc:
        host = urllib.parse.urlsplit(url).netloc
        reason = str(exc) or type(exc).__name__
        if isinstance(exc, httpx.ConnectError):
            reason = f"cannot reach {host}: {reason}"
        kept = part.stat().st_size if part.exists() else 0
        resume = f"; {kept} bytes are kept and the next run resumes from them" if kept else ""
        raise FetchError(
            f"download of {url} failed after {policy.attempts} attempts ({reason}){resume}",
            "check the URL and your network, or download the file yourself and pass its path with --checkpoint",
        ) from None
    except httpx.TooManyRedirects:
        raise FetchError(
            f"download of {url} was redirected more than 10 times (a redirect loop); nothing was kept",
            "open the URL in a browser to see where it leads, and pass the final URL (or a local path) with --checkpoint",
        ) from None
    except httpx.HTTPError as exc:  # an invalid URL, an unsupported protocol, ...
        raise FetchError(
            f"cannot download {url}: {type(exc).__name__}: {exc}",
            "check the URL, or pass a local path with --checkpoint",
        ) from None
    finally:
        if progress is not None:
            progress.stop()
    info = _validators(part)
    return {k: info.get(k) for k in ("etag", "last_modified", "total")}


UNVERIFIED = (
    "no SHA-256 was given and the file name carries no OpenMMLab digest suffix: the checkpoint's bytes are "
    "not checked against any published digest (pass --sha256 to check them)"
)


def fetch_checkpoint(
    source: str,
    store: Store,
    *,
    model: str,
    sha256: str | None = None,
    seed: int = 0,
    trust: bool = False,
    policy: FetchPolicy | None = None,
    show_progress: bool | None = None,
) -> ArtifactRef:
    """Obtain a checkpoint from `source`, verify it, check that it loads, store it as ``<model>/checkpoint``.

    Nothing is published unless the bytes match every digest claim and load as a checkpoint
    (weights only, unless `trust`): a truncated file or an HTML error page never becomes
    ``checkpoint@latest``. Without any digest claim the manifest says the file is unverified.
    """
    policy = policy or FetchPolicy()
    show_progress = sys.stderr.isatty() if show_progress is None else show_progress
    kind = source_kind(source)
    info = registry.resolve(model)
    claims = expectations(source, sha256)
    libraries = provenance.library_versions("torch", "mmcls", "mmcv") if kind == "init" else {}
    meta: dict[str, Any] = {"source": source, "locally_initialised": False}
    with store.staging(STAGE) as staged:
        part: Path | None = None
        if kind == "init":
            target = staged / f"{info.config.stem}-local-init-seed{seed}.pth"
            meta.update(models.init_checkpoint(info, target, seed=seed))
        elif kind == "file":
            path = local_path(source)
            if not path.is_file():
                raise FetchError(
                    f"checkpoint file not found: {path}", "pass an existing .pth path, a file:// URL or an http(s) URL"
                )
            target = staged / stored_name(str(path))
            with durable.disk_full_as_error(target, "the fetch stage"):
                shutil.copyfile(path, target)
        else:
            part = _partial_path(store, source)
            server = download(source, part, policy=policy, show_progress=show_progress)
            meta["server"] = server
            target = staged / stored_name(source)
            os.replace(part, target)
            _sidecar(part).unlink(missing_ok=True)
        actual = sha256_file(target)
        _check_digest(actual, claims, source)  # raises: the staged copy goes with the staging folder
        if kind != "init":
            try:
                _, load = models.read_state_dict(target, trust=trust)
            except CheckpointError as exc:
                where = "downloaded" if part is not None else "copied"
                raise type(exc)(
                    f"{exc.problem}; the {where} file was not kept and nothing was published", exc.fix
                ) from None
            meta["load"] = {k: v for k, v in load.items() if k != "checkpoint_meta"}
        meta.update(
            sha256=actual,
            size=target.stat().st_size,
            filename=target.name,
            verified_against=[c for c, _ in claims],
            verified=bool(claims) or kind == "init",
        )
        if not claims and kind != "init":
            meta["unverified"] = UNVERIFIED
        return store.commit(
            staged,
            kind="checkpoint",
            name=f"{model}/checkpoint",
            stage=STAGE,
            stage_version=STAGE_VERSION,
            params={"source": source, "sha256": sha256, "seed": seed if kind == "init" else None, "model": model},
            meta=meta,
            libraries=libraries,
        )
