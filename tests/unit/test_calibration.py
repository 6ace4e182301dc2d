"""Calibration set: exactly per_class images of every class, reproducible across runs and machines."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from zooflow import calibration, datasets
from zooflow.config import CalibrationOptions, DataSpec
from zooflow.errors import DatasetError
from zooflow.store import Store


def _build(data: Path, store: Store, *, seed: int = 0, per_class: int = 1, **kw):  # type: ignore[no-untyped-def]
    dataset = datasets.scan(DataSpec(path=str(data)))
    return calibration.build_calibration(
        dataset,
        store,
        CalibrationOptions(per_class=per_class, allow_short=kw.pop("allow_short", False)),
        seed=seed,
        **kw,
    )


@pytest.mark.slow  # generates 1000 classes of JPEGs (11 s)
def test_one_image_per_class_across_1000_classes(demo_1000: Path, tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    ref = _build(demo_1000 / "val", store)
    folder = store.directory(ref) / "images"
    files = sorted(folder.iterdir())
    assert len(files) == 1000
    doc = json.loads(store.path(ref, "calibration.json").read_text())
    assert doc["count"] == 1000 and sorted(e["class"] for e in doc["images"]) == list(range(1000))
    labels = dict(line.split() for line in (demo_1000 / "val_label.txt").read_text().splitlines())
    for entry in doc["images"]:
        assert int(labels[entry["source"]]) == entry["class"]
        assert (folder / entry["file"]).read_bytes() == (demo_1000 / "val" / entry["source"]).read_bytes()
    assert doc["suffixes"] == ["JPEG"] and doc["short_classes"] == {}


def test_same_seed_same_set_on_another_machine_listing_order(
    demo_1000: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _build(demo_1000 / "val", Store(tmp_path / "a"))
    again = _build(demo_1000 / "val", Store(tmp_path / "b"))
    assert again.digest == first.digest

    # "Another machine": the data at another path, listed by the file system in reverse order.
    moved = tmp_path / "elsewhere"
    shutil.copytree(demo_1000, moved)
    real_scandir = os.scandir

    class Reversed:
        def __init__(self, path):  # type: ignore[no-untyped-def]
            self.inner = real_scandir(path)

        def __enter__(self):  # type: ignore[no-untyped-def]
            return list(reversed(list(self.inner)))

        def __exit__(self, *exc):  # type: ignore[no-untyped-def]
            self.inner.close()

    monkeypatch.setattr(datasets.os, "scandir", Reversed)
    other = _build(moved / "val", Store(tmp_path / "c"))
    assert other.digest == first.digest


def test_different_seed_different_set(demo_1000: Path, tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    a = json.loads(store.path(_build(demo_1000 / "val", store, seed=0), "calibration.json").read_text())
    b = json.loads(store.path(_build(demo_1000 / "val", store, seed=1), "calibration.json").read_text())
    chosen_a = {e["source"] for e in a["images"]}
    chosen_b = {e["source"] for e in b["images"]}
    assert chosen_a != chosen_b
    assert 300 < len(chosen_a & chosen_b) < 700  # two candidates per class: about half agree


def test_short_classes_fail_with_their_list_unless_allowed(demo_small: Path, tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    with pytest.raises(DatasetError) as exc:
        _build(demo_small / "val", store, per_class=4)  # 12 classes x 3 images, 988 classes empty
    assert "1000 of 1000 classes have fewer than 4 image(s)" in exc.value.problem
    assert "0 (tench, Tinca tinca): 3" in exc.value.problem and "--allow-short" in (exc.value.fix or "")
    ref = _build(demo_small / "val", store, per_class=2, allow_short=True)
    doc = json.loads(store.path(ref, "calibration.json").read_text())
    assert doc["count"] == 24 and doc["requested"] == 2000
    assert len(doc["short_classes"]) == 988 and doc["short_classes"]["999"] == 0


def test_greyscale_and_cmyk_are_kept_as_files_with_their_mode(demo_small: Path, tmp_path: Path) -> None:
    store = Store(tmp_path / "s")
    ref = _build(demo_small / "val", store, per_class=3, allow_short=True)
    modes = sorted(e["mode"] for e in json.loads(store.path(ref, "calibration.json").read_text())["images"])
    assert modes.count("L") == 1 and modes.count("CMYK") == 1


def test_corrupt_chosen_image_fails_by_name_or_is_replaced_when_skipping(demo_small: Path, tmp_path: Path) -> None:
    data = tmp_path / "d"
    shutil.copytree(demo_small, data)
    dataset = datasets.scan(DataSpec(path=str(data / "val")))
    ranked, _ = calibration.select(dataset, 1, seed=0)
    victim = ranked[0][0].name  # the image class 0 would use
    (data / "val" / victim).write_bytes(b"\xff\xd8 broken")
    store = Store(tmp_path / "s")
    with pytest.raises(DatasetError, match=rf"1 image\(s\) in .* cannot be decoded:\n  - {victim}"):
        _build(data / "val", store, allow_short=True)
    assert store.digests() == [] or all(store.ref(d).kind != "calibration" for d in store.digests())
    ref = _build(data / "val", store, allow_short=True, skip_corrupt=True)
    doc = json.loads(store.path(ref, "calibration.json").read_text())
    assert victim in doc["skipped_corrupt"]
    assert [e["source"] for e in doc["images"] if e["class"] == 0] == [ranked[0][1].name]  # next in rank order
