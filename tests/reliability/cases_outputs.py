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
    kept="the folder and its files (refused before anything is fetched or exported)",
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


def _demo_root(tmp: Path) -> Path:
    """A dataset root written by `zooflow demo-data` (so it carries demo-data's own marker)."""
    root = tmp / "D"
    code, _, err = cli("demo-data", "--out", str(root), "--classes", "4", "--per-class", "2")
    assert code == 0, err
    return root


@case(
    "calib-out-holds-its-data",
    area="output folders",
    fault="`zooflow calib --data D/val --labels D/val_label.txt --out D` where D came from `zooflow demo-data --out D`",
    sees="exit 2 before any work: --out D holds --data D/val, naming both paths",
    kept="every image, val_label.txt and imagenet.txt of D, byte for byte (they were all deleted before)",
    fixed_in="issue 29 #1",
)
def calib_out_holds_data(request: pytest.FixtureRequest) -> None:
    tmp: Path = request.getfixturevalue("tmp_path")
    root = _demo_root(tmp)
    before = snapshot(root)
    code, _, err = cli(
        "calib",
        *("--data", str(root / "val"), "--labels", str(root / "val_label.txt")),
        *("--out", str(root), "--allow-short", "--store", str(tmp / "s")),
    )
    assert code == 2 and f"--out {root} holds --data {root / 'val'}" in err and "nothing was changed" in err, err
    no_traceback(err)
    assert snapshot(root) == before and len(before) >= 10
    assert not (tmp / "s" / "refs").exists()  # refused before the dataset was even scanned


@case(
    "npz-out-is-an-input",
    area="output folders",
    fault="`zooflow npz --out D` on D's own images, and `--out D/val` (the --data folder itself)",
    sees="exit 2 before any work, naming --out and the input it holds or is",
    kept="the dataset, byte for byte",
    fixed_in="issue 29 #1",
)
def npz_out_is_input(request: pytest.FixtureRequest) -> None:
    tmp: Path = request.getfixturevalue("tmp_path")
    root = _demo_root(tmp)
    before = snapshot(root)
    for out, how in ((root, "holds"), (root / "val", "is")):
        code, _, err = cli("npz", "--data", str(root / "val"), "--out", str(out), "--store", str(tmp / "s"))
        assert code == 2 and f"--out {out} {how} --data {root / 'val'}" in err, err
        no_traceback(err)
    assert snapshot(root) == before


@case(
    "npz-out-is-another-commands-folder",
    area="output folders",
    fault="`zooflow npz --out C` where C is the calibration set `zooflow calib --out C` wrote",
    sees="exit 2: C holds the output of `zooflow calib` (its marker names the command), which npz would replace",
    kept="the calibration set, byte for byte (it was deleted before: a marker of another command counted as npz's)",
    fixed_in="issue 29 #1",
)
def npz_out_calib_folder(request: pytest.FixtureRequest) -> None:
    tmp: Path = request.getfixturevalue("tmp_path")
    data: Path = request.getfixturevalue("demo_small")
    calib_dir = tmp / "C"
    code, _, err = cli(
        "calib", "--data", str(data / "val"), "--out", str(calib_dir), "--allow-short", "--store", str(tmp / "s")
    )
    assert code == 0, err
    before = snapshot(calib_dir)
    code, _, err = cli("npz", "--data", str(data / "val"), "--out", str(calib_dir), "--store", str(tmp / "s"))
    assert code == 2 and "holds the output of `zooflow calib`" in err and "nothing was changed" in err, err
    assert snapshot(calib_dir) == before


@case(
    "export-out-user-file",
    area="output folders",
    fault="`zooflow export --out notes.onnx` where notes.onnx is the user's own file; then `--out` the checkpoint itself",
    sees="exit 2 before fetching: the file exists and zooflow did not write it / --out is --checkpoint; "
    "an .onnx zooflow wrote there itself is replaced as before",
    kept="the user's file and the checkpoint, byte for byte",
    fixed_in="issue 29 #7",
)
def export_out_user_file(request: pytest.FixtureRequest) -> None:
    tmp: Path = request.getfixturevalue("tmp_path")
    ckpt = tmp / "ck.pth"
    ckpt.write_bytes(request.getfixturevalue("checkpoint_file").read_bytes())
    mine = tmp / "notes.onnx"
    mine.write_text("my notes\n")
    store = ["--store", str(tmp / "s")]
    code, _, err = cli("export", "--checkpoint", str(ckpt), "--out", str(mine), *store)
    assert code == 2 and "already exists and zooflow did not write it" in err and mine.read_text() == "my notes\n"
    code, _, err = cli("export", "--checkpoint", str(ckpt), "--out", str(ckpt), *store)
    assert code == 2 and f"--out {ckpt} is --checkpoint" in err
    assert ckpt.read_bytes() == request.getfixturevalue("checkpoint_file").read_bytes()
    ours = tmp / "m.onnx"
    for _ in range(2):  # zooflow's own output is replaced on the next export
        code, _, err = cli("export", "--checkpoint", str(ckpt), "--out", str(ours), *store)
        assert code == 0, err
    ours.write_bytes(ours.read_bytes() + b"edited")  # ...until the user changes it
    code, _, err = cli("export", "--checkpoint", str(ckpt), "--out", str(ours), *store)
    assert code == 2 and ours.read_bytes().endswith(b"edited")


@case(
    "out-folder-link-to-user-folder",
    area="output folders",
    fault="in a folder `zooflow demo-data --out S --layout synset` wrote, the user replaced S/val/n01440764 with "
    "a link to their own folder; then `demo-data --out S` again",
    sees="exit 2 before any work: the link leads out of the output folder, named, with the fix (it said 'this is a bug')",
    kept="the user's folder behind the link and every file of S",
    fixed_in="issue 29 #4",
)
def out_link_planted(request: pytest.FixtureRequest) -> None:
    import shutil

    tmp: Path = request.getfixturevalue("tmp_path")
    root = tmp / "S"
    args = ["demo-data", "--out", str(root), "--classes", "3", "--per-class", "1", "--layout", "synset"]
    assert cli(*args)[0] == 0
    mine = tmp / "mine"
    mine.mkdir()
    first = sorted((root / "val").iterdir())[0]
    for img in first.iterdir():
        shutil.copyfile(img, mine / img.name)
    shutil.rmtree(first)
    first.symlink_to(mine, target_is_directory=True)
    before, before_root = snapshot(mine), snapshot(root)
    code, _, err = cli(*args)
    assert code == 2 and f"{first} is a link that leads out of the output folder" in err, err
    no_traceback(err)
    assert snapshot(mine) == before and snapshot(root) == before_root


@case(
    "eval-text-onto-an-input",
    area="output folders",
    fault="`zooflow eval --outputs REF --labels val_label.txt --text val_label.txt` (the results written over the "
    "labels), then `--text notes.txt`, a file of the user's",
    sees="exit 2 before scoring: --text is --labels / already exists and zooflow did not write it; a results "
    "file zooflow wrote itself is replaced on the next eval",
    kept="the labels file and the user's notes, byte for byte",
    fixed_in="issue 29 #1",
)
def eval_text_onto_input(request: pytest.FixtureRequest) -> None:
    import numpy as np

    from tests.support.outputs import labelled_npz, stored_outputs
    from zooflow.store import Store

    tmp: Path = request.getfixturevalue("tmp_path")
    store = Store(tmp / "s")
    outputs = stored_outputs(store, labelled_npz(store, ["a.JPEG", "b.JPEG"], [1, 2]), np.eye(4)[[1, 2]], name="m/x")
    labels, notes = tmp / "val_label.txt", tmp / "notes.txt"
    labels.write_text("a.JPEG 1\nb.JPEG 2\n")
    notes.write_text("mine\n")
    at = ["eval", "--outputs", outputs.digest, "--labels", str(labels), "--store", str(tmp / "s")]
    code, _, err = cli(*at, "--text", str(labels))
    assert code == 2 and f"--text {labels} is --labels {labels}" in err, err
    code, _, err = cli(*at, "--text", str(notes))
    assert code == 2 and "already exists and zooflow did not write it" in err, err
    assert labels.read_text() == "a.JPEG 1\nb.JPEG 2\n" and notes.read_text() == "mine\n"
    for _ in range(2):
        code, _, err = cli(*at, "--text", str(tmp / "results.txt"))
        assert code == 0, err
    assert (tmp / "results.txt").read_text().count("Relay top-0") == 2
