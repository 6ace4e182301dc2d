"""End a flow run promptly on SIGINT / SIGTERM, or when its temporary API dies, saying what finished.

Why hand-written: Prefect's in-process engine reacts to Ctrl-C by reporting the run to its API and
waiting for the task threads (minutes: a shard, a compile), and a terminal's Ctrl-C reaches the
whole process group, so the temporary API server died first and every report hung in retries
(231 s to exit, six tracebacks). Here the first signal ends the process within seconds: the stages
that finished are already in the store (every record is written atomically, and staging left by a
killed process is cleaned by the next run), so the next run resumes from them. The runner (which
knows Prefect) registers what finished and how to mark the run in its API; this module never
imports Prefect.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# The runner's hooks: what finished so far, and a best-effort note to its API (each bounded in time).
_progress: list[Callable[[], dict[str, Any]]] = []
_on_abort: list[Callable[[str], None]] = []
_lock = threading.Lock()
_state: dict[str, Any] = {"active": False, "as_json": False, "what": "zooflow", "ending": False, "closed": False}
# Held while a child process starts, and by `abort` while it closes the gate: a child that a task
# thread starts after the last sweep of `_stop_children` (a vamc after its `--version` probe was
# stopped) would outlive us. Once closed, `spawning` refuses, so every child is seen by the sweep.
_spawn_lock = threading.Lock()

ABORT_NOTE_SECONDS = 3.0  # how long the API may take to record the run's end before the process exits
RESUME = "run the same command again: finished stages are reused from the store and only the rest is computed"


def add_progress(source: Callable[[], dict[str, Any]]) -> None:
    """Register a function returning ``{"finished": {stage: state}, "flow_run_id": ...}`` so far."""
    _progress.append(source)


def add_on_abort(hook: Callable[[str], None]) -> None:
    """Register a best-effort hook run (at most `ABORT_NOTE_SECONDS`) before the process exits."""
    _on_abort.append(hook)


def reset_hooks() -> None:
    """Forget the registered hooks (between runs in one process)."""
    _progress.clear()
    _on_abort.clear()


class EndingError(RuntimeError):
    """Raised instead of starting a child process while this process is ending."""


@contextlib.contextmanager
def spawning() -> Iterator[None]:
    """Hold around starting a child process (``Popen``): once `abort` began stopping children, no new one
    may start, so none is left behind when the process exits."""
    with _spawn_lock:
        if _state["closed"]:
            raise EndingError("this process is ending: no new child process is started")
        yield


def progress() -> dict[str, Any]:
    """What the registered sources say finished (stages merged; the first flow run id)."""
    finished: dict[str, str] = {}
    run_id = None
    for source in list(_progress):
        try:
            found = source()
        except Exception:  # noqa: BLE001 - a report of progress must never stop the process from ending
            continue
        finished.update(found.get("finished") or {})
        run_id = run_id or found.get("flow_run_id")
    return {"finished": finished, "flow_run_id": run_id}


def descendants(pid: int | None = None) -> list[int]:
    """Every live descendant process of `pid` (default: this one), from /proc (Linux; [] elsewhere)."""
    parents: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            stat = Path("/proc", entry, "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()  # after the command name, which may hold spaces
        parents.setdefault(int(fields[1]), []).append(int(entry))
    found: list[int] = []
    todo = [os.getpid() if pid is None else pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


def _stop_children() -> None:
    """SIGTERM, then after a moment SIGKILL, every descendant (npz workers, vamc/vamp, the temporary API).

    Repeated until none is left: a task thread that saw its tool die may start it again (a retry)
    before this process exits, and that new child would outlive us, hanging on for ever."""
    children = descendants()
    for child in children:
        with contextlib.suppress(OSError):
            os.kill(child, signal.SIGTERM)
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and any(_alive(c) for c in children):
        time.sleep(0.05)
    for _ in range(50):
        alive = [c for c in descendants() if _alive(c)]
        if not alive:
            return
        for child in alive:
            with contextlib.suppress(OSError):
                os.kill(child, signal.SIGKILL)
        time.sleep(0.02)


def _alive(pid: int) -> bool:
    try:
        stat = Path("/proc", str(pid), "stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :].split()[0] != "Z"


def _note_api(reason: str) -> None:
    """Run the abort hooks in a daemon thread, waiting at most `ABORT_NOTE_SECONDS` for them."""

    def run() -> None:
        for hook in list(_on_abort):
            with contextlib.suppress(Exception):
                hook(reason)

    thread = threading.Thread(target=run, name="zooflow-abort-note", daemon=True)
    thread.start()
    thread.join(ABORT_NOTE_SECONDS)


def abort(status: str, problem: str, exit_code: int, *, tell_api: bool = True, **extra: Any) -> None:
    """End the process now: mark the run in its API (bounded; not when the API is what died), stop child
    processes, print one line saying what finished and that re-running resumes (and the ``--json``
    line), exit with `exit_code`.

    Safe from a signal handler or any thread; only the first call acts (later ones wait for the exit).
    """
    with _lock:
        if _state["ending"]:
            return
        _state["ending"] = True
    done = progress()
    finished = {stage: state for stage, state in done["finished"].items() if "Completed" in state or "Cached" in state}
    if tell_api:
        _note_api(problem)
    if _progress:
        names = ", ".join(finished) if finished else "none yet"
        line = f"{_state['what']} {status}: {problem}; {len(finished)} stage(s) finished and stored ({names})"
    else:
        line = f"{_state['what']} {status}: {problem}; the work finished so far is kept in the store"
    with contextlib.suppress(Exception):
        sys.stderr.write(f"{line}\nfix: {RESUME}\n")
        if _state["as_json"]:
            summary = {
                "status": status,
                "error": problem,
                "fix": RESUME,
                "finished": finished,
                "flow_run_id": done["flow_run_id"],
                "exit_code": exit_code,
                **extra,
            }
            sys.stdout.write(json.dumps(summary) + "\n")
        sys.stdout.flush()
        sys.stderr.flush()
    _silence()  # what the stopped children make the other threads log is noise after that line
    with _spawn_lock:  # waits for a child being started now; it is then among the descendants swept
        _state["closed"] = True
    _stop_children()
    os._exit(exit_code)


def _silence() -> None:
    """Point this process's stdout and stderr at /dev/null (the last lines are written)."""
    with contextlib.suppress(OSError):
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.dup2(null, 2)


def _on_signal(signum: int, _frame: Any) -> None:
    name = signal.Signals(signum).name
    abort("interrupted", f"stopped by {name}", 128 + signum, signal=name)


def _watch_wakeup(read_fd: int) -> None:
    """Act on SIGINT / SIGTERM from a thread of our own: Python runs signal handlers only in the main
    thread, and while a flow runs Prefect's SIGTERM handler replaces ours and then waits for every
    running task (a hung tool: for ever). The C-level handler writes each signal's number to the
    wakeup fd whoever's Python handler is installed, so this thread sees the signal either way."""
    try:
        while True:
            try:
                data = os.read(read_fd, 64)
            except OSError:
                return
            if not data:
                return  # the guard closed the write end
            for signum in data:
                if signum in (signal.SIGINT, signal.SIGTERM):
                    _on_signal(signum, None)
    finally:
        with contextlib.suppress(OSError):
            os.close(read_fd)


@contextlib.contextmanager
def guard(as_json: bool = False, what: str = "zooflow") -> Iterator[None]:
    """While the body runs, SIGINT and SIGTERM end the process with exit 130 / 143 via `abort`."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be installed from the main thread
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    _state.update(active=True, as_json=as_json, what=what)
    for sig in previous:
        signal.signal(sig, _on_signal)
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    previous_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    threading.Thread(target=_watch_wakeup, args=(read_fd,), name="zooflow-signals", daemon=True).start()
    try:
        yield
    finally:
        signal.set_wakeup_fd(previous_fd)
        os.close(write_fd)  # the watcher reads end-of-file and returns
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _state.update(active=False)
        reset_hooks()


def own_sigterm() -> None:
    """Under `guard`, in the main thread: take SIGTERM's handler back from Prefect's flow engine, which
    installs its own when a flow starts. Its handler raises in the main thread, and the engine then
    writes Crashed over the Cancelled that `abort` writes (under load its write, sent last, landed last).
    Without a guard (a worker runs the flow) Prefect keeps its handler: that is how a worker cancels."""
    if _state["active"] and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_signal)


def guarded() -> bool:
    """Whether a `guard` is active (a dead API then ends the process instead of hanging in retries)."""
    return bool(_state["active"])


def ignore_sigint() -> None:
    """Initialiser for worker processes: a terminal's Ctrl-C reaches the whole process group, and the
    parent (which owns the run) ends the workers itself, without a traceback from each."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
