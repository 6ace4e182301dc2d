"""The ``zooflow`` command line (Typer), one module per command group.

- `zooflow.cli.flows`: run, sweep, nightly, serve (Prefect flows, through the ``zooflow.runners``
  entry points: the core never imports Prefect)
- `zooflow.cli.data`: demo-data, check-data, calib, npz
- `zooflow.cli.model`: fetch, export, compile, bench, export-outputs, models
- `zooflow.cli.results`: eval, report
- `zooflow.cli.artifacts`: artifacts list | show | lineage | verify | alias | gc

Every command ends a `ZooflowError` (bad input, a damaged record, a full disk, a failing tool)
with the problem, the fix and exit status 2, never a traceback; SIGINT / SIGTERM end it within
seconds with exit 130 / 143, saying what finished (`zooflow.interrupts`).
"""

from __future__ import annotations

import sys

from zooflow import interrupts
from zooflow.cli import artifacts, data, flows, model, results  # noqa: F401 - registers the commands
from zooflow.cli.common import app, err

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point."""
    command = next((a for a in sys.argv[1:] if not a.startswith("-")), "")
    try:
        if command == "serve":  # a long-lived server: Prefect's own Ctrl-C handling stops its runs
            app()
            return
        with interrupts.guard("--json" in sys.argv[1:], f"zooflow {command}".strip()):
            app()
    except KeyboardInterrupt:
        err.print("interrupted; finished artifacts are kept and a rerun resumes from them")
        sys.exit(130)
