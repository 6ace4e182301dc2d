"""ImageNet validation sets in both layouts, checked and identified.

- flat: ``val/ILSVRC2012_val_00000001.JPEG ...`` plus ``val_label.txt`` (``<file> <class>`` lines)
- synset: ``val/n01440764/*.JPEG``; class = the folder's ImageNet-1k id (`zooflow.imagenet`: n01443537,
  goldfish, is 1 whichever folders are present), or the id a ``--labels`` file gives it
  (``<synset> <class>`` lines)

Records are always in sorted relative-path order, so every stage sees the same order whatever
the file system lists. A dataset's identity is the SHA-256 of its layout, class count and one
``<name>\\t<size>\\t<label>`` line per image; every artifact made from it records it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import platformdirs
from pydantic import BaseModel, ConfigDict

from zooflow import imagenet, interrupts
from zooflow.config import DataSpec
from zooflow.errors import DatasetError
from zooflow.filehash import HashCache, Stamp, stamp
from zooflow.preprocess import load_rgb
from zooflow.store import ArtifactRef, Store

# What both decoders read: PIL (the model format) and OpenCV (vastai, dsp); a GIF is its first frame.
IMAGE_SUFFIXES = frozenset({".jpeg", ".jpg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"})
SYNSET_RE = imagenet.SYNSET_RE
LABEL_FILES = ("val_label.txt",)
NAME_FILES = ("imagenet.txt", "label.txt", "imagenet_classes.txt")
INDEX_STAGE_VERSION = "3"  # 2: records carry each image's SHA-256; 3: synset folders by ImageNet id
_SHOW = 10


class Record(NamedTuple):
    """One image: path relative to the dataset root (POSIX), class id, file size, content SHA-256.

    A tuple, not a pydantic model: a dataset holds one per image, and ImageNet has 50,000.
    """

    name: str
    label: int
    size: int
    sha256: str = ""

    def line(self) -> str:
        """The record's line in identities and shard keys."""
        return f"{self.name}\t{self.size}\t{self.label}\t{self.sha256}\n"


@dataclass(frozen=True)
class Dataset:
    """A scanned, validated dataset."""

    root: Path
    layout: Literal["flat", "synset"]
    records: tuple[Record, ...]
    num_classes: int
    class_names: tuple[str, ...] | None
    labels_file: Path | None
    synsets: tuple[str, ...] | None
    ignored: tuple[str, ...] = ()

    @property
    def identity(self) -> str:
        """SHA-256 over layout, class count and (name, size, label, content SHA-256) of every image."""
        digest = hashlib.sha256(f"{self.layout}\n{self.num_classes}\n".encode())
        for r in self.records:
            digest.update(r.line().encode())
        return digest.hexdigest()

    def by_class(self) -> dict[int, list[Record]]:
        """Records grouped by class id (each list in name order)."""
        groups: dict[int, list[Record]] = defaultdict(list)
        for record in self.records:
            groups[record.label].append(record)
        return dict(groups)

    def path(self, record: Record) -> Path:
        """The image file of a record."""
        return self.root / record.name

    def limited(self, limit: int | None) -> Dataset:
        """The first `limit` records in name order (the whole set for None)."""
        if limit is None or limit >= len(self.records):
            return self
        return Dataset(
            self.root,
            self.layout,
            self.records[:limit],
            self.num_classes,
            self.class_names,
            self.labels_file,
            self.synsets,
            self.ignored,
        )

    def summary(self) -> dict[str, Any]:
        """Small, JSON-able description (for manifests and the UI)."""
        return {
            "identity": self.identity,
            "layout": self.layout,
            "images": len(self.records),
            "classes_present": len({r.label for r in self.records}),
            "num_classes": self.num_classes,
        }


class DatasetHandle(BaseModel):
    """What the flow passes between data stages: the index artifact plus where the images are.

    Only the index digest identifies the data (see `cache_identity`): the same images at another
    path, or on another machine, hit the same caches.
    """

    model_config = ConfigDict(frozen=True)

    index: ArtifactRef
    root: str
    labels: str | None = None
    layout: Literal["flat", "synset"] = "flat"
    num_classes: int = 1000
    count: int = 0

    def cache_identity(self) -> dict[str, Any]:
        """The part of this handle that belongs in cache keys."""
        return {"dataset_index": self.index.digest}

    def open(self, store: Store) -> Dataset:
        """The dataset as the index recorded it (scanned and validated at the start of the run)."""
        doc = json.loads(store.path(self.index, "index.json").read_text())
        root = Path(self.root)
        if not root.is_dir():
            raise DatasetError(
                f"dataset folder not found: {root}", "the data moved since it was scanned: rerun the flow"
            )
        return Dataset(
            root=root,
            layout=self.layout,
            records=tuple(Record(*row) for row in doc["records"]),
            num_classes=self.num_classes,
            class_names=tuple(doc["class_names"]) if doc.get("class_names") else None,
            labels_file=Path(self.labels) if self.labels else None,
            synsets=tuple(doc["synsets"]) if doc.get("synsets") else None,
        )


def _listing(problems: list[str], title: str, items: list[str]) -> None:
    if items:
        shown = "; ".join(items[:_SHOW]) + (f"; ... ({len(items) - _SHOW} more)" if len(items) > _SHOW else "")
        problems.append(f"{title} ({len(items)}): {shown}")


def _find_beside(root: Path, names: tuple[str, ...]) -> Path | None:
    for folder in (root, root.parent):
        for name in names:
            if (folder / name).is_file():
                return folder / name
    return None


def unrecordable(name: str) -> str | None:
    """Why a file name cannot be recorded (index lines, datalists and the zoo's text format hold one name
    per line, fields split by tabs and spaces), or None: a control character, or bytes that are not UTF-8."""
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "holds a control character (a newline, a tab)"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid UTF-8"
    return None


def shown(name: str) -> str:
    """A file name as it can be printed and told apart: as it is if it can be recorded, else quoted with a
    newline as \\n and bytes that are not UTF-8 as \\xNN."""
    if unrecordable(name) is None:
        return name
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return repr(os.fsencode(name))[1:]
    return repr(name)


def _images_in(folder: Path, problems: list[str] | None = None) -> tuple[dict[str, Stamp], list[str]]:
    """Image file name -> stat, and the other files (streamed: no DirEntry list is kept). An image whose
    name cannot be recorded, or a link that leads nowhere or loops, is a problem named here."""
    images: dict[str, Stamp] = {}
    others: list[str] = []
    bad_names: list[str] = []
    bad_links: list[str] = []
    with os.scandir(folder) as entries:
        for entry in entries:
            is_image = Path(entry.name).suffix.lower() in IMAGE_SUFFIXES
            try:
                is_file = entry.is_file()
            except OSError as exc:  # a link that loops (ELOOP), or one we may not follow
                bad_links.append(f"{shown(entry.name)} ({exc.strerror})")
                continue
            if not is_file:
                if entry.is_symlink() and is_image:
                    bad_links.append(
                        f"{shown(entry.name)} (leads to {shown(os.readlink(entry.path))}, which does not exist)"
                    )
                continue
            if not is_image:
                others.append(entry.name)
                continue
            why = unrecordable(entry.name)
            if why is not None:
                bad_names.append(f"{shown(entry.name)} {why}")
                continue
            images[entry.name] = stamp(entry.stat())
    if problems is not None:
        _listing(problems, f"image names in {folder} that cannot be recorded: rename them", bad_names)
        _listing(problems, f"image links in {folder} that lead nowhere: fix or remove them", bad_links)
    return images, others


def detect_layout(root: Path) -> Literal["flat", "synset"]:
    """synset if the folder holds synset-named subfolders (n01440764 ...), else flat."""
    with os.scandir(root) as entries:
        subdirs = [e.name for e in entries if e.is_dir()]
    return "synset" if any(SYNSET_RE.match(d) for d in subdirs) else "flat"


def _read_names(path: Path, num_classes: int, problems: list[str]) -> tuple[str, ...] | None:
    names = [line.rstrip("\n") for line in read_lines(path, "class-names file") if line.strip()]
    if len(names) != num_classes:
        problems.append(
            f"class-names file {path} has {len(names)} names, expected {num_classes} (one per line, line = class id)"
        )
        return None
    return tuple(names)


def read_lines(path: Path, what: str) -> list[str]:
    """A text file's lines: UTF-8, a leading byte-order mark ignored; a bad byte is an error naming its line."""
    try:
        return path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise DatasetError(
            f"{what} {path} is not UTF-8 text: byte 0x{exc.object[exc.start]:02x} on line {line} cannot be decoded",
            "save it as UTF-8 (e.g. `iconv -f latin1 -t utf-8 FILE > FILE.utf8`), or fix that line",
        ) from None
    except OSError as exc:
        raise DatasetError(
            f"cannot read {what} {path}: {exc.strerror or exc}", "check the path and its permissions"
        ) from None


def _scan_flat(
    root: Path, labels_file: Path, num_classes: int, problems: list[str]
) -> tuple[list[Record], list[str], dict[str, Stamp]]:
    stats, others = _images_in(root, problems)
    labels: dict[str, int] = {}
    mentioned: set[str] = set()  # named by some line, even a bad one: reported under that line's problem
    malformed, missing, out_of_range, duplicates = [], [], [], []
    # 50,000 lines of val_label.txt are ~1.5 MB: read whole, so an undecodable byte is found up front
    for number, line in enumerate(read_lines(labels_file, "labels file"), start=1):
        parts = line.split()
        if not parts:
            continue
        mentioned.add(parts[0])
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            malformed.append(f"line {number}: {line.strip()[:60]!r}")
            continue
        name, label = parts[0], int(parts[1])
        if name in labels:
            duplicates.append(f"{name} (line {number})")
        elif not 0 <= label < num_classes:
            out_of_range.append(f"{name} -> {label} (line {number})")
        else:
            labels[name] = label
            if name not in stats:
                missing.append(f"{name} (line {number})")
    unlabelled = sorted(set(stats) - mentioned)
    _listing(problems, f"lines of {labels_file.name} that are not '<file> <class>'", malformed)
    _listing(problems, f"files named in {labels_file.name} but missing from {root}", missing)
    _listing(problems, f"labels outside 0..{num_classes - 1}", out_of_range)
    _listing(problems, f"files listed more than once in {labels_file.name}", duplicates)
    _listing(problems, f"images in {root} without a label in {labels_file.name}", unlabelled)
    records = [Record(name=n, label=labels[n], size=stats[n][0]) for n in sorted(stats) if n in labels]
    return records, others, {r.name: stats[r.name] for r in records}


def _synset_labels(path: Path, num_classes: int, problems: list[str]) -> dict[str, int]:
    """A ``--labels`` file for synset folders: ``<synset> <class>`` per line (it overrides ImageNet's ids)."""
    found: dict[str, int] = {}
    bad = []
    for number, line in enumerate(read_lines(path, "labels file"), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or not SYNSET_RE.match(parts[0]) or not parts[1].isdigit():
            bad.append(f"line {number}: {line.strip()[:60]!r}")
        elif not int(parts[1]) < num_classes:
            bad.append(f"line {number}: class {parts[1]} is outside 0..{num_classes - 1}")
        else:
            found[parts[0]] = int(parts[1])
    _listing(problems, f"lines of {path.name} that are not '<synset folder> <class>'", bad)
    return found


def _scan_synset(
    root: Path, num_classes: int, problems: list[str], labels_file: Path | None = None
) -> tuple[list[Record], tuple[str, ...], list[str], dict[str, Stamp]]:
    with os.scandir(root) as entries:
        items = list(entries)
    synsets = sorted(e.name for e in items if e.is_dir() and SYNSET_RE.match(e.name))
    stray_dirs = sorted(shown(e.name + "/") for e in items if e.is_dir() and not SYNSET_RE.match(e.name))
    stray_images = sorted(shown(e.name) for e in items if e.is_file() and Path(e.name).suffix.lower() in IMAGE_SUFFIXES)
    _listing(problems, f"folders in {root} that are not synsets (n########)", stray_dirs)
    _listing(problems, "images outside any synset folder (no class)", stray_images)
    if labels_file is not None:
        ids = _synset_labels(labels_file, num_classes, problems)
        whose = f"in {labels_file.name}"
    elif num_classes == len(imagenet.synsets()):
        ids, whose = imagenet.synset_ids(), "among ImageNet-1k's 1000 classes"
    else:
        ids, whose = {}, ""
        problems.append(
            f"synset folders with {num_classes} classes: no class ids for them (ImageNet-1k's list has 1000)"
        )
    unknown = [s for s in synsets if s not in ids]
    if whose:
        _listing(problems, f"synset folders with no class id {whose} (is it another dataset?)", unknown)
    records: list[Record] = []
    others: list[str] = []
    stats: dict[str, Stamp] = {}
    for synset in synsets:
        if synset not in ids:
            continue
        label = ids[synset]
        images, extra = _images_in(root / synset, problems)
        others += [f"{synset}/{o}" for o in extra]
        for name, st in images.items():
            records.append(Record(name=f"{synset}/{name}", label=label, size=st[0]))
            stats[f"{synset}/{name}"] = st
    records.sort(key=lambda r: r.name)
    return records, tuple(synsets), others, stats


def default_hash_cache() -> Path:
    """Where image hashes are cached when no store says otherwise."""
    return Path(platformdirs.user_cache_dir("zooflow")) / "file-hashes"


def scan(spec: DataSpec, *, hash_cache: Path | None = None, workers: int = 4) -> Dataset:
    """Scan and validate a dataset, with every image's SHA-256; every problem is reported at once with a fix.

    Image hashes come from the stat-stamped cache in `hash_cache` (default: the user's cache
    folder); ``spec.rehash`` re-hashes every image whatever its stamp.
    """
    if spec.path is None:
        raise DatasetError("no dataset given", "pass --data DIR (an ImageNet val folder), or --demo for generated data")
    root = Path(spec.path).expanduser()
    if not root.is_dir():
        raise DatasetError(
            f"dataset folder not found: {root}", "pass --data with the folder that holds the validation images"
        )
    layout = detect_layout(root) if spec.layout == "auto" else spec.layout
    problems: list[str] = []
    labels_file: Path | None = None
    synsets: tuple[str, ...] | None = None
    if layout == "flat":
        labels_file = Path(spec.labels).expanduser() if spec.labels else _find_beside(root, LABEL_FILES)
        if labels_file is None or not labels_file.is_file():
            where = f"{labels_file} does not exist" if labels_file else f"no val_label.txt in {root} or {root.parent}"
            raise DatasetError(
                f"flat dataset {root} needs a labels file: {where}",
                "pass --labels val_label.txt (lines '<file> <class>'), or use synset folders (n01440764/...)",
            )
        records, others, stats = _scan_flat(root, labels_file, spec.num_classes, problems)
    else:
        labels_file = Path(spec.labels).expanduser() if spec.labels else None
        if labels_file is not None and not labels_file.is_file():
            raise DatasetError(
                f"labels file {labels_file} does not exist",
                "for synset folders --labels is optional: lines '<synset folder> <class>' (default: ImageNet-1k's ids)",
            )
        records, synsets, others, stats = _scan_synset(root, spec.num_classes, problems, labels_file)
    names_file = Path(spec.names).expanduser() if spec.names else _find_beside(root, NAME_FILES)
    if spec.names and (names_file is None or not names_file.is_file()):
        problems.append(f"class-names file {spec.names} does not exist")
        names_file = None
    class_names = _read_names(names_file, spec.num_classes, problems) if names_file else None
    if class_names is None and not spec.names and spec.num_classes == len(imagenet.synsets()):
        class_names = imagenet.class_names()  # ImageNet-1k's, as mmcls spells them
    if not records and not problems:
        problems.append(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found in {root}")
    if problems:
        raise DatasetError(
            f"dataset {root} ({layout} layout) has {len(problems)} problem(s):\n  - " + "\n  - ".join(problems),
            "fix or remove the files named above (or correct the labels file), then run again",
        )
    cache = HashCache(hash_cache or default_hash_cache(), root)
    try:
        digests = cache.digests(stats, full=spec.rehash, workers=workers)
    except OSError as exc:
        raise DatasetError(
            f"cannot read image {exc.filename or root} while hashing the dataset: {exc.strerror or exc}",
            "check that the files are readable (and not being written), then run again",
        ) from None
    hashed = tuple(r._replace(sha256=digests[r.name]) for r in records)
    return Dataset(root, layout, hashed, spec.num_classes, class_names, labels_file, synsets, tuple(others))


def _decode_check(path: str) -> tuple[str, str | None, str | None]:
    try:
        _, mode = load_rgb(path)
    except Exception as exc:  # noqa: BLE001 - any decoder failure means the image is unusable
        return path, None, f"{type(exc).__name__}: {str(exc)[:120]}"
    return path, mode, None


@dataclass(frozen=True)
class ImageCheck:
    """Result of decoding every image: corrupt files by name, and image modes converted to RGB."""

    corrupt: dict[str, str]
    modes: dict[str, int]
    converted: dict[str, str]


def check_images(dataset: Dataset, *, workers: int = 1) -> ImageCheck:
    """Decode every image (in `workers` processes); report corrupt ones and non-RGB modes."""
    paths = [str(dataset.path(r)) for r in dataset.records]
    if workers > 1:
        with ProcessPoolExecutor(workers, initializer=interrupts.ignore_sigint) as pool:
            results = list(pool.map(_decode_check, paths, chunksize=64))
    else:
        results = [_decode_check(p) for p in paths]
    root = str(dataset.root) + os.sep
    corrupt = {p.removeprefix(root): err for p, _, err in results if err}
    modes = Counter(mode for _, mode, _ in results if mode)
    converted = {p.removeprefix(root): mode for p, mode, _ in results if mode and mode != "RGB"}
    return ImageCheck(corrupt, dict(modes), converted)


def corrupt_error(corrupt: dict[str, str], root: Path) -> DatasetError:
    """The error for undecodable images, listing them by name."""
    items = [f"{name} ({reason})" for name, reason in sorted(corrupt.items())]
    shown = "\n  - ".join(items[:_SHOW]) + (f"\n  - ... ({len(items) - _SHOW} more)" if len(items) > _SHOW else "")
    return DatasetError(
        f"{len(items)} image(s) in {root} cannot be decoded:\n  - {shown}",
        "replace or delete them (and their label lines), or pass --skip-corrupt to leave them out and record that",
    )


def publish_index(
    dataset: Dataset,
    store: Store,
    *,
    source: dict[str, Any] | None = None,
    inputs: dict[str, ArtifactRef] | None = None,
) -> ArtifactRef:
    """Store the dataset's index (records, identity; no paths) as a ``dataset-index`` artifact."""
    doc = {
        **dataset.summary(),
        "class_names": list(dataset.class_names) if dataset.class_names else None,
        "synsets": list(dataset.synsets) if dataset.synsets else None,
        "records": [list(r) for r in dataset.records],
    }
    with store.staging("dataset") as staged:
        (staged / "index.json").write_text(json.dumps(doc, separators=(",", ":")))
        return store.commit(
            staged,
            kind="dataset-index",
            name=f"datasets/{dataset.identity[:16]}",
            stage="dataset",
            stage_version=INDEX_STAGE_VERSION,
            params={"layout": dataset.layout, "num_classes": dataset.num_classes, **(source or {})},
            inputs=inputs,
            meta=dataset.summary(),
        )


def handle(dataset: Dataset, index: ArtifactRef) -> DatasetHandle:
    """A handle for the flow: the index artifact and where the images are on this machine."""
    return DatasetHandle(
        index=index,
        root=str(dataset.root),
        labels=str(dataset.labels_file) if dataset.labels_file else None,
        layout=dataset.layout,
        num_classes=dataset.num_classes,
        count=len(dataset.records),
    )
