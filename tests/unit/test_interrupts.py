"""The interrupt guard leaves no child process behind, even one a thread starts while the process ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest

# Four threads each start a child that sleeps, and start another at once when it dies (a tool's retry,
# or a task thread going on to its next tool): the guard's sweep kills children while new ones start.
_SCRIPT = """
import subprocess, sys, threading, time
from zooflow import interrupts

def retrying(marker):
    while True:
        try:
            with interrupts.spawning():
                child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", marker])
        except interrupts.EndingError:
            return
        child.wait()

with interrupts.guard(as_json=True, what="test"):
    for _ in range(4):
        threading.Thread(target=retrying, args=(sys.argv[1],), daemon=True).start()
    print("ready", flush=True)
    time.sleep(120)
"""


def _marked(marker: str) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        if p.info["status"] != psutil.STATUS_ZOMBIE and marker in (p.info["cmdline"] or []):
            found.append(p)
    return found


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_every_child_even_those_started_while_ending(signum: int, tmp_path: Path) -> None:
    for _ in range(3):
        marker = f"zooflow-test-{uuid.uuid4().hex}"
        proc = subprocess.Popen(
            [sys.executable, "-c", _SCRIPT, marker],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")},
        )
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
            deadline = time.monotonic() + 30
            while len(_marked(marker)) < 4:
                assert time.monotonic() < deadline, "the children did not start"
                time.sleep(0.05)
            proc.send_signal(signum)
            out, err = proc.communicate(timeout=30)
        finally:
            proc.kill()
        assert proc.returncode == 128 + signum, err
        summary = json.loads(out.strip().splitlines()[-1])
        assert summary["status"] == "interrupted" and summary["signal"] == signal.Signals(signum).name
        time.sleep(0.3)
        left = _marked(marker)
        for p in left:
            p.kill()
        assert not left, f"{len(left)} child process(es) outlived the interrupted process"
