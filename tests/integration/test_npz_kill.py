"""Kill an npz worker process with SIGKILL mid-run; the rerun resumes and matches an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.slow


def _npz_cmd(data: Path, store: Path, out: Path) -> list[str]:
    exe = str(Path(sys.executable).with_name("zooflow"))
    return [exe, "npz", "--data", str(data), "--format", "model", "--out", str(out), "--shard-size", "100", "--workers", "2",
            "--store", str(store), "--json"]  # fmt: skip


def _memos(store: Path) -> dict[str, int]:
    """Finished shards: memo record -> mtime of the shard's manifest."""
    found = {}
    for record in (store / "cache").glob("memo-npz-shard-*.json"):
        digest = json.loads(record.read_text())["digest"]
        found[digest] = (store / "objects" / digest[:2] / digest / "manifest.json").stat().st_mtime_ns
    return found


def test_sigkill_a_worker_then_resume(demo_1000: Path, tmp_path: Path) -> None:
    store, out = tmp_path / "store", tmp_path / "out"
    proc = subprocess.Popen(
        _npz_cmd(demo_1000 / "val", store, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 300
    while len(_memos(store) if (store / "cache").exists() else {}) < 3:
        assert proc.poll() is None, "the npz stage finished before it could be interrupted"
        assert time.time() < deadline
        time.sleep(0.05)
    children = psutil.Process(proc.pid).children(recursive=True)
    workers = [p for p in children if "spawn_main" in " ".join(p.cmdline())]  # not the resource tracker
    assert workers, "no worker processes found"
    os.kill(workers[0].pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2
    assert "worker process died" in err and "finished shards are reused" in err

    finished = _memos(store)
    assert 3 <= len(finished) < 20
    rerun = subprocess.run(_npz_cmd(demo_1000 / "val", store, out), capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    result = json.loads(rerun.stdout.strip().splitlines()[-1])
    after = _memos(store)
    assert len(after) == 20
    assert {d: after[d] for d in finished} == finished, "finished shards must not be recomputed"

    clean = subprocess.run(
        _npz_cmd(demo_1000 / "val", tmp_path / "clean", tmp_path / "out2"), capture_output=True, text=True, timeout=600
    )
    assert clean.returncode == 0, clean.stderr[-2000:]
    assert json.loads(clean.stdout.strip().splitlines()[-1])["digest"] == result["digest"]
    assert result["count"] == 2000 and len(Path(result["datalist"]).read_text().splitlines()) == 2000
