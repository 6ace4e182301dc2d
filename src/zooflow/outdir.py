"""Folders the user names with ``--out``: written only when empty or made by zooflow; never emptied wholesale.

zooflow's own marker, ``.zooflow-out.json``, lists the command and every file zooflow wrote there.
A folder that holds anything else and no valid marker is refused (a user's own folder may well
hold an ``imagenet.txt`` or a ``calibration.json``: a file name proves nothing), and so is a folder
another command marked (``calib --out`` on a ``demo-data`` folder would replace the dataset) or one
that is, holds or lies inside one of the command's inputs. Writing into a marked folder again
removes exactly the files the marker lists (one by one, never a tree, never through a link), keeps
whatever the user added, and refuses to overwrite a file the user put there. The marker is written
before any file, so an interrupted copy still leaves every written file accounted for.

Single files (``export --out model.onnx``) are replaced only if zooflow wrote them: a record of
each such file (its path and SHA-256) is kept in the per-user cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import platformdirs

from zooflow import durable
from zooflow.errors import ConfigError

MARKER = ".zooflow-out.json"
_MAGIC = "written by zooflow; lists the files zooflow may replace here"
_SHOW = 5


# An input of a command: what the user calls it (an option's name) and its path.
Input = tuple[str, str | os.PathLike[str] | None]


def _files_below(folder: Path) -> list[str]:
    """Relative POSIX paths of every file and link (links to folders included, never followed) below
    `folder`, the marker excepted."""
    found = []
    for dirpath, dirs, files in os.walk(folder):
        linked = [d for d in dirs if (Path(dirpath) / d).is_symlink()]
        for name in [*files, *linked]:
            rel = (Path(dirpath) / name).relative_to(folder).as_posix()
            if rel != MARKER:
                found.append(rel)
    return sorted(found)


def _real(path: str | os.PathLike[str]) -> Path:
    return Path(os.path.realpath(Path(path).expanduser()))


def check_overlap(out: Path, inputs: Sequence[Input], what: str = "--out") -> None:
    """Refuse an output path that is, holds or lies inside one of the command's inputs, naming both."""
    target = _real(out)
    for label, given in inputs:
        if given is None or "://" in str(given):
            continue
        source = _real(given)
        if target == source:
            how = "is"
        elif target in source.parents:
            how = "holds"
        elif source in target.parents:
            how = "lies inside"
        else:
            continue
        raise ConfigError(
            f"{what} {out} {how} {label} {given}: writing there could replace or delete an input; nothing was changed",
            f"pass a {what} path that neither holds nor lies inside {label} or any other input of the command",
        )


def marker_path(folder: Path, beside: bool = False) -> Path:
    """Where a folder's marker lives: inside it, or (for a folder a vendor tool lists, such as vamp's
    output_%06d.npz files, which the zoo's scripts pair by sorted listing) beside it as ``<name>.zooflow-out.json``."""
    return folder.parent / f"{folder.name}{MARKER}" if beside else folder / MARKER


def read_marker(folder: Path) -> dict[str, Any] | None:
    """The marker's content (inside the folder or beside it) if it is zooflow's, else None."""
    for path in (marker_path(folder), marker_path(folder, beside=True)):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and doc.get("zooflow") == _MAGIC and isinstance(doc.get("files"), list):
            return doc
    return None


def _write_marker(
    folder: Path, command: str, files: Iterable[str], extra: dict[str, Any] | None, beside: bool = False
) -> None:
    doc = {"zooflow": _MAGIC, "command": command, "files": sorted(set(files)), **(extra or {})}
    durable.write_atomic(marker_path(folder, beside), json.dumps(doc, indent=1).encode())


def _show(items: list[str]) -> str:
    return ", ".join(items[:_SHOW]) + (f", ... ({len(items) - _SHOW} more)" if len(items) > _SHOW else "")


def _inside(folder: Path, rel: str) -> Path:
    """`folder / rel`, refused if a link on the way leads out of `folder` (zooflow writes and removes
    only inside the folder it was given)."""
    path = (folder / rel).resolve()
    if not path.is_relative_to(folder.resolve()):
        link = next(
            (p for p in [folder / rel, *(folder / rel).parents] if p != folder and p.is_symlink()), folder / rel
        )
        raise ConfigError(
            f"{link} is a link that leads out of the output folder {folder} (to {path.parent}); "
            "zooflow never writes or deletes through a link there; nothing was changed",
            f"remove the link {link} (or pass another --out folder)",
        )
    return folder / rel


class OutputFolder:
    """An --out folder: `claim()` before writing the planned files into it, `done()` after."""

    def __init__(
        self, path: Path, command: str, planned: Iterable[str], inputs: Sequence[Input] = (), *, beside: bool = False
    ) -> None:
        self.path = path.expanduser()
        self.command = command
        self.planned = sorted(set(planned))
        self.inputs = list(inputs)
        self.beside = beside  # the marker beside the folder: it holds only what the vendor tool reads

    def check(self) -> set[str]:
        """Refuse (ConfigError) unless the folder may be written; returns the files zooflow wrote there before."""
        folder = self.path
        if folder.is_symlink() and not folder.exists():
            raise ConfigError(f"--out {folder} is a broken link", "pass a new or empty folder")
        if folder.exists() and not folder.is_dir():
            raise ConfigError(f"--out {folder} is a file, not a folder", "pass a new or empty folder")
        check_overlap(folder, self.inputs)
        present = _files_below(folder) if folder.is_dir() else []
        marker = read_marker(folder) if folder.is_dir() else None
        if marker is not None and marker.get("command") != self.command:
            raise ConfigError(
                f"output folder {folder} holds the output of `zooflow {marker.get('command')}` "
                f"({len(marker['files'])} file(s) listed in its {MARKER}); `zooflow {self.command}` "
                "would replace them; nothing was changed",
                f"pass another --out folder for `zooflow {self.command}` (each command's output gets its own folder)",
            )
        ours = set(marker["files"]) if marker else set()
        for rel in sorted(ours | set(self.planned)):
            _inside(folder, rel)  # a link planted in the folder: refused before anything changes
        theirs = [f for f in present if f not in ours]
        if theirs and marker is None:
            raise ConfigError(
                f"output folder {folder} is not empty and zooflow did not write it "
                f"({len(theirs)} file(s), e.g. {_show(theirs)}); nothing was changed",
                "pass a new or empty --out folder: zooflow only writes into folders it made, and never deletes files it did not write",
            )
        clash = sorted(set(theirs) & set(self.planned))
        if clash:
            raise ConfigError(
                f"writing to {folder} would overwrite file(s) zooflow did not write: {_show(clash)}; nothing was changed",
                "move those files away or pass another --out folder",
            )
        return ours

    def claim(self) -> Path:
        """Check the folder may be written, remove zooflow's earlier files there, record the new ones."""
        ours = self.check()
        folder = self.path
        try:
            folder.mkdir(parents=True, exist_ok=True)
            _write_marker(folder, self.command, ours | set(self.planned), None, self.beside)
            if self.beside and read_marker(folder) is not None:
                marker_path(folder).unlink(missing_ok=True)  # an older zooflow's marker inside the folder
            for rel in sorted(ours):
                path = _inside(folder, rel)
                if path.is_file() or path.is_symlink():
                    path.unlink()
            self._prune_empty(ours)
        except OSError as exc:
            raise ConfigError(
                f"cannot prepare output folder {folder}: {exc.strerror or exc}", "pass an --out folder you can write"
            ) from None
        return folder

    def _prune_empty(self, removed: Iterable[str]) -> None:
        """Remove folders that held only files zooflow removed (deepest first; never the root)."""
        parents = {Path(rel).parent for rel in removed if Path(rel).parent != Path(".")}
        for parent in sorted(parents, key=lambda p: len(p.parts), reverse=True):
            for sub in (parent, *parent.parents):
                if sub == Path("."):
                    break
                path = self.path / sub
                try:
                    path.rmdir()  # only if empty: a user's file keeps its folder
                except OSError:
                    break

    def copy(self, source: Path, rel: str) -> Path:
        """Copy one planned file into the folder."""
        if rel not in self.planned:
            raise ValueError(f"{rel} was not planned for {self.path}")
        target = _inside(self.path, rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        return target

    def write_text(self, rel: str, text: str) -> Path:
        """Write one planned text file into the folder."""
        if rel not in self.planned:
            raise ValueError(f"{rel} was not planned for {self.path}")
        target = _inside(self.path, rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        return target

    def done(self, **extra: Any) -> None:
        """Record exactly the files written by this command (plus `extra` facts, e.g. the artifact digest)."""
        _write_marker(self.path, self.command, self.planned, extra, self.beside)


def _written_record(path: Path) -> Path:
    """Where the record of a single file zooflow wrote at `path` lives (per-user cache)."""
    key = hashlib.sha256(str(_real(path)).encode("utf-8", "surrogateescape")).hexdigest()
    return Path(platformdirs.user_cache_dir("zooflow")) / "written" / f"{key[:32]}.json"


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_file(path: Path, command: str, inputs: Sequence[Input] = (), what: str = "--out") -> None:
    """Refuse a single output file that is an input, or that exists and zooflow did not write (or that
    changed since zooflow wrote it)."""
    path = path.expanduser()
    if path.is_dir():
        raise ConfigError(f"{what} {path} is a folder", f"pass the path of the file `zooflow {command}` should write")
    check_overlap(path, inputs, what)
    if not (path.exists() or path.is_symlink()):
        return
    if path.is_symlink():
        raise ConfigError(
            f"{what} {path} is a link (to {os.path.realpath(path)}); zooflow never writes through one; nothing was changed",
            f"pass {what} a new path, or remove the link {path}",
        )
    try:
        record = json.loads(_written_record(path).read_text(encoding="utf-8"))
        ours = record.get("sha256") == _sha256_file(path)
    except (OSError, ValueError, AttributeError):
        ours = False
    if not ours:
        raise ConfigError(
            f"{what} {path} already exists and zooflow did not write it (or it changed since); nothing was changed",
            f"pass {what} a new path, or move {path} away yourself if you no longer need it",
        )


def write_file(path: Path, data: bytes, command: str, inputs: Sequence[Input] = (), what: str = "--out") -> None:
    """Write a single output file the user named (e.g. ``export --out model.onnx``) atomically; an
    existing file is replaced only if zooflow wrote it (`check_file`)."""
    path = path.expanduser()
    check_file(path, command, inputs, what)
    durable.write_atomic(path, data)
    remember(path, command)


def remember(path: Path, command: str) -> None:
    """Record that zooflow wrote the single file `path` as it is now (so a later run may replace it)."""
    path = path.expanduser()
    record = {"path": str(_real(path)), "sha256": _sha256_file(path), "command": command}
    with contextlib.suppress(OSError):  # only the right to replace the file later is lost, never the file
        durable.write_atomic(_written_record(path), json.dumps(record).encode())


def place(
    out: Path,
    command: str,
    sources: dict[str, Path],
    *,
    move: bool = False,
    inputs: Sequence[Input] = (),
    **extra: Any,
) -> list[str]:
    """Put `sources` (relative name in `out` -> local file) into the folder `out`, with zooflow's marker.

    `move` renames the files in (falling back to a copy across file systems); the default copies.
    `inputs` are the command's inputs, which `out` must not overlap. Returns the relative names written.
    """
    folder = OutputFolder(out, command, sources, inputs)
    folder.claim()
    for rel, source in sorted(sources.items()):
        if move:
            target = _inside(folder.path, rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.replace(source, target)
                continue
            except OSError:
                pass  # another file system: copy below
        folder.copy(source, rel)
    folder.done(**extra)
    return folder.planned


def files_below(folder: Path) -> dict[str, Path]:
    """Relative name -> path of every file below `folder` (what `place` takes)."""
    return {rel: folder / rel for rel in _files_below(folder)}
