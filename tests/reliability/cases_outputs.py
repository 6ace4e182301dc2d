"""--out folders: zooflow writes only where it may, and removes only what it wrote."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.reliability.catalogue import case
from tests.reliability.helpers import cli, no_traceback, snapshot


def _user_dataset(root: Path) -> None:
    """A user's real dataset root: train images, an imagenet.txt, notes."""
    (root / "train" / "n01440764").mkdir(parents=True)
    (root / "train" / "n01440764" / "a.JPEG").write_bytes(b"\xff\xd8 user image")
    (root / "imagenet.txt").write_text("tench\n")
    (root / "README").write_text("my dataset")


@case(
    "demo-data-into-user-folder",
    area="output folders",
    fault="`zooflow demo-data --out X` where X is a user's dataset root holding an imagenet.txt",
    sees="exit 2 before any work: the folder is not empty and zooflow did not write it, with examples of its files",
    kept="every file of X, byte for byte (a file name such as imagenet.txt proves nothing)",
    fixed_in="issue 10 #2",
)
def demo_data_refused(request: pytest.FixtureRequest) -> None:
    root: Path = request.getfixturevalue("tmp_path") / "X"
    _user_dataset(root)
    before = snapshot(root)
    code, _, err = cli("demo-data", "--out", str(root), "--classes", "2", "--per-class", "1")
    assert code == 2 and "zooflow did not write it" in err and "nothing was changed" in err
    no_traceback(err)
    assert snapshot(root) == before


@case(
    "calib-into-user-folder",
    area="output folders",
    fault="`zooflow calib --out Y` where Y holds a calibration.json and src/main.py",
    sees="exit 2: refused, nothing changed",
    kept="Y's files, byte for byte",
    fixed_in="issue 10 #2",
)
def calib_refused(request: pytest.FixtureRequest) -> None:
    tmp: Path = request.getfixturevalue("tmp_path")
    data: Path = request.getfixturevalue("demo_small")
    y = tmp / "Y"
    (y / "src").mkdir(parents=True)
    (y / "src" / "main.py").write_text("print('mine')\n")
    (y / "calibration.json").write_text("{}")
    before = snapshot(y)
    code, _, err = cli(
        "calib",
        "--data",
        str(data / "val"),
        "--out",
        str(y),
        "--per-class",
        "1",
        "--allow-short",
        "--store",
        str(tmp / "s"),
    )
    assert code == 2 and "zooflow did not write it" in err
    assert snapshot(y) == before


@case(
    "out-folder-rewritten",
    area="output folders",
    fault="`zooflow calib --out C` twice with different seeds, after the user added notes.txt to C",
    sees="the second run replaces exactly the files the first wrote (listed in .zooflow-out.json)",
    kept="the user's notes.txt; no image of the first set is left behind",
    fixed_in="issue 10 #2",
)
def out_rewritten(request: pytest.FixtureRequest) -> None:
    tmp: Path = request.getfixturevalue("tmp_path")
    data: Path = request.getfixturevalue("demo_small")
    out = tmp / "C"
    args = ["calib", "--data", str(data / "val"), "--out", str(out), "--allow-short", "--store", str(tmp / "s")]
    assert cli(*args, "--seed", "0")[0] == 0
    (out / "notes.txt").write_text("keep me")
    code, _, err = cli(*args, "--seed", "5")
    assert code == 0, err
    chosen = {e["file"] for e in json.loads((out / "calibration.json").read_text())["images"]}
    present = {p.name for p in out.iterdir()} - {"calibration.json", "notes.txt", ".zooflow-out.json"}
    assert present == chosen and (out / "notes.txt").read_text() == "keep me"


@case(
    "out-folder-user-file-clash",
    area="output folders",
    fault="the user put a file named like one zooflow would write (datalist.txt) into zooflow's own npz folder",
    sees="exit 2: writing would overwrite a file zooflow did not write, named",
    kept="the user's file and zooflow's earlier output, unchanged",
    fixed_in="issue 10 #2",
)
def out_clash(request: pytest.FixtureRequest) -> None:
    tmp: Path = request.getfixturevalue("tmp_path")
    data: Path = request.getfixturevalue("demo_small")
    out = tmp / "N"
    args = [
        "npz",
        "--data",
        str(data / "val"),
        "--out",
        str(out),
        "--limit",
        "4",
        "--workers",
        "1",
        "--store",
        str(tmp / "s"),
    ]
    assert cli(*args, "--datalist", str(tmp / "elsewhere.txt"))[0] == 0
    (out / "datalist.txt").write_text("mine")
    before = snapshot(out)
    code, _, err = cli(*args)
    assert code == 2 and "would overwrite" in err and "datalist.txt" in err
    assert snapshot(out) == before


@case(
    "export-out-is-a-folder",
    area="output folders",
    fault="`zooflow export --out DIR` where DIR is an existing folder",
    sees="exit 2: pass the path of the .onnx file",
    kept="the folder and its files; the ONNX artifact in the store",
)
def export_out_folder(request: pytest.FixtureRequest) -> None:
    tmp: Path = request.getfixturevalue("tmp_path")
    folder = tmp / "models"
    folder.mkdir()
    (folder / "other.onnx").write_bytes(b"theirs")
    before = snapshot(folder)
    code, _, err = cli(
        "export",
        "--checkpoint",
        str(request.getfixturevalue("checkpoint_file")),
        "--out",
        str(folder),
        "--store",
        str(tmp / "s"),
    )
    assert code == 2 and "is a folder" in err
    assert snapshot(folder) == before
