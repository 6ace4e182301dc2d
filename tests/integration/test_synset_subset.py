"""A subset of ImageNet's classes in synset folders: every image keeps its ImageNet-1k id.

The ids below are ImageNet-1k's published class ids (the ILSVRC2012 devkit's order), written here by
hand: the test does not read them from zooflow's list. Five folders with gaps between their ids
(1, 10, 31, 278, 805): labelling by folder position would call them 0..4 and score every image wrong.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from tests.reliability.helpers import cli

FOLDERS = {
    "n01443537": (1, "goldfish, Carassius auratus"),
    "n01530575": (10, "brambling, Fringilla montifringilla"),
    "n01644373": (31, "tree frog, tree-frog"),
    "n02119789": (278, "kit fox, Vulpes macrotis"),
    "n04254680": (805, "soccer ball"),
}


def _subset(root: Path, photos: list[Path]) -> Path:
    """Two real photographs in each of the five synset folders."""
    val = root / "val"
    for number, synset in enumerate(FOLDERS):
        (val / synset).mkdir(parents=True)
        for k in (number, number + len(FOLDERS)):
            photo = photos[k % len(photos)]
            shutil.copyfile(photo, val / synset / f"{synset}_{k}_{photo.stem}.JPEG")
    return val


def _vamp_outputs(folder: Path, datalist: Path, class_of: dict[str, int]) -> None:
    """vamp's layout (output_%06d.npz, key output_0), line i of the datalist -> file i: logits whose top-1 is
    the class `class_of` gives the image's synset folder, then the next ids as its top-5."""
    folder.mkdir()
    for i, line in enumerate(datalist.read_text().splitlines()):
        synset = Path(line).parent.name
        logits = np.zeros((1, 1000), np.float32)
        top = class_of[synset]
        logits[0, top] = 10.0
        for rank, other in enumerate(range(top + 1, top + 5), start=1):
            logits[0, other % 1000] = 10.0 - rank
        np.savez(folder / f"output_{i:06d}.npz", output_0=logits)


def test_synset_subset_scores_by_imagenet_id_and_calibrates_each_class_present(
    tmp_path: Path, photos: list[Path]
) -> None:
    val = _subset(tmp_path, photos)
    store = ["--store", str(tmp_path / "s")]
    code, _, err = cli("npz", "--data", str(val), "--format", "vastai", "--out", str(tmp_path / "npz"), *store)
    assert code == 0, err
    datalist = tmp_path / "npz" / "datalist.txt"

    _vamp_outputs(tmp_path / "right", datalist, {s: i for s, (i, _) in FOLDERS.items()})
    args = ["eval", "--datalist", str(datalist), "--semantics", "logits", "--json"]
    code, out, err = cli(*args, "--outputs", str(tmp_path / "right"))
    assert code == 0, err
    assert json.loads(out.splitlines()[-1]) == {"top1": 100.0, "top5": 100.0, "images": 10, "classes": 5}
    for synset, (cid, name) in FOLDERS.items():  # the per-class list names the true ids and classes
        assert f"{cid} ({name}) 100.0%" in err, (synset, err)

    # the labels positions would give (0..4): every image wrong, which is what zooflow used to score
    _vamp_outputs(tmp_path / "positions", datalist, {s: n for n, s in enumerate(sorted(FOLDERS))})
    code, out, err = cli(*args, "--outputs", str(tmp_path / "positions"))
    assert code == 0 and json.loads(out.splitlines()[-1])["top1"] == 0.0, err

    code, out, err = cli(
        "calib", "--data", str(val), "--out", str(tmp_path / "calib"), "--allow-short", *store, "--json"
    )
    assert code == 0, err
    doc = json.loads((tmp_path / "calib" / "calibration.json").read_text())
    assert doc["count"] == 5 and doc["classes"] == sorted(i for i, _ in FOLDERS.values())
    assert {e["class"]: e["source"].split("/")[0] for e in doc["images"]} == {i: s for s, (i, _) in FOLDERS.items()}
    ref = json.loads(out.splitlines()[-1])
    code, shown, _ = cli("artifacts", "show", ref["digest"], *store)
    assert json.loads(shown)["meta"]["classes"] == [1, 10, 31, 278, 805]
