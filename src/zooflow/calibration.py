"""Calibration stage: exactly `per_class` images from every class, chosen reproducibly.

Choice: within each class, images are ranked by ``sha256(f"{seed}\\0{name}")`` and the first
`per_class` are taken. That depends only on the seed and the file names: the same seed gives
the same set on any machine, whatever order the file system lists files in, and whatever NumPy
version is installed (whose random streams may change between releases).

Output: a flat folder of the chosen image files, byte for byte (what ``vamc`` reads), plus
``calibration.json`` with file name, class and SHA-256 of every image.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from typing import Any

from zooflow import datasets
from zooflow.config import CalibrationOptions
from zooflow.datasets import Dataset, Record
from zooflow.errors import DatasetError
from zooflow.preprocess import load_rgb
from zooflow.store import ArtifactRef, Store, sha256_file

STAGE = "calibration"
STAGE_VERSION = "2"  # 2: the manifest and calibration.json record the class ids present


def rank(seed: int, name: str) -> str:
    """The sort key that decides which images of a class are chosen."""
    return hashlib.sha256(f"{seed}\0{name}".encode()).hexdigest()


def select(dataset: Dataset, per_class: int, seed: int) -> tuple[dict[int, list[Record]], dict[int, int]]:
    """Ranked candidates per class (all of them, best first) and the classes with too few images."""
    groups = dataset.by_class()
    ranked = {
        label: sorted(groups.get(label, []), key=lambda r: rank(seed, r.name)) for label in range(dataset.num_classes)
    }
    short = {label: len(items) for label, items in ranked.items() if len(items) < per_class}
    return ranked, short


def _short_error(short: dict[int, int], per_class: int, dataset: Dataset) -> DatasetError:
    names = dataset.class_names
    items = [f"{label}{f' ({names[label]})' if names else ''}: {have}" for label, have in sorted(short.items())]
    shown = "; ".join(items[:20]) + (f"; ... ({len(items) - 20} more)" if len(items) > 20 else "")
    return DatasetError(
        f"{len(short)} of {dataset.num_classes} classes have fewer than {per_class} image(s) for calibration "
        f"(class: images) {shown}",
        "add images for those classes, lower --per-class, or pass --allow-short to accept a short set (recorded)",
    )


def build_calibration(
    dataset: Dataset,
    store: Store,
    options: CalibrationOptions,
    *,
    seed: int,
    skip_corrupt: bool = False,
    inputs: dict[str, ArtifactRef] | None = None,
) -> ArtifactRef:
    """Choose, decode-check and copy the calibration images into a ``calibration`` artifact."""
    ranked, short = select(dataset, options.per_class, seed)
    if short and not options.allow_short:
        raise _short_error(short, options.per_class, dataset)
    chosen: list[tuple[Record, str]] = []
    corrupt: dict[str, str] = {}
    for label in range(dataset.num_classes):
        taken = 0
        for record in ranked[label]:
            if taken == options.per_class:
                break
            try:
                _, mode = load_rgb(dataset.path(record))
            except Exception as exc:  # noqa: BLE001 - any decoder failure means the image is unusable
                corrupt[record.name] = f"{type(exc).__name__}: {str(exc)[:120]}"
                continue
            chosen.append((record, mode))
            taken += 1
    if corrupt and not skip_corrupt:
        raise datasets.corrupt_error(corrupt, dataset.root)
    counts = dict.fromkeys(range(dataset.num_classes), 0)
    for record, _ in chosen:
        counts[record.label] += 1
    actually_short = {label: n for label, n in counts.items() if n < options.per_class}
    if actually_short and not options.allow_short:
        raise _short_error(actually_short, options.per_class, dataset)

    with store.staging(STAGE) as staged:
        folder = staged / "images"
        folder.mkdir()
        basenames = [r.name.rsplit("/", 1)[-1] for r, _ in chosen]
        clash = len(set(basenames)) != len(basenames)
        entries: list[dict[str, Any]] = []
        for (record, mode), base in zip(chosen, basenames, strict=True):
            target = record.name.replace("/", "_") if clash else base  # vamc reads one flat folder
            shutil.copyfile(dataset.path(record), folder / target)
            copied = sha256_file(folder / target)
            if record.sha256 and copied != record.sha256:
                raise DatasetError(
                    f"{dataset.path(record)} changed since the dataset was scanned",
                    "run again: the dataset is rescanned and the calibration set is made from what is there now",
                )
            entries.append(
                {
                    "file": target,
                    "source": record.name,
                    "class": record.label,
                    "sha256": copied,
                    "mode": mode,
                }
            )
        doc = {
            "dataset": dataset.summary(),
            "seed": seed,
            "per_class": options.per_class,
            "count": len(entries),
            "requested": options.per_class * dataset.num_classes,
            "short_classes": {str(k): v for k, v in sorted(actually_short.items())},
            "classes": sorted({e["class"] for e in entries}),  # the class ids the set holds
            "skipped_corrupt": corrupt,
            "suffixes": sorted({e["file"].rsplit(".", 1)[-1] for e in entries}),
            "images": entries,
        }
        (staged / "calibration.json").write_text(json.dumps(doc, indent=1, sort_keys=True))
        return store.commit(
            staged,
            kind="calibration",
            name=f"datasets/{dataset.identity[:16]}/calibration-{options.per_class}pc-seed{seed}",
            stage=STAGE,
            stage_version=STAGE_VERSION,
            params={
                "per_class": options.per_class,
                "seed": seed,
                "allow_short": options.allow_short,
                "skip_corrupt": skip_corrupt,
            },
            inputs=inputs,
            meta={
                "count": len(entries),
                "requested": doc["requested"],
                "short_classes": len(actually_short),
                "classes": doc["classes"],
                "skipped_corrupt": len(corrupt),
                "dataset": dataset.identity,
                "suffixes": doc["suffixes"],
            },
        )
