"""npz stage: images -> one ``.npz`` per image, in shards, plus a datalist. Public loader: `read`.

Formats (the toolchain chooses; all store key ``input_0``, uint8, channel-first, uncompressed):

- ``model``: the seed's preprocessing, exactly (`zooflow.preprocess`): the resized, center-cropped
  image as uint8 (3, 224, 224). What the model receives is ``((x / 255) - mean) / std`` in
  float32, which `read` computes; it is bit-identical to torchvision's ``ToTensor`` +
  ``Normalize`` on the same file. Stored as uint8 it is exact and 4x smaller than float32.
- ``vastai``: what the zoo's ``image2npz`` writes, array for array: the image decoded as
  ``cv2.imread`` does (EXIF orientation applied), BGR->RGB, full resolution, uint8 (3, H, W);
  pre-resized on the host with OpenCV bilinear only when asked (``pre_resize``, recorded).
- ``dsp``: what the card's DSP op makes of that full-size image (`Transform.device_dsp`: fixed
  square OpenCV resize, crop, float16-rounded mean/std), stored like ``model``; the evaluation
  runs it through the fp32 reference to measure the preprocessing share of the device's gap.

Files mirror the dataset: ``ILSVRC2012_val_00000001.npz`` (flat) or ``n01440764/<stem>.npz``.

Sharding: records (sorted by name) are cut into shards of ``shard_size`` images. Each shard is
its own store artifact, memoised on its records and parameters, so an interrupted run resumes
at the first unfinished shard and shards can run anywhere (processes here, Dask or Prefect
workers elsewhere). The ``npz`` artifact is an index over the shards: ``index.json`` (format,
parameters, dataset identity, shard digests) and ``records.tsv`` (``index  name  label  shard
file`` per image, in dataset order). Later stages pair outputs with inputs by that index.

A datalist (`write_datalist`) lists one absolute npz path per line, as vamp expects; beside it
``<stem>.index.json`` holds the format, normalisation and (name, label) of every line, which
`read` uses.
"""

from __future__ import annotations

import hashlib
import io
import json
import multiprocessing
import os
import sys
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from zooflow import datasets, interrupts, provenance
from zooflow.config import NpzFormat
from zooflow.datasets import Dataset, Record
from zooflow.errors import DatasetError, WorkerError
from zooflow.preprocess import Transform, load_rgb
from zooflow.store import ArtifactRef, Store

STAGE = "npz"
STAGE_VERSION = "4"  # 2: shard keys hold each image's SHA-256; 3: vastai/dsp decode as cv2.imread;
# 4: the model format scales a 16-bit grey image to 8 bits as cv2.imread does (it clipped it nearly white)
LIBRARIES = ("pillow", "numpy", "opencv-python")
KEY = "input_0"
CROPPED = ("model", "dsp")  # formats that store the model-size uint8 crop and carry a `Transform`


class NpzParams(BaseModel):
    """Everything that determines the bytes of an npz file (and nothing else)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: NpzFormat
    transform: dict[str, Any] | None = None  # model format: `Transform.as_dict()`
    pre_resize: tuple[int, int] | None = None  # vastai: resize on the host to (height, width); dsp: measure that

    @classmethod
    def for_format(
        cls, fmt: NpzFormat, preprocess: dict[str, Any] | None, pre_resize: tuple[int, int] | None
    ) -> NpzParams:
        """Parameters for a format; the model format needs the model's preprocessing spec."""
        if fmt == "model":
            transform = Transform.from_spec(preprocess) if preprocess else Transform()
            return cls(format="model", transform=transform.as_dict())
        if fmt == "dsp":  # with `pre_resize`: also measures what host pre-resizing to it would change
            if not preprocess:
                raise DatasetError("the dsp format needs the model's preprocessing", "pass the ONNX artifact's spec")
            return cls(format="dsp", transform=Transform.device_dsp(preprocess).as_dict(), pre_resize=pre_resize)
        return cls(format="vastai", pre_resize=pre_resize)

    def transform_obj(self) -> Transform:
        """The exact transform of the model format."""
        assert self.transform is not None
        return Transform.from_dict(self.transform)


@dataclass(frozen=True)
class ShardSpec:
    """A contiguous slice of the dataset's records."""

    number: int
    first: int
    count: int


def plan(total: int, shard_size: int) -> list[ShardSpec]:
    """Cut `total` records into shards of `shard_size` (the last may be smaller)."""
    return [ShardSpec(i, first, min(shard_size, total - first)) for i, first in enumerate(range(0, total, shard_size))]


def npz_name(record_name: str) -> str:
    """The npz file of an image: same relative path, suffix ``.npz``."""
    stem, _, _ = record_name.rpartition(".")
    return f"{stem or record_name}.npz"


def encode(
    path: Path, params: NpzParams, transform: Transform | None, sha256: str = ""
) -> tuple[np.ndarray, str, float | None]:
    """The stored array of one image, the image's original mode, and for the dsp format with
    `pre_resize` how much host pre-resizing would change its crop (max abs uint8 step; else None).

    The model format decodes like torchvision's loader (PIL, no EXIF orientation); the vastai and
    dsp formats like the zoo's image2npz (``cv2.imread``: EXIF orientation applied, then BGR->RGB).
    With `sha256` (the content hash the dataset was scanned with), the bytes decoded are checked
    against it first: an image changed since the scan is an error, never encoded under the old key.
    """
    data = path.read_bytes()
    if sha256 and hashlib.sha256(data).hexdigest() != sha256:
        raise DatasetError(
            f"{path} changed since the dataset was scanned (its content no longer has the scanned SHA-256)",
            "run again: the dataset is rescanned and only the shards holding changed images are recomputed",
        )
    if params.format == "model":
        image, mode = load_rgb(io.BytesIO(data))
        assert transform is not None
        return transform.crop_uint8(image), mode, None
    rgb, mode = decode_like_cv2(data)
    if params.format == "dsp":
        assert transform is not None
        crop = transform.crop_uint8(rgb)
        if params.pre_resize is None:
            return crop, mode, None
        resized = transform.crop_uint8(_resize(rgb, params.pre_resize)).astype(np.int16)
        return crop, mode, float(np.abs(resized - crop.astype(np.int16)).max())
    if params.pre_resize is not None:  # an explicit option: the DSP's own resize then sees this size
        rgb = _resize(rgb, params.pre_resize)
    return np.ascontiguousarray(rgb.transpose(2, 0, 1)), mode, None


def _resize(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2

    height, width = size
    return np.asarray(cv2.resize(rgb, (width, height), interpolation=cv2.INTER_LINEAR), dtype=np.uint8)


def decode_like_cv2(data: bytes) -> tuple[np.ndarray, str]:
    """An image as ``cv2.imread`` + ``cvtColor(BGR2RGB)`` gives it (HWC uint8 RGB), and its original mode.

    PIL decodes everything in full first, so a truncated or damaged file is refused here as it is
    by the other formats (OpenCV would return the part it could read).
    """
    import cv2

    with Image.open(io.BytesIO(data)) as image:
        mode = image.mode
        image.load()
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)  # applies EXIF orientation, as imread
    if bgr is None:
        raise ValueError("OpenCV cannot decode it")
    return np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dtype=np.uint8), mode


def shard_key(records: list[Record], params: NpzParams) -> str:
    """Identity of a shard's output: its records, the parameters, stage and library versions."""
    digest = hashlib.sha256(
        json.dumps(
            {
                "stage": STAGE,
                "stage_version": STAGE_VERSION,
                "params": params.model_dump(mode="json"),
                "libraries": provenance.library_versions(*LIBRARIES),
            },
            sort_keys=True,
        ).encode()
    )
    for r in records:
        digest.update(r.line().encode())
    return "npz-shard-" + digest.hexdigest()


def build_shard(
    store: Store,
    root: Path,
    records: list[Record],
    first: int,
    params: NpzParams,
    *,
    skip_corrupt: bool = False,
) -> ArtifactRef:
    """Encode one shard into the store (or return it if already there). Records keep their global index."""
    key = shard_key(records, params)
    found = store.recall(key)
    if found is not None:
        return found
    transform = params.transform_obj() if params.format in CROPPED else None
    corrupt: dict[str, str] = {}
    modes: Counter[str] = Counter()
    check = params.format == "dsp" and params.pre_resize is not None  # what host pre-resizing would change
    effects: list[float] = []  # per image, from `encode`
    with store.staging(STAGE) as staged:
        rows = []
        for offset, record in enumerate(records):
            try:
                array, mode, effect = encode(root / record.name, params, transform, record.sha256)
            except DatasetError:
                raise
            except Exception as exc:  # noqa: BLE001 - any decoder failure means the image is unusable
                corrupt[record.name] = f"{type(exc).__name__}: {str(exc)[:120]}"
                continue
            modes[mode] += 1
            if effect is not None:
                effects.append(effect)
            target = staged / npz_name(record.name)
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "wb") as fh:
                np.savez(fh, input_0=array)  # KEY
            rows.append([first + offset, record.name, record.label, npz_name(record.name)])
        if corrupt and not skip_corrupt:
            raise datasets.corrupt_error(corrupt, root)
        extra = {"pre_resize_effect": effects} if check else {}
        (staged / "records.json").write_text(
            json.dumps(
                {"first": first, "records": rows, "skipped_corrupt": corrupt, "modes": dict(modes), **extra},
                sort_keys=True,
            )
        )
        ref = store.commit(
            staged,
            kind="npz-shard",
            stage=STAGE,
            stage_version=STAGE_VERSION,
            params={**params.model_dump(mode="json"), "first": first, "count": len(records)},
            meta={"first": first, "count": len(rows), "skipped_corrupt": len(corrupt), "modes": dict(modes)},
            libraries=provenance.library_versions(*LIBRARIES),
        )
    return store.memoize(key, ref)


def _shard_worker(
    store_url: str, root: str, rows: list[tuple[str, int, int, str]], first: int, params: dict[str, Any], skip: bool
) -> str:
    """Process-pool entry point (arguments are plain data so they pickle cheaply)."""
    records = [Record(*row) for row in rows]
    ref = build_shard(Store(store_url), Path(root), records, first, NpzParams(**params), skip_corrupt=skip)
    return ref.digest


def assemble(
    dataset: Dataset,
    shards: list[ArtifactRef],
    params: NpzParams,
    store: Store,
    *,
    inputs: dict[str, ArtifactRef] | None = None,
) -> ArtifactRef:
    """The ``npz`` artifact: an index over the shards (records streamed to ``records.tsv``)."""
    skipped: dict[str, str] = {}
    modes: Counter[str] = Counter()
    total = 0
    effects: list[float] = []
    with store.staging(STAGE) as staged:
        with open(staged / "records.tsv", "w", encoding="utf-8") as out:
            out.write("index\tname\tlabel\tshard\tfile\n")
            for number, shard in enumerate(shards):
                doc = json.loads(store.path(shard, "records.json").read_text())
                skipped.update(doc["skipped_corrupt"])
                modes.update(doc["modes"])
                effects += doc.get("pre_resize_effect", [])
                for index, name, label, file in doc["records"]:
                    out.write(f"{index}\t{name}\t{label}\t{number}\t{file}\n")
                    total += 1
        index = {
            "format": params.format,
            "params": params.model_dump(mode="json"),
            "key": KEY,
            "dataset": dataset.summary(),
            "count": total,
            "shards": [{"digest": s.digest, "first": s.meta["first"], "count": s.meta["count"]} for s in shards],
            "skipped_corrupt": skipped,
            "converted_to_rgb": {m: n for m, n in sorted(modes.items()) if m != "RGB"},
        }
        if params.format == "dsp" and params.pre_resize is not None:
            index["pre_resize_effect"] = {
                "size": list(params.pre_resize),
                "images": len(effects),
                "unchanged": sum(1 for e in effects if e == 0),
                "max_abs_diff": max(effects, default=0.0),
                "mean_max_abs_diff": float(np.mean(effects)) if effects else 0.0,
            }
        (staged / "index.json").write_text(json.dumps(index, indent=1, sort_keys=True))
        return store.commit(
            staged,
            kind="npz",
            name=f"datasets/{dataset.identity[:16]}/npz-{params.format}",
            stage=STAGE,
            stage_version=STAGE_VERSION,
            params=params.model_dump(mode="json"),
            inputs={**(inputs or {}), **{f"shard-{i:04d}": s for i, s in enumerate(shards)}},
            meta={
                "format": params.format,
                "count": total,
                "shards": len(shards),
                "dataset": dataset.identity,
                "skipped_corrupt": len(skipped),
                "converted_to_rgb": index["converted_to_rgb"],
            },
            libraries=provenance.library_versions(*LIBRARIES),
        )


def build_npz(
    dataset: Dataset,
    store: Store,
    params: NpzParams,
    *,
    shard_size: int = 1000,
    workers: int = 1,
    skip_corrupt: bool = False,
    show_progress: bool | None = None,
    inputs: dict[str, ArtifactRef] | None = None,
) -> ArtifactRef:
    """All shards (finished ones reused, the rest in `workers` processes), then the index artifact.

    A shard that fails (corrupt images) does not stop the others: they are stored, and one
    error lists every problem. A worker that dies (SIGKILL, out of memory) ends the run with a
    `WorkerError`; what finished is kept and the next run resumes from it.
    """
    specs = plan(len(dataset.records), shard_size)
    done: dict[int, ArtifactRef] = {}
    for spec in specs:
        found = store.recall(shard_key(list(dataset.records[spec.first : spec.first + spec.count]), params))
        if found is not None:
            done[spec.number] = found
    pending = [s for s in specs if s.number not in done]
    show = sys.stderr.isatty() if show_progress is None else show_progress
    progress = Progress(
        TextColumn("[bold]npz[/] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        disable=not show,
    )
    errors: dict[int, DatasetError] = {}
    with progress:
        task = progress.add_task(f"{params.format} ({len(done)} shard(s) reused)", total=len(dataset.records))
        progress.update(task, advance=sum(s.count for s in specs if s.number in done))
        if pending and workers > 1:
            context = multiprocessing.get_context("spawn")  # no fork: callers may hold threads (Prefect) or torch
            pool_size = min(workers, len(pending))
            with ProcessPoolExecutor(pool_size, mp_context=context, initializer=interrupts.ignore_sigint) as pool:
                futures: dict[Future[str], ShardSpec] = {}
                for spec in pending:
                    rows = [
                        (r.name, r.label, r.size, r.sha256)
                        for r in dataset.records[spec.first : spec.first + spec.count]
                    ]
                    args = (store.url, str(dataset.root), rows, spec.first, params.model_dump(), skip_corrupt)
                    futures[pool.submit(_shard_worker, *args)] = spec
                remaining = set(futures)
                while remaining:
                    finished, remaining = wait(remaining, return_when=FIRST_COMPLETED)
                    for future in finished:
                        spec = futures[future]
                        try:
                            done[spec.number] = store.ref(future.result())
                        except BrokenProcessPool:
                            raise WorkerError(
                                f"an npz worker process died (killed or out of memory) after {len(done)} of {len(specs)} "
                                "shard(s) finished; they are kept in the store",
                                "run the same command again: finished shards are reused and the rest are computed",
                            ) from None
                        except DatasetError as exc:
                            errors[spec.number] = exc
                        progress.update(task, advance=spec.count)
        else:
            for spec in pending:
                records = list(dataset.records[spec.first : spec.first + spec.count])
                try:
                    done[spec.number] = build_shard(
                        store, dataset.root, records, spec.first, params, skip_corrupt=skip_corrupt
                    )
                except DatasetError as exc:
                    errors[spec.number] = exc
                progress.update(task, advance=spec.count)
    if errors:
        raise DatasetError(
            f"{len(errors)} of {len(specs)} npz shard(s) failed ({len(done)} finished and kept):\n"
            + "\n".join(e.problem for _, e in sorted(errors.items())),
            next(iter(errors.values())).fix,
        )
    return assemble(dataset, [done[s.number] for s in specs], params, store, inputs=inputs)


# ---------------------------------------------------------------------------- datalists, loading
def records(store: Store, npz: ArtifactRef) -> Iterator[tuple[int, str, int, str, str]]:
    """(index, name, label, shard digest, file) of every record, in dataset order."""
    shards = [s["digest"] for s in json.loads(store.path(npz, "index.json").read_text())["shards"]]
    with open(store.path(npz, "records.tsv"), encoding="utf-8") as fh:
        next(fh)
        for line in fh:
            index, name, label, shard, file = line.rstrip("\n").split("\t")
            yield int(index), name, int(label), shards[int(shard)], file


def sidecar_path(datalist: Path) -> Path:
    """Where a datalist's index (format, names, labels) lives: ``<stem>.index.json`` beside it."""
    return datalist.with_name(datalist.stem + ".index.json")


def write_datalist(store: Store, npz: ArtifactRef, datalist: Path, *, root: Path | None = None) -> Path:
    """Write a datalist of absolute npz paths: the files in the store, or under `root` (a copy of them
    made with the same relative names, e.g. by ``zooflow npz --out``); its index goes beside it."""
    index = json.loads(store.path(npz, "index.json").read_text())
    datalist = datalist.expanduser().resolve()
    datalist.parent.mkdir(parents=True, exist_ok=True)
    folders: dict[str, Path] = {}
    entries = []
    with open(datalist, "w", encoding="utf-8") as out:
        for _, name, label, shard, file in records(store, npz):
            if root is not None:
                source = root.expanduser().resolve() / file
            else:
                if shard not in folders:
                    folders[shard] = store.directory(shard)
                source = folders[shard] / file
            out.write(f"{source}\n")
            entries.append([name, label])
    sidecar = {
        "format": index["format"],
        "params": index["params"],
        "key": KEY,
        "npz_digest": npz.digest,
        "records": entries,
    }
    sidecar_path(datalist).write_text(json.dumps(sidecar))
    return datalist


def read(datalist: str | os.PathLike[str]) -> Iterator[tuple[str, int | None, np.ndarray]]:
    """Yield ``(name, label, array)`` for every line of a datalist, in order.

    For the ``model`` format `array` is what the model receives: float32 (3, H, W), normalised
    exactly as torchvision does. For ``vastai`` it is the stored uint8 (3, H, W). A datalist
    without zooflow's index beside it (e.g. one made by the zoo's scripts) yields the stored
    arrays with the file stem as name and no label.
    """
    path = Path(datalist)
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    meta = json.loads(sidecar_path(path).read_text()) if sidecar_path(path).is_file() else None
    if meta is not None and len(meta["records"]) != len(lines):
        raise DatasetError(
            f"{path} has {len(lines)} lines but its index {sidecar_path(path).name} describes {len(meta['records'])}",
            "regenerate the datalist with `zooflow npz` (it was edited or mixed with another one)",
        )
    transform = NpzParams(**meta["params"]).transform_obj() if meta and meta["format"] in CROPPED else None
    for number, line in enumerate(lines):
        with np.load(line) as data:
            array = data[KEY]
        name, label = (meta["records"][number][0], meta["records"][number][1]) if meta else (Path(line).stem, None)
        yield name, label, (transform.normalize(array) if transform is not None else array)
