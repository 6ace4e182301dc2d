"""A full disk (a real one: a small tmpfs): which path, which stage, how much space; nothing earlier lost."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.reliability.catalogue import case
from tests.reliability.helpers import MODEL, cli, fill, no_traceback, run_env, small_run, tmpfs, zooflow_process
from zooflow.errors import DiskFullError
from zooflow.store import Store


def _thing(store: Store, data: bytes, name: str) -> object:
    with store.staging("test") as staged:
        (staged / "a.bin").write_bytes(data)
        return store.commit(staged, kind="thing", stage="test", stage_version="1", name=name)


@case(
    "disk-full-version-record",
    area="disk full",
    fault="the disk fills up exactly when a version record is written",
    sees="a DiskFullError naming the record's path, the space left and the fix",
    kept="no 0-byte or partial record: after space is freed, `artifacts list` works and the next commit takes version 1",
    fixed_in="issue 10 #3",
)
def full_at_record(request: pytest.FixtureRequest) -> None:
    tmp: Path = request.getfixturevalue("tmp_path")
    with tmpfs(tmp / "disk", "2m") as disk:
        store = Store(disk / "s")
        _thing(store, b"content", "a/first")
        with store.staging("test") as staged:
            (staged / "a.bin").write_bytes(b"content")
            filler = fill(disk)
            with pytest.raises(DiskFullError) as exc:  # stored already: the version record is all it writes
                store.commit(staged, kind="thing", stage="test", stage_version="1", name="a/second")
        assert "disk full while" in exc.value.problem and "names/a/second/versions" in exc.value.problem
        assert "free of" in exc.value.problem and "rerun resumes" in (exc.value.fix or "")
        versions = Path(store.root) / "names" / "a" / "second" / "versions"
        assert not versions.exists() or list(versions.iterdir()) == []
        filler.unlink()
        code, out, _ = cli("artifacts", "list", "--store", store.url, "--json")
        assert code == 0 and [r["name"] for r in json.loads(out)] == ["a/first"]
        assert _thing(store, b"content", "a/second").version == 1  # type: ignore[attr-defined]


@case(
    "disk-full-fetch",
    area="disk full",
    fault="`zooflow fetch --checkpoint x.pth` into a store on a nearly full disk",
    sees="exit 2: disk full while the fetch stage wrote <its copy in the store> (N free of M on the file system "
    "holding the store; it named the source file and its disk before), and the fix",
    kept="the artifacts stored before; no staging left behind",
    fixed_in="issue 10 #12, issue 29 #7",
)
def full_fetch(request: pytest.FixtureRequest) -> None:
    tmp: Path = request.getfixturevalue("tmp_path")
    with tmpfs(tmp / "disk", "4m") as disk:
        store = Store(disk / "s")
        before = _thing(store, b"kept", "a/kept")
        code, _, err = cli(
            "fetch", "--checkpoint", str(request.getfixturevalue("checkpoint_file")), "--store", store.url
        )
        assert code == 2 and "disk full while the fetch stage wrote" in err and "free of" in err and "fix:" in err
        assert f"wrote {disk / 's' / 'tmp'}" in err, err  # the store's copy and its disk, not the source file's
        no_traceback(err)
        assert store.verify(before.digest, full=True) == []  # type: ignore[attr-defined]
        assert not [p for p in (disk / "s" / "tmp").glob("stage-*") if p.is_dir()]


@case(
    "disk-full-during-a-run",
    area="disk full",
    fault="`zooflow run` with its store on a disk that fills up in the middle of the flow",
    sees="exit 2: disk full while <stage> wrote <path>, the space left and the fix; no traceback",
    kept="every artifact finished before (verified intact); after space is freed the rerun reuses them (Cached) and completes",
    fixed_in="issue 10 #12",
    slow=True,
)
def full_run(request: pytest.FixtureRequest) -> None:
    tmp: Path = request.getfixturevalue("tmp_path")
    args = small_run(request, 12, "--json")
    with tmpfs(tmp / "disk", "24m") as disk:
        env = run_env(tmp, disk / "s", request)
        first = zooflow_process(*args, env=env)
        assert first.returncode == 2, first.stderr[-3000:]
        assert "disk full while" in first.stderr and "free of" in first.stderr and "fix:" in first.stderr
        no_traceback(first.stderr)
        kept = Store(disk / "s")
        assert any(kept.manifest(d).kind == "checkpoint" for d in kept.digests())
        assert zooflow_process("artifacts", "verify", env=env).returncode == 0
        subprocess.run(["mount", "-o", "remount,size=80m", str(disk)], check=True)
        second = zooflow_process(*args, env=env)
        assert second.returncode == 0, second.stderr[-3000:]
        stages = json.loads(second.stdout.strip().splitlines()[-1])["stages"]
        assert stages["checkpoint"] == "Cached" and stages["onnx"] == "Cached"
        assert f"{MODEL}/checkpoint" in zooflow_process("artifacts", "list", env=env).stdout
