"""The Prefect UI in a real browser: headless Chromium against `prefect server start` and `zooflow serve`.

Runs `scripts/ui_screens.py`, which uses the one-off form as a person does (drop-down, JSON input,
Submit) and checks what the UI shows (refusals naming the field with no run created, the run's
name and tags, its summary log line and artifact, the report's plot, a cached re-run's summary).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("chromium") is None,
    reason="Debian's chromium is not installed (apt-get install chromium; .ci/run installs it where it can)",
)
def test_the_one_off_form_in_a_real_browser(tmp_path: Path) -> None:
    out = tmp_path / "screens"
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "ui_screens.py"), "--out", str(out), "--timeout", "400"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    said = done.stdout + done.stderr
    checks = [line for line in done.stdout.splitlines() if line.startswith(("PASS", "FAIL"))]
    assert done.returncode == 0, "\n".join(checks) + "\n" + said[-4000:]
    assert len(checks) >= 25 and not [c for c in checks if c.startswith("FAIL")], checks
    for shot in (
        "1-form.png",
        "2-refused-vastai-fp32.png",
        "4-1-artifacts.png",
        "5-report.png",
        "8-cached-summary.png",
    ):
        assert (out / shot).stat().st_size > 10_000, shot  # a page was drawn, not a blank frame
