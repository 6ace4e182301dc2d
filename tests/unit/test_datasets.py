"""Dataset reader: both layouts, identity, and a clear message for every kind of problem."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from zooflow import datasets
from zooflow.config import DataSpec
from zooflow.demo import write_demo_dataset
from zooflow.errors import DatasetError


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _scan(path: Path, **kw) -> datasets.Dataset:  # type: ignore[no-untyped-def]
    return datasets.scan(DataSpec(path=str(path), **kw))


def test_flat_layout_with_labels_and_names(demo_small: Path) -> None:
    data = _scan(demo_small / "val")
    assert data.layout == "flat" and len(data.records) == 36
    assert data.labels_file == demo_small / "val_label.txt"
    assert [r.name for r in data.records] == sorted(r.name for r in data.records)
    assert (
        data.class_names is not None and data.class_names[0] == "tench, Tinca tinca" and len(data.class_names) == 1000
    )
    assert {r.label for r in data.records} == set(range(12))


def test_synset_folders_are_labelled_by_their_imagenet_id_not_their_position(tmp_path: Path) -> None:
    from zooflow import imagenet

    write_demo_dataset(tmp_path, classes=5, per_class=2, layout="synset", seed=0)
    val = tmp_path / "val"
    data = _scan(val)
    assert data.synsets == ("n01440764", "n01443537", "n01484850", "n01491361", "n01494475")  # ids 0..4
    assert all(imagenet.synset_ids()[r.name.split("/")[0]] == r.label for r in data.records)
    # a subset with gaps: goldfish (1), tiger shark (3), hen (8); positions would say 0, 1, 2
    shutil.rmtree(val / "n01440764")
    shutil.rmtree(val / "n01484850")
    (val / "n01494475").rename(val / "n01514859")
    data = _scan(val)
    assert {r.name.split("/")[0]: r.label for r in data.records} == {"n01443537": 1, "n01491361": 3, "n01514859": 8}
    before = data.identity
    (tmp_path / "ids.txt").write_text("n01443537 7\nn01491361 3\nn01514859 8\n")  # --labels overrides
    relabelled = _scan(val, labels=str(tmp_path / "ids.txt"))
    assert {r.label for r in relabelled.records if r.name.startswith("n01443537/")} == {7}
    assert relabelled.identity != before  # a dataset's identity changes with its labels
    (val / "n99999999").mkdir()
    shutil.copyfile(next(val.glob("n*/*.JPEG")), val / "n99999999" / "x.JPEG")
    with pytest.raises(
        DatasetError,
        match=r"synset folders with no class id among ImageNet-1k's 1000 classes \(is it another dataset\?\) \(1\): n99999999",
    ):
        _scan(val)


def test_identity_ignores_listing_order_and_location(
    demo_small: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _scan(demo_small / "val").identity
    moved = _copy(demo_small, tmp_path / "moved")
    real_scandir = os.scandir

    class Reversed:
        def __init__(self, path):  # type: ignore[no-untyped-def]
            self.inner = real_scandir(path)

        def __enter__(self):  # type: ignore[no-untyped-def]
            return list(reversed(list(self.inner)))

        def __exit__(self, *exc):  # type: ignore[no-untyped-def]
            self.inner.close()

    monkeypatch.setattr(datasets.os, "scandir", Reversed)
    assert _scan(moved / "val").identity == first


def test_identity_changes_with_a_label(demo_small: Path, tmp_path: Path) -> None:
    copy = _copy(demo_small, tmp_path / "c")
    lines = (copy / "val_label.txt").read_text().splitlines()
    name, label = lines[0].split()
    lines[0] = f"{name} {(int(label) + 1) % 12}"
    (copy / "val_label.txt").write_text("\n".join(lines) + "\n")
    assert _scan(copy / "val").identity != _scan(demo_small / "val").identity


def test_every_label_problem_is_reported_at_once(demo_small: Path, tmp_path: Path) -> None:
    copy = _copy(demo_small, tmp_path / "bad")
    lines = (copy / "val_label.txt").read_text().splitlines()
    unlabelled = lines.pop(1).split()[0]
    lines += [
        "ILSVRC2012_val_99999999.JPEG 3",  # names a missing file
        lines[2],  # duplicate entry
        "ILSVRC2012_val_00000005.JPEG",  # malformed
    ]
    name, _ = lines[3].split()
    lines[3] = f"{name} 1000"  # out of range
    (copy / "val_label.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError) as exc:
        _scan(copy / "val")
    text = exc.value.problem
    assert "has 5 problem(s)" in text
    assert "files named in val_label.txt but missing" in text and "ILSVRC2012_val_99999999.JPEG (line" in text
    assert f"images in {copy / 'val'} without a label in val_label.txt (1): {unlabelled}" in text
    assert f"labels outside 0..999 (1): {name} -> 1000 (line 4)" in text
    assert "files listed more than once in val_label.txt (1)" in text
    assert "lines of val_label.txt that are not '<file> <class>' (1): line " in text
    assert "--labels" not in (exc.value.fix or "") and "fix or remove" in (exc.value.fix or "")


def test_missing_labels_file_names_the_fix(demo_small: Path, tmp_path: Path) -> None:
    copy = _copy(demo_small / "val", tmp_path / "nolabels" / "val")
    with pytest.raises(DatasetError) as exc:
        _scan(copy)
    assert "needs a labels file" in exc.value.problem and "--labels val_label.txt" in (exc.value.fix or "")
    with pytest.raises(DatasetError, match="does not exist"):
        _scan(copy, labels=str(tmp_path / "nope.txt"))


def test_names_file_with_wrong_count(demo_small: Path, tmp_path: Path) -> None:
    names = tmp_path / "names.txt"
    names.write_text("tench\ngoldfish\n")
    with pytest.raises(DatasetError, match="has 2 names, expected 1000"):
        _scan(demo_small / "val", names=str(names))


def test_synset_strays_and_empty_or_missing_folders(tmp_path: Path) -> None:
    write_demo_dataset(tmp_path / "d", classes=3, per_class=1, layout="synset")
    val = tmp_path / "d" / "val"
    (val / "misc").mkdir()
    shutil.copyfile(next(val.glob("n*/*.JPEG")), val / "loose.JPEG")
    with pytest.raises(DatasetError) as exc:
        _scan(val)
    assert "folders in" in exc.value.problem and "misc/" in exc.value.problem
    assert "images outside any synset folder (no class) (1): loose.JPEG" in exc.value.problem
    (tmp_path / "empty").mkdir()
    (tmp_path / "val_label.txt").write_text("")
    with pytest.raises(DatasetError, match="no images"):
        _scan(tmp_path / "empty", labels=str(tmp_path / "val_label.txt"))
    with pytest.raises(DatasetError, match="dataset folder not found"):
        _scan(tmp_path / "absent")


def test_decode_check_lists_corrupt_files_and_conversions(demo_small: Path, tmp_path: Path) -> None:
    copy = _copy(demo_small, tmp_path / "c")
    victims = sorted((copy / "val").glob("*.JPEG"))[5:7]
    victims[0].write_bytes(victims[0].read_bytes()[:2000])  # truncated JPEG
    victims[1].write_bytes(b"not a jpeg at all")
    check = datasets.check_images(_scan(copy / "val"), workers=2)
    assert sorted(check.corrupt) == sorted(v.name for v in victims)
    assert "UnidentifiedImageError" in check.corrupt[victims[1].name]
    assert sorted(check.converted.values()) == ["CMYK", "L"]
    assert check.modes["RGB"] == 32
