"""A pip-style ``vamc``: the EMULATOR packaged as a wheel and installed by uv into its own venv.

The real vamc is often a Python distribution whose console script is a wrapper that is the same
for every version, and that does not answer ``--version``. This builds exactly that: a wheel
(``vamc-emulated``, version as asked) whose entry point runs the emulator with ``--version``
refused, installed with ``uv pip install`` like any package, so zooflow must identify it by the
installed distribution.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

NAME = "vamc_emulated"
REPO = Path(__file__).resolve().parents[2]
_UV = shutil.which("uv")  # found once, before a test narrows PATH


def uv() -> str | None:
    """The uv executable, if this machine has one (CI installs it)."""
    return _UV


def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def build_wheel(out: Path, version: str) -> Path:
    """A real wheel of the emulated vamc at `version` (module, METADATA, WHEEL, entry points, RECORD)."""
    dist = f"{NAME}-{version}.dist-info"
    files = {
        f"{NAME}/__init__.py": (
            f'"""EMULATOR of Vastai\'s vamc, packaged for zooflow\'s tests."""\n__version__ = "{version}"\n\n\n'
            "def main():\n    import os\n    import sys\n\n"
            '    os.environ["VASTAI_EMULATOR_NO_VERSION"] = "1"  # like a vamc without a version flag\n'
            f'    os.environ["VASTAI_EMULATOR_VERSION"] = "vamc-emulated {version}"  # what its outputs record\n'
            f"    sys.path.insert(0, {str(REPO)!r})\n"
            "    from tests.support.vastai_emulator import vamc_main\n\n"
            "    sys.exit(vamc_main(sys.argv[1:]))\n"
        ).encode(),
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: vamc-emulated\nVersion: {version}\n".encode(),
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: zooflow-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{dist}/entry_points.txt": f"[console_scripts]\nvamc = {NAME}:main\n".encode(),
    }
    record = [_record_line(p, d) for p, d in files.items()] + [f"{dist}/RECORD,,"]
    files[f"{dist}/RECORD"] = ("\n".join(record) + "\n").encode()
    wheel = out / f"{NAME}-{version}-py3-none-any.whl"
    out.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, data in files.items():
            zf.writestr(path, data)
    return wheel


def make_venv(root: Path) -> Path:
    """A fresh venv that also sees this interpreter's packages (numpy, onnxruntime, ...); returns its bin dir."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    python = root / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(site) / "zooflow_test_parent.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return root / "bin"


def install(venv_bin: Path, wheel: Path) -> Path:
    """``uv pip install`` the wheel into the venv (replacing an installed version); returns the vamc script."""
    exe = uv()
    assert exe is not None
    subprocess.run(
        [
            exe,
            "pip",
            "install",
            "--offline",
            "--no-deps",
            "--reinstall",
            "--python",
            str(venv_bin / "python"),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    return venv_bin / "vamc"
