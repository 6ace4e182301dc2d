"""Folders the user names with ``--out``: written only when empty or made by zooflow; never emptied wholesale.

zooflow's own marker, ``.zooflow-out.json``, lists the command and every file zooflow wrote there.
A folder that holds anything else and no valid marker is refused (a user's own folder may well
hold an ``imagenet.txt`` or a ``calibration.json``: a file name proves nothing). Writing into a
marked folder again removes exactly the files the marker lists (one by one, never a tree), keeps
whatever the user added, and refuses to overwrite a file the user put there. The marker is written
before any file, so an interrupted copy still leaves every written file accounted for.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from zooflow import durable
from zooflow.errors import ConfigError

MARKER = ".zooflow-out.json"
_MAGIC = "written by zooflow; lists the files zooflow may replace here"
_SHOW = 5


def _files_below(folder: Path) -> list[str]:
    """Relative POSIX paths of every file (and link) below `folder`, the marker excepted."""
    found = []
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            rel = (Path(dirpath) / name).relative_to(folder).as_posix()
            if rel != MARKER:
                found.append(rel)
    return sorted(found)


def read_marker(folder: Path) -> dict[str, Any] | None:
    """The marker's content if it is zooflow's, else None."""
    try:
        doc = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("zooflow") != _MAGIC or not isinstance(doc.get("files"), list):
        return None
    return doc


def _write_marker(folder: Path, command: str, files: Iterable[str], extra: dict[str, Any] | None) -> None:
    doc = {"zooflow": _MAGIC, "command": command, "files": sorted(set(files)), **(extra or {})}
    durable.write_atomic(folder / MARKER, json.dumps(doc, indent=1).encode())


def _show(items: list[str]) -> str:
    return ", ".join(items[:_SHOW]) + (f", ... ({len(items) - _SHOW} more)" if len(items) > _SHOW else "")


def _inside(folder: Path, rel: str) -> Path:
    path = (folder / rel).resolve()
    if not path.is_relative_to(folder.resolve()):
        raise ConfigError(f"refusing to touch {rel!r}: it is outside {folder}", "this is a bug; please report it")
    return folder / rel


class OutputFolder:
    """An --out folder: `claim()` before writing the planned files into it, `done()` after."""

    def __init__(self, path: Path, command: str, planned: Iterable[str]) -> None:
        self.path = path.expanduser()
        self.command = command
        self.planned = sorted(set(planned))

    def check(self) -> set[str]:
        """Refuse (ConfigError) unless the folder may be written; returns the files zooflow wrote there before."""
        folder = self.path
        if folder.exists() and not folder.is_dir():
            raise ConfigError(f"--out {folder} is a file, not a folder", "pass a new or empty folder")
        present = _files_below(folder) if folder.is_dir() else []
        marker = read_marker(folder) if folder.is_dir() else None
        ours = set(marker["files"]) if marker else set()
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
            _write_marker(folder, self.command, ours | set(self.planned), None)
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
        _write_marker(self.path, self.command, self.planned, extra)


def write_file(path: Path, data: bytes) -> None:
    """Write a single output file the user named (e.g. ``export --out model.onnx``) atomically."""
    durable.write_atomic(path.expanduser(), data)


def place(out: Path, command: str, sources: dict[str, Path], *, move: bool = False, **extra: Any) -> list[str]:
    """Put `sources` (relative name in `out` -> local file) into the folder `out`, with zooflow's marker.

    `move` renames the files in (falling back to a copy across file systems); the default copies.
    Returns the relative names written.
    """
    folder = OutputFolder(out, command, sources)
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
