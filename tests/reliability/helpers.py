"""What the catalogue's cases share: the CLI in-process and as a process, snapshots, a real full disk."""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.conftest import MODEL

__all__ = ["MODEL", "Evil", "cli", "evil_checkpoint", "no_traceback", "snapshot", "tmpfs", "zooflow_process"]


def cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run a zooflow command in this process: (exit code, stdout, stderr)."""
    from zooflow.cli import app

    result = CliRunner().invoke(app, list(args), env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def zooflow_process(*args: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run the installed console script as a user does."""
    exe = Path(sys.executable).with_name("zooflow")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, env=env, timeout=timeout)


def run_env(tmp: Path, store: Path, request: pytest.FixtureRequest | None = None) -> dict[str, str]:
    """Environment for a `zooflow run` process: its own store and Prefect home. With `request`, the
    session's Prefect test API (a team's shared server; saves each process starting its own);
    without, no configured API, so the process starts its own temporary one."""
    env = {**os.environ, "ZOOFLOW_STORE": str(store), "PREFECT_HOME": str(tmp / f"prefect-{uuid.uuid4().hex[:6]}")}
    env.pop("PREFECT_API_URL", None)
    if request is not None:
        request.getfixturevalue("prefect_api")
        from prefect.settings import PREFECT_API_URL

        env["PREFECT_API_URL"] = str(PREFECT_API_URL.value())
    return env


def small_run(request: pytest.FixtureRequest, shard_size: int, *extra: str) -> list[str]:
    """`zooflow run` arguments for a quick real run: the 36-image demo set, the local checkpoint,
    no parity run, no PyTorch probe, one benchmark setting."""
    data: Path = request.getfixturevalue("demo_small")
    args = ["run", "--data", str(data / "val"), "--checkpoint", str(request.getfixturevalue("checkpoint_file"))]
    args += ["--allow-short", "--shard-size", str(shard_size), "--no-parity", "--probe-images", "0"]
    return [*args, "--bench-batch", "1", *extra]


def no_traceback(text: str) -> None:
    """A clear error, never a raw traceback."""
    assert "Traceback" not in text, text[-3000:]


def snapshot(folder: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file below `folder` (to prove nothing changed)."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


class Evil:
    """Unpickling this calls os.mkdir(path): a harmless stand-in for a malicious payload."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (str(self.path),))


def evil_checkpoint(path: Path, marker: Path, checkpoint_file: Path) -> Path:
    """A real checkpoint whose metadata, once unpickled, creates `marker`."""
    import torch

    ckpt = torch.load(checkpoint_file, weights_only=True)
    ckpt["meta"] = {"payload": Evil(marker)}
    torch.save(ckpt, path)
    return path


@contextlib.contextmanager
def tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A real small file system (tmpfs) mounted at `where`, so that a disk really fills up."""
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()[:100]}): disk-full cases need one")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill(folder: Path, leave: int = 0) -> Path:
    """Fill the file system holding `folder`, leaving about `leave` bytes free."""
    import shutil

    filler = folder / f".filler-{uuid.uuid4().hex[:6]}"
    free = shutil.disk_usage(folder).free
    with open(filler, "wb") as fh, contextlib.suppress(OSError):
        fh.write(b"\0" * max(0, free - leave))
    return filler
