"""The labelled inputs and how outputs pair with them: labels files, datalists, vamp output folders.

Pairing is by record index *and* name: any count, index or name mismatch is an `EvaluationError`,
never a silent shift or a truncating ``zip`` (vastai-toolchain.md section 6).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zooflow.errors import ZooflowError
from zooflow.store import ArtifactRef, Store


class EvaluationError(ZooflowError):
    """Outputs cannot be scored: they do not pair with the inputs, or hold NaN."""


# ------------------------------------------------------------------------------------ pairing
@dataclass(frozen=True)
class Truth:
    """The labelled inputs, in record order: what outputs are paired against."""

    names: list[str]
    labels: np.ndarray  # int64, one per record

    def __post_init__(self) -> None:
        if len(self.names) != len(self.labels):
            raise EvaluationError(f"{len(self.names)} names but {len(self.labels)} labels", "rebuild the datalist")


def pair(index: np.ndarray, names: Sequence[str], rows: np.ndarray, truth: Truth) -> np.ndarray:
    """`rows` reordered to the truth's record order, after checking count, indices and names agree."""
    if len(index) != len(truth.names) or len(names) != len(truth.names) or len(rows) != len(truth.names):
        raise EvaluationError(
            f"{len(rows)} outputs ({len(names)} names) for {len(truth.names)} labelled inputs",
            "outputs and inputs are paired one to one; rerun the run stage over the same npz/datalist",
        )
    index = np.asarray(index, dtype=np.int64)
    order = np.argsort(index, kind="stable")
    if not np.array_equal(index[order], np.arange(len(index))):
        dup = np.flatnonzero(np.diff(index[order]) == 0)
        problem = f"record index {int(index[order][dup[0]])} appears twice" if len(dup) else "indices have gaps"
        raise EvaluationError(
            f"output indices are not 0..{len(index) - 1}: {problem}", "the outputs belong to another input list"
        )
    for position in order:
        got, want = names[position], truth.names[int(index[position])]
        if image_stem(got) != image_stem(want):
            raise EvaluationError(
                f"output for record {int(index[position])} is named {got!r} but that input is {want!r}",
                "outputs and inputs come from different lists; pair them by rerunning over the same datalist",
            )
    return np.asarray(rows)[order]


def image_stem(name: str) -> str:
    """Image identity across formats: ``n01440764/ILSVRC2012_val_00000293.JPEG`` -> ``ILSVRC2012_val_00000293``."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    return base.rsplit(".", 1)[0] if "." in base else base


# -------------------------------------------------------------------------- reading inputs/outputs
def truth_from_npz(store: Store, npz: ArtifactRef) -> Truth:
    """Names and labels of an npz artifact's records, in record order."""
    from zooflow import npz as npz_mod

    names, labels = [], []
    for position, (index, name, label, _, _) in enumerate(npz_mod.records(store, npz)):
        if index != position:
            raise EvaluationError(f"npz records.tsv is out of order at line {position + 1}", "rebuild the npz stage")
        names.append(name)
        labels.append(label)
    return Truth(names=names, labels=np.asarray(labels, dtype=np.int64))


def _lines(path: Path, what: str) -> list[str]:
    """A text file's lines (UTF-8, BOM ignored); a bad byte is an `EvaluationError` naming its line."""
    from zooflow.datasets import read_lines
    from zooflow.errors import DatasetError

    try:
        return read_lines(path, what)
    except DatasetError as exc:
        raise EvaluationError(exc.problem, exc.fix) from None


def read_labels(path: Path) -> dict[str, int]:
    """``val_label.txt``: ``<file name> <class id>`` per line, keyed by image stem."""
    if not path.is_file():
        raise EvaluationError(f"labels file not found: {path}", "pass --labels with val_label.txt (`NAME CLASS_ID`)")
    labels: dict[str, int] = {}
    for number, line in enumerate(_lines(path, "labels file"), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise EvaluationError(
                f"{path}:{number}: expected `FILE CLASS_ID`, got {line.strip()!r}", "fix or regenerate the labels file"
            )
        labels[image_stem(parts[0])] = int(parts[1])
    return labels


def truth_from_datalist(datalist: Path, labels_file: Path | None) -> Truth:
    """Names (npz stems, in line order) and labels from a labels file or zooflow's datalist index."""
    from zooflow import npz as npz_mod

    if not datalist.is_file():
        raise EvaluationError(f"datalist not found: {datalist}", "pass the datalist the outputs were produced from")
    lines = [line.strip() for line in _lines(datalist, "datalist") if line.strip()]
    sidecar = npz_mod.sidecar_path(datalist)
    if labels_file is None:
        if not sidecar.is_file():
            raise EvaluationError(
                f"no labels for {datalist}", "pass --labels val_label.txt (the datalist has no zooflow index beside it)"
            )
        records = json.loads(sidecar.read_text())["records"]
        if len(records) != len(lines):
            raise EvaluationError(f"{datalist} and its index {sidecar.name} differ in length", "regenerate both")
        return Truth(names=[r[0] for r in records], labels=np.asarray([r[1] for r in records], dtype=np.int64))
    table = read_labels(labels_file)
    names = lines  # paths as listed: pairing uses their stems, the text export prints them whole
    missing = [n for n in names if image_stem(n) not in table]
    if missing:
        raise EvaluationError(
            f"{len(missing)} datalist entries have no label in {labels_file} (first: {missing[0]})",
            "use the labels file of the same image set",
        )
    return Truth(names=names, labels=np.asarray([table[image_stem(n)] for n in names], dtype=np.int64))


def read_vamp_folder(folder: Path, count: int) -> np.ndarray:
    """vamp's ``output_%06d.npz`` files as (count, classes), paired by line index; a stale or missing file is an error."""
    from zooflow.toolchains.base import ToolError
    from zooflow.toolchains.vastai import pair_outputs

    if not folder.is_dir():
        raise EvaluationError(f"outputs folder not found: {folder}", "pass --outputs with vamp's --path_output folder")
    try:
        files = pair_outputs(folder, count)
    except ToolError as exc:
        raise EvaluationError(exc.problem, exc.fix) from None
    from zooflow.toolchains.outputs import OutputsError, load_npz

    rows = []
    for path in files:
        try:
            rows.append(load_npz(path, ("output_0",))["output_0"].reshape(-1))
        except OutputsError as exc:
            raise EvaluationError(exc.problem, exc.fix) from None
    if len({r.shape for r in rows}) > 1:
        raise EvaluationError("output files differ in size", "they come from different models; rerun vamp")
    return np.stack(rows) if rows else np.zeros((0, 0), np.float32)


def read_class_names(path: Path | None, expected: int | None = None) -> list[str] | None:
    """``imagenet.txt``: one name per line (line = class id). Without a file, ImageNet-1k's names (as mmcls
    spells them) for outputs of 1000 classes, else None."""
    if path is None:
        from zooflow import imagenet

        known = imagenet.class_names()
        return list(known) if expected == len(known) else None
    if not path.is_file():
        raise EvaluationError(f"class-names file not found: {path}", "pass --names imagenet.txt or leave it out")
    names = [line.strip() for line in _lines(path, "class-names file") if line.strip()]
    if expected is not None and len(names) != expected:
        raise EvaluationError(f"{path} has {len(names)} names for {expected} classes", "use the model's class list")
    return names
