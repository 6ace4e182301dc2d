"""Where an artifact came from: code version, library versions, host."""

from __future__ import annotations

import functools
import importlib.metadata
import platform
import subprocess
import sys
from pathlib import Path

from zooflow import __version__


@functools.cache
def code_version() -> str:
    """``zooflow <version>`` plus the git commit (``+dirty`` when modified) of a source checkout."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no", "--", "."],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return f"zooflow {__version__}"
    return f"zooflow {__version__} ({commit}{'+dirty' if dirty else ''})"


# Versions of distributions whose module this process has imported: the code in memory is what
# computes, so its version cannot change under us, and importlib.metadata.version scans sys.path
# on every call (~10 ms here; a flow asks for several per task, so it was a tenth of a demo run).
_LOADED_VERSIONS: dict[str, str] = {}


def library_versions(*names: str) -> dict[str, str]:
    """Installed versions of the named distributions (``missing`` when absent)."""
    versions = {}
    for name in names:
        if name in _LOADED_VERSIONS:
            versions[name] = _LOADED_VERSIONS[name]
            continue
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "missing"
            continue
        if name.replace("-", "_") in sys.modules:  # loaded: this is the version that runs
            _LOADED_VERSIONS[name] = versions[name]
    return versions


def host() -> dict[str, str]:
    """A short description of the machine that produced an artifact."""
    return {"node": platform.node(), "machine": platform.machine(), "python": platform.python_version()}
