"""npz stage: exact model format, image2npz-style vastai format, shards, datalists, the loader."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from zooflow import datasets, npz
from zooflow.config import DataSpec
from zooflow.demo import write_demo_dataset
from zooflow.errors import DatasetError
from zooflow.store import Store

MODEL = npz.NpzParams.for_format("model", None, None)


def _dataset(path: Path) -> datasets.Dataset:
    return datasets.scan(DataSpec(path=str(path)))


def test_model_format_reads_back_bit_identical_to_torchvision(demo_small: Path, tmp_path: Path) -> None:
    import torchvision.transforms as T

    reference = T.Compose(
        [T.Resize(256), T.CenterCrop(224), T.ToTensor(), T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])]
    )
    data = _dataset(demo_small / "val")
    store = Store(tmp_path / "s")
    ref = npz.build_npz(data, store, MODEL, shard_size=10, workers=2, show_progress=False)
    assert ref.meta["count"] == 36 and ref.meta["shards"] == 4
    assert ref.meta["converted_to_rgb"] == {"CMYK": 1, "L": 1}
    datalist = npz.write_datalist(store, ref, tmp_path / "out" / "datalist.txt")
    rows = list(npz.read(datalist))
    assert [(n, lab) for n, lab, _ in rows] == [(r.name, r.label) for r in data.records]  # dataset order
    for name, _, array in rows:
        with open(data.root / name, "rb") as fh:
            expected = reference(Image.open(fh).convert("RGB")).numpy()
        assert array.dtype == np.float32 and np.array_equal(array, expected), name
    stored = np.load(datalist.read_text().splitlines()[0])
    assert (
        list(stored.keys()) == ["input_0"]
        and stored["input_0"].dtype == np.uint8
        and stored["input_0"].shape == (3, 224, 224)
    )


def _image2npz_array(path: Path) -> np.ndarray:
    """The zoo's image2npz, step for step (an independent implementation): cv2.imread, BGR->RGB, HWC->CHW."""
    import cv2

    return np.array(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)).transpose(2, 0, 1)


def _image2npz_bytes(path: Path) -> bytes:
    """What image2npz's ``np.savez(path, input_0=...)`` stores for the image: the .npy member's bytes."""
    import io
    import zipfile

    buffer = io.BytesIO()
    np.savez(buffer, input_0=_image2npz_array(path))
    with zipfile.ZipFile(buffer) as zf:
        return zf.read("input_0.npy")


def test_vastai_npz_is_bit_identical_to_image2npz_on_real_photographs(tmp_path: Path) -> None:
    """Colour photos, a greyscale one and one whose EXIF says "rotate 90" (cv2.imread applies it)."""
    import zipfile

    from tests.support.images import photo

    val = tmp_path / "val"
    files = {}
    from zooflow import imagenet

    for i, name in enumerate(("astronaut", "chelsea", "coffee", "camera", "rocket")):
        folder = val / imagenet.synsets()[i * 100]
        folder.mkdir(parents=True)
        image = photo(name)
        if name == "camera":
            image = image.convert("L")  # a greyscale JPEG, as some ImageNet files are
        exif = Image.Exif()
        if name == "rocket":
            exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
        files[name] = folder / f"{name}.JPEG"
        image.save(files[name], quality=90, exif=exif.tobytes())
    assert Image.open(files["camera"]).mode == "L"
    data = _dataset(val)
    store = Store(tmp_path / "s")
    ref = npz.build_npz(data, store, npz.NpzParams.for_format("vastai", None, None), shard_size=2, show_progress=False)
    found = {}
    for _, name, _, shard, file in npz.records(store, ref):
        assert file == f"{Path(name).parent}/{Path(name).stem}.npz"  # <synset>/<stem>.npz, as image2npz
        with zipfile.ZipFile(store.directory(shard) / file) as zf:
            assert zf.namelist() == ["input_0.npy"]
            assert zf.getinfo("input_0.npy").compress_type == zipfile.ZIP_STORED  # uncompressed, as np.savez
            found[Path(name).stem] = zf.read("input_0.npy")
    for name, path in files.items():
        assert found[name] == _image2npz_bytes(path), name  # header, dtype, shape, order and every byte
    import io

    height, width = np.asarray(photo("rocket")).shape[:2]
    assert np.load(io.BytesIO(found["rocket"])).shape == (3, width, height)  # turned upright, as cv2.imread does
    assert np.load(io.BytesIO(found["camera"])).shape[0] == 3  # greyscale read as three equal channels


def test_vastai_format_is_full_size_rgb_chw_mirroring_synset_folders(tmp_path: Path) -> None:
    write_demo_dataset(tmp_path / "d", classes=3, per_class=2, layout="synset", seed=4)
    data = _dataset(tmp_path / "d" / "val")
    store = Store(tmp_path / "s")
    ref = npz.build_npz(data, store, npz.NpzParams.for_format("vastai", None, None), show_progress=False)
    out = tmp_path / "out"
    for _, _, _, shard, file in npz.records(store, ref):  # a copy of the files, as `zooflow npz --out` makes
        (out / file).parent.mkdir(parents=True, exist_ok=True)
        (out / file).write_bytes((store.directory(shard) / file).read_bytes())
    datalist = npz.write_datalist(store, ref, out / "npz_datalist.txt", root=out)
    lines = datalist.read_text().splitlines()
    assert all(Path(line).is_absolute() and line.startswith(str(out)) for line in lines)
    assert [str(Path(line).relative_to(out)) for line in lines] == [npz.npz_name(r.name) for r in data.records]
    for (name, label, array), record in zip(npz.read(datalist), data.records, strict=True):
        expected = _image2npz_array(data.root / record.name)
        assert (name, label) == (record.name, record.label)
        assert array.dtype == np.uint8 and np.array_equal(array, expected)


def test_vastai_pre_resize_to_the_dsp_input(demo_small: Path, tmp_path: Path) -> None:
    import cv2

    data = _dataset(demo_small / "val").limited(3)
    store = Store(tmp_path / "s")
    ref = npz.build_npz(data, store, npz.NpzParams.for_format("vastai", None, (256, 256)), show_progress=False)
    datalist = npz.write_datalist(store, ref, tmp_path / "dl.txt")
    for (_, _, array), record in zip(npz.read(datalist), data.records, strict=True):
        rgb = _image2npz_array(data.root / record.name).transpose(1, 2, 0)
        assert array.shape == (3, 256, 256)
        assert np.array_equal(array, cv2.resize(rgb, (256, 256), interpolation=cv2.INTER_LINEAR).transpose(2, 0, 1))


def test_finished_shards_are_reused_and_the_result_is_identical(demo_small: Path, tmp_path: Path) -> None:
    data = _dataset(demo_small / "val")
    store = Store(tmp_path / "s")
    first = npz.build_npz(data, store, MODEL, shard_size=10, show_progress=False)
    shard_digests = [s["digest"] for s in json.loads(store.path(first, "index.json").read_text())["shards"]]
    # Lose the last shard (as if the run had crashed before it finished); keep the others.
    shutil.rmtree(store.object_dir(shard_digests[-1]))
    kept = {d: os.stat(store.object_dir(d) + "/manifest.json").st_mtime_ns for d in shard_digests[:-1]}
    again = npz.build_npz(data, store, MODEL, shard_size=10, show_progress=False)
    assert again.digest == first.digest
    assert {d: os.stat(store.object_dir(d) + "/manifest.json").st_mtime_ns for d in kept} == kept
    assert store.verify(shard_digests[-1]) == []
    elsewhere = npz.build_npz(data, Store(tmp_path / "fresh"), MODEL, shard_size=10, workers=2, show_progress=False)
    assert elsewhere.digest == first.digest  # same bytes whatever the parallelism or store


def test_corrupt_image_fails_by_name_keeps_other_shards_or_is_skipped(demo_small: Path, tmp_path: Path) -> None:
    copy = tmp_path / "d"
    shutil.copytree(demo_small, copy)
    victim = sorted((copy / "val").glob("*.JPEG"))[25]
    victim.write_bytes(victim.read_bytes()[:1500])
    data = _dataset(copy / "val")
    store = Store(tmp_path / "s")
    with pytest.raises(DatasetError) as exc:
        npz.build_npz(data, store, MODEL, shard_size=10, show_progress=False)
    assert "1 of 4 npz shard(s) failed (3 finished and kept)" in exc.value.problem
    assert victim.name in exc.value.problem and "--skip-corrupt" in (exc.value.fix or "")
    assert sum(store.ref(d).kind == "npz-shard" for d in store.digests()) == 3
    ref = npz.build_npz(data, store, MODEL, shard_size=10, skip_corrupt=True, show_progress=False)
    index = json.loads(store.path(ref, "index.json").read_text())
    assert ref.meta["count"] == 35 and list(index["skipped_corrupt"]) == [victim.name]
    names = [name for _, name, *_ in npz.records(store, ref)]
    assert victim.name not in names and len(names) == 35


def test_read_without_index_and_with_a_mismatched_index(demo_small: Path, tmp_path: Path) -> None:
    data = _dataset(demo_small / "val").limited(4)
    store = Store(tmp_path / "s")
    ref = npz.build_npz(data, store, MODEL, show_progress=False)
    datalist = npz.write_datalist(store, ref, tmp_path / "dl.txt")
    npz.sidecar_path(datalist).rename(tmp_path / "kept.json")
    rows = list(npz.read(datalist))  # a zoo-made datalist: no labels, raw stored arrays
    assert [(n, lab) for n, lab, _ in rows] == [(Path(r.name).stem, None) for r in data.records]
    assert rows[0][2].dtype == np.uint8
    (tmp_path / "kept.json").rename(npz.sidecar_path(datalist))
    datalist.write_text("\n".join(datalist.read_text().splitlines()[:3]) + "\n")
    with pytest.raises(DatasetError, match=r"has 3 lines but its index dl\.index\.json describes 4"):
        list(npz.read(datalist))


def test_plan_covers_every_record_once() -> None:
    shards = npz.plan(2503, 1000)
    assert [(s.first, s.count) for s in shards] == [(0, 1000), (1000, 1000), (2000, 503)]
    assert npz.plan(0, 1000) == []
