"""Evaluation: top-1/top-5, per-class accuracy, fidelity vs the fp32 reference, and the stage that gates them.

What the zoo's scripts get wrong and this module does not (vastai-toolchain.md section 6):

- Outputs are paired with their inputs by record index *and* name (`zooflow.truth.pair`); any count,
  index or name mismatch is an error, never a silent shift or a truncating ``zip``.
- Predictions are compared as integer class ids, so the two ImageNet "crane" classes (134, 517)
  and truncated names cannot be confused.
- Ranking is deterministic: by score, ties broken by the lower class id (``np.argmax``'s rule),
  the same for top-1, top-5 and the text export.
- The text export carries real softmax probabilities and is written fresh, never appended.

Everything is vectorised over the (images x classes) matrix: 50,000 x 1000 in well under 5 s.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zooflow.config import Gate
from zooflow.errors import ZooflowError
from zooflow.gates import Baselines, check_gates
from zooflow.metrics import sqnr_from_noise
from zooflow.store import ArtifactRef, Store
from zooflow.truth import EvaluationError, Truth, image_stem, pair, truth_from_npz

STAGE = "evaluate"
STAGE_VERSION = "2"  # 2: results.txt in the zoo's layout (synset folder, ImageNet names by default)
TOPK = 5


# ------------------------------------------------------------------------------------ scoring
def check_finite(rows: np.ndarray, names: Sequence[str]) -> None:
    """NaN outputs cannot be ranked: name them instead of scoring them as some class."""
    bad = np.flatnonzero(np.isnan(rows).any(axis=1))
    if len(bad):
        raise EvaluationError(
            f"{len(bad)} output rows contain NaN (first: {names[int(bad[0])]})",
            "the compiled model overflowed or is broken; check it with `zooflow bench` and the fp32 reference",
        )


def topk(rows: np.ndarray, k: int = TOPK) -> tuple[np.ndarray, np.ndarray]:
    """(ids, scores), each (N, k): highest score first, ties to the lower class id.

    k passes of ``argmax`` (first maximum wins) with the winner masked out; exact and cheaper
    than a full stable sort. -inf scores are mapped to the lowest finite value first so a
    masked entry can never be picked again.
    """
    k = min(k, rows.shape[1])
    work = np.array(rows, dtype=np.float32 if rows.dtype.itemsize <= 4 else rows.dtype, copy=True)
    lowest = np.finfo(work.dtype).min
    work[np.isneginf(work)] = lowest
    ids = np.empty((len(work), k), dtype=np.int64)
    scores = np.empty((len(work), k), dtype=work.dtype)
    rows_at = np.arange(len(work))
    for j in range(k):
        best = work.argmax(axis=1)
        ids[:, j] = best
        scores[:, j] = work[rows_at, best]
        work[rows_at, best] = -np.inf
    return ids, scores


def is_probs(semantics: str | None) -> bool:
    """Whether outputs are probabilities (export records "softmax probabilities"; CLI users say "probs")."""
    return bool(semantics) and "prob" in str(semantics)


def probabilities(rows: np.ndarray, semantics: str | None) -> np.ndarray:
    """Softmax of logits (float64 for stability); probabilities pass through."""
    if is_probs(semantics):
        return np.asarray(rows, dtype=np.float64)
    shifted = np.asarray(rows, dtype=np.float64) - np.max(rows, axis=1, keepdims=True)
    exp = np.exp(shifted)
    result: np.ndarray = exp / exp.sum(axis=1, keepdims=True)
    return result


@dataclass
class Scores:
    """Top-k predictions and accuracy of one set of outputs against the truth."""

    ids: np.ndarray  # (N, k) class ids
    labels: np.ndarray
    num_classes: int

    @property
    def top1_correct(self) -> np.ndarray:
        result: np.ndarray = self.ids[:, 0] == self.labels
        return result

    @property
    def top5_correct(self) -> np.ndarray:
        result: np.ndarray = (self.ids[:, :TOPK] == self.labels[:, None]).any(axis=1)
        return result

    @property
    def top1(self) -> float:
        """Percent, like the published numbers (68.13)."""
        return float(100.0 * self.top1_correct.mean()) if len(self.labels) else math.nan

    @property
    def top5(self) -> float:
        return float(100.0 * self.top5_correct.mean()) if len(self.labels) else math.nan

    def per_class(self) -> tuple[np.ndarray, np.ndarray]:
        """(images per class, top-1 accuracy per class in percent; NaN where a class has no images)."""
        counts = np.bincount(self.labels, minlength=self.num_classes).astype(np.float64)
        correct = np.bincount(self.labels, weights=self.top1_correct, minlength=self.num_classes)
        with np.errstate(invalid="ignore", divide="ignore"):
            return counts, 100.0 * correct / counts


def score(rows: np.ndarray, truth: Truth, names: Sequence[str] | None = None) -> Scores:
    """Rank every row and compare with the labels (rows already in the truth's order)."""
    check_finite(rows, names or truth.names)
    labels = np.asarray(truth.labels, dtype=np.int64)
    num_classes = rows.shape[1] if rows.ndim == 2 else 0
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise EvaluationError(
            f"labels span {int(labels.min())}..{int(labels.max())} but outputs have {num_classes} classes",
            "the labels file belongs to another class list, or the model has another head",
        )
    ids, _ = topk(rows)
    return Scores(ids=ids, labels=labels, num_classes=num_classes)


# ----------------------------------------------------------------------------------- fidelity
def fidelity(
    rows: np.ndarray, reference: np.ndarray, scores: Scores, ref_scores: Scores, names: Sequence[str], max_flips: int
) -> dict[str, Any]:
    """How far outputs are from the reference's on the same inputs: agreement, flips, SQNR, cosine, max diff."""
    # float32 element-wise work, float64 accumulation: exact enough and half the memory traffic
    a = np.asarray(rows, dtype=np.float32)
    b = np.asarray(reference, dtype=np.float32)
    if a.shape != b.shape:
        raise EvaluationError(f"outputs {a.shape} and reference {b.shape} differ in shape", "compare like with like")
    diff = a - b
    noise = float(np.einsum("ij,ij->", diff, diff, dtype=np.float64))
    norms = np.sqrt(np.einsum("ij,ij->i", a, a, dtype=np.float64) * np.einsum("ij,ij->i", b, b, dtype=np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        cosine = np.where(norms > 0, np.einsum("ij,ij->i", a, b, dtype=np.float64) / norms, 1.0)
    now, before = scores.ids[:, 0], ref_scores.ids[:, 0]
    flipped = np.flatnonzero(now != before)
    labels = scores.labels
    flips = [
        {
            "name": names[int(i)],
            "label": int(labels[i]),
            "reference": int(before[i]),
            "now": int(now[i]),
            "change": "fixed" if now[i] == labels[i] else ("broken" if before[i] == labels[i] else "wrong both"),
        }
        for i in flipped[:max_flips]
    ]
    became_wrong = int(np.sum((before[flipped] == labels[flipped]) & (now[flipped] != labels[flipped])))
    became_right = int(np.sum((now[flipped] == labels[flipped]) & (before[flipped] != labels[flipped])))
    return {
        "agreement": float(100.0 * np.mean(now == before)) if len(now) else math.nan,
        "flips": len(flipped),
        "flips_broken": became_wrong,
        "flips_fixed": became_right,
        "flips_listed": flips,
        "sqnr_db": sqnr_from_noise(b, noise),
        "cosine": float(np.mean(cosine)) if len(cosine) else math.nan,
        "cosine_min": float(np.min(cosine)) if len(cosine) else math.nan,
        "max_abs_diff": float(np.max(np.abs(diff))) if diff.size else 0.0,
    }


# ---------------------------------------------------------------------------------- text export
def zoo_name(name: str, label: int | None, classes: int) -> str:
    """An image's name as the zoo's ``eval_topk.py`` reads it: the true class is the synset folder
    around the file (``path.split("/")[-2]``). A name already in a synset folder is kept; one from a
    flat ImageNet set (or a datalist of npz paths) gets its label's synset as folder."""
    from zooflow import imagenet

    parts = name.split("/")
    if len(parts) > 1 and imagenet.SYNSET_RE.match(parts[-2]):
        return name
    synsets = imagenet.synsets()
    if label is None or classes != len(synsets) or not 0 <= label < classes:
        return name
    return "/".join([*parts[:-1], synsets[label], parts[-1]])


def write_text(
    path: Path,
    names: Sequence[str],
    ids: np.ndarray,
    probs: np.ndarray,
    class_names: Sequence[str] | None,
    prefix: str = "",
    labels: np.ndarray | None = None,
    classes: int = 0,
) -> Path:
    """The zoo's result format, 5 lines per image: ``<path>: Relay top-<k> id: <id>, prob: <p>, class name: <name>``.

    k counts from 0 as the zoo's loop does; prob is the softmax probability with the zoo's 8
    decimals (the zoo printed a raw logit); the zoo's eval_topk.py compares the class name after the
    fourth ':' with the name of the synset folder around the path, so names keep their synset folder
    and, with `labels` of an ImageNet-1k model (`classes` 1000), a flat set's names gain their true
    class's (`zoo_name`). Written to a temporary file and renamed: never appended to an older result.
    """
    if labels is not None:
        names = [zoo_name(n, int(lab), classes) for n, lab in zip(names, labels, strict=True)]
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            for i, name in enumerate(names):
                for k in range(ids.shape[1]):
                    cid = int(ids[i, k])
                    label = class_names[cid] if class_names and cid < len(class_names) else str(cid)
                    out.write(
                        f"{prefix}{name}: Relay top-{k} id: {cid}, prob: {probs[i, k]:.8f}, class name: {label}\n"
                    )
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# ------------------------------------------------------------------------------- stage functions
def _input(store: Store, ref: ArtifactRef, role: str) -> ArtifactRef:
    """The input artifact of `ref` recorded under `role` (lineage)."""
    for item in store.manifest(ref.digest).inputs:
        if item.role == role:
            return store.ref(item.digest)
    raise EvaluationError(f"{ref.label()} records no {role!r} input", "it was not produced by zooflow's run stage")


def scored_outputs(store: Store, outputs: ArtifactRef) -> tuple[Truth, np.ndarray, str | None]:
    """(truth, rows in record order, semantics) of an ``outputs`` artifact, paired with its own npz."""
    from zooflow.toolchains import outputs as outputs_mod

    truth = truth_from_npz(store, _input(store, outputs, "npz"))
    index, names, rows = outputs_mod.read(store, outputs)
    return truth, pair(index, names, rows, truth), outputs.meta.get("semantics")


def _same_images(a: Truth, b: Truth, what: str) -> None:
    if [image_stem(n) for n in a.names] != [image_stem(n) for n in b.names] or not np.array_equal(a.labels, b.labels):
        raise EvaluationError(f"{what} covers other images than the run", "build both from the same dataset")


def torch_probe(
    store: Store, checkpoint: ArtifactRef, npz: ArtifactRef, *, model: str, images: int, trust: bool = False
) -> ArtifactRef:
    """PyTorch logits of the checkpoint on the first `images` records of a model-format npz (the probe set)."""
    from zooflow import models, registry
    from zooflow import npz as npz_mod
    from zooflow.export import export_module, run_torch

    index = json.loads(store.path(npz, "index.json").read_text())
    if index["format"] != "model":
        raise EvaluationError("the PyTorch probe needs model-format npz", "pass the reference npz artifact")
    transform = npz_mod.NpzParams(**index["params"]).transform_obj()
    picked = list(npz_mod.records(store, npz))[:images]
    batch = []
    for _, _, _, shard, file in picked:
        with np.load(store.directory(shard) / file) as data:
            batch.append(transform.normalize(data[npz_mod.KEY]))
    info = registry.resolve(model)
    net = models.build_model(info)
    models.load_strict(net, store.path(checkpoint), info, trust=trust)
    module = export_module(net, logits=True)
    logits = run_torch(module, np.stack(batch)) if batch else np.zeros((0, 0), np.float32)
    with store.staging("probe") as staged:
        with open(staged / "probe.npz", "wb") as fh:
            np.savez(fh, index=np.array([r[0] for r in picked], np.int64), logits=logits)
        (staged / "names.json").write_text(json.dumps([r[1] for r in picked]))
        return store.commit(
            staged,
            kind="probe",
            name=f"{model}/probe-{str(npz.meta.get('dataset', 'data'))[:12]}",
            stage=STAGE,
            stage_version=STAGE_VERSION,
            params={"images": images, "model": model},
            inputs={"checkpoint": checkpoint, "npz": npz},
            meta={"count": len(picked), "semantics": "logits"},
        )


def _as(rows: np.ndarray, semantics: str | None, target: str | None) -> np.ndarray:
    """Rows in the target semantics (logits -> probs by softmax; probs stay)."""
    if is_probs(target) and not is_probs(semantics):
        return probabilities(rows, semantics)
    return np.asarray(rows, dtype=np.float64)


def _probe_check(
    store: Store, probe: ArtifactRef, truth: Truth, rows: np.ndarray, semantics: str | None
) -> dict[str, Any]:
    """Outputs vs the PyTorch model on the probe images: top-1 agreement, SQNR, max diff."""
    with np.load(store.path(probe, "probe.npz")) as data:
        index, logits = data["index"], data["logits"]
    names = json.loads(store.path(probe, "names.json").read_text())
    for i, name in zip(index, names, strict=True):
        if image_stem(truth.names[int(i)]) != image_stem(name):
            raise EvaluationError(f"probe image {name} is not record {int(i)} of the run", "rebuild the probe")
    if not len(index):
        return {"images": 0}
    torch_rows = _as(logits, "logits", semantics)
    got = np.asarray(rows[index], dtype=np.float64)
    sub = Truth(names=[truth.names[int(i)] for i in index], labels=truth.labels[index])
    fid = fidelity(got, torch_rows, score(got, sub), score(torch_rows, sub), sub.names, max_flips=len(index))
    return {
        "images": len(index),
        "agreement": fid["agreement"],
        "sqnr_db": fid["sqnr_db"],
        "max_abs_diff": fid["max_abs_diff"],
        "semantics": semantics or "logits",
    }


def preprocess_parity(
    store: Store, framework: ArtifactRef, device: ArtifactRef, *, compare_images: int = 32
) -> ArtifactRef:
    """The seed's preprocessing vs the card's DSP, both through the fp32 reference: accuracy of each, agreement, input diff."""
    from zooflow import npz as npz_mod

    truth, a_rows, semantics = scored_outputs(store, framework)
    truth_b, b_rows, _ = scored_outputs(store, device)
    _same_images(truth, truth_b, "the DSP-preprocessed run")
    a, b = score(a_rows, truth), score(b_rows, truth)
    fid = fidelity(b_rows, a_rows, b, a, truth.names, max_flips=50)
    # input tensors on the first images: how different are the two preprocessings?
    diffs: list[np.ndarray] = []
    a_npz, b_npz = _input(store, framework, "npz"), _input(store, device, "npz")
    transforms = [
        npz_mod.NpzParams(**json.loads(store.path(n, "index.json").read_text())["params"]).transform_obj()
        for n in (a_npz, b_npz)
    ]
    for ra, rb in zip(npz_mod.records(store, a_npz), npz_mod.records(store, b_npz), strict=False):
        if len(diffs) >= compare_images:
            break
        with np.load(store.directory(ra[3]) / ra[4]) as x, np.load(store.directory(rb[3]) / rb[4]) as y:
            diffs.append(np.abs(transforms[0].normalize(x[npz_mod.KEY]) - transforms[1].normalize(y[npz_mod.KEY])))
    stacked = np.stack(diffs) if diffs else np.zeros((0,))
    pre_resized = json.loads(store.path(b_npz, "index.json").read_text()).get("pre_resize_effect")
    result = {
        "images": len(truth.names),
        "framework": {"top1": a.top1, "top5": a.top5, "transform": transforms[0].as_dict()},
        "device_dsp": {"top1": b.top1, "top5": b.top5, "transform": transforms[1].as_dict()},
        "gap_top1": a.top1 - b.top1,
        "gap_top5": a.top5 - b.top5,
        "agreement": fid["agreement"],
        "sqnr_db": fid["sqnr_db"],
        "input_mean_abs_diff": float(stacked.mean()) if stacked.size else 0.0,
        "input_max_abs_diff": float(stacked.max()) if stacked.size else 0.0,
        "input_images_compared": len(diffs),
        "semantics": semantics,
        "pre_resized": pre_resized,  # the DSP's crop from host-pre-resized vs full-size images (uint8 steps)
    }
    with store.staging("parity") as staged:
        (staged / "parity.json").write_text(json.dumps(result, indent=1, sort_keys=True))
        return store.commit(
            staged,
            kind="parity",
            name=f"{(framework.name or 'outputs').rsplit('/', 1)[0]}/preprocess-parity",
            stage=STAGE,
            stage_version=STAGE_VERSION,
            params={"compare_images": compare_images},
            inputs={"framework": framework, "device-dsp": device},
            meta={k: result[k] for k in ("gap_top1", "gap_top5", "agreement", "input_mean_abs_diff", "images")},
        )


def evaluate_run(
    store: Store,
    outputs: ArtifactRef,
    *,
    reference: ArtifactRef | None,
    gates: Sequence[Gate],
    against: Baselines,
    probe: ArtifactRef | None = None,
    parity: ArtifactRef | None = None,
    class_names: Sequence[str] | None = None,
    max_flips: int = 200,
    context: dict[str, Any] | None = None,
) -> ArtifactRef:
    """The evaluation artifact of one run: metrics, per-class accuracy, fidelity, probe, parity and verdict.

    Files: ``metrics.json`` (everything small, including the verdict), ``per_class.json``,
    ``predictions.npz`` (top-5 ids and probabilities, labels, reference top-1) and
    ``results.txt`` (the zoo's text format).
    """
    truth, rows, semantics = scored_outputs(store, outputs)
    scores = score(rows, truth)
    counts, per_class = scores.per_class()
    metrics: dict[str, Any] = {"images": len(truth.names), "top1": scores.top1, "top5": scores.top5}
    ref_per_class = None
    ref_scores = None
    if reference is not None:
        ref_truth, ref_rows, ref_semantics = scored_outputs(store, reference)
        _same_images(truth, ref_truth, "the fp32 reference")
        ref_scores = score(ref_rows, truth)
        _, ref_per_class = ref_scores.per_class()
        if is_probs(ref_semantics) != is_probs(semantics):  # compare like with like: both as probabilities
            rows_cmp, ref_cmp = probabilities(rows, semantics), probabilities(ref_rows, ref_semantics)
        else:
            rows_cmp, ref_cmp = rows, ref_rows
        fid = fidelity(rows_cmp, ref_cmp, scores, ref_scores, truth.names, max_flips)
        metrics.update({k: fid[k] for k in ("agreement", "sqnr_db", "cosine")})
        metrics["reference"] = {"top1": ref_scores.top1, "top5": ref_scores.top5, "digest": reference.digest}
        metrics["drop_top1"] = ref_scores.top1 - scores.top1
        metrics["drop_top5"] = ref_scores.top5 - scores.top5
        metrics["fidelity"] = {k: v for k, v in fid.items() if k != "flips_listed"}
        flips = fid["flips_listed"]
    else:
        flips = []
    if probe is not None:
        metrics["probe"] = _probe_check(store, probe, truth, rows, semantics)
    if parity is not None:
        metrics["preprocess_parity"] = json.loads(store.path(parity, "parity.json").read_text())
    metrics["published"] = against.published
    if against.published_note:
        metrics["published_note"] = against.published_note
    if ref_scores is not None:
        against.reference.update({"top1": ref_scores.top1, "top5": ref_scores.top5})
    gate_metrics = {k: metrics.get(k) for k in ("top1", "top5", "agreement", "sqnr_db", "cosine")}
    verdict = check_gates(gates, {k: v for k, v in gate_metrics.items() if v is not None}, against)
    metrics["verdict"] = verdict
    metrics["gates"] = [g.model_dump(exclude_none=True) for g in gates]
    metrics["semantics"] = semantics
    metrics["context"] = context or {}
    probs = probabilities(rows, semantics)
    top_probs = np.take_along_axis(probs, scores.ids, axis=1)
    with store.staging("evaluate") as staged:
        (staged / "metrics.json").write_text(json.dumps(_jsonable(metrics), indent=1, sort_keys=True))
        (staged / "flips.json").write_text(json.dumps(flips, indent=1))
        per_class_rows = [
            {
                "class": int(c),
                "name": class_names[int(c)] if class_names and c < len(class_names) else str(c),
                "images": int(counts[c]),
                "top1": float(per_class[c]),
                **(
                    {"reference_top1": float(ref_per_class[c]), "drop": float(ref_per_class[c] - per_class[c])}
                    if ref_per_class is not None
                    else {}
                ),
            }
            for c in np.flatnonzero(counts > 0)
        ]
        (staged / "per_class.json").write_text(json.dumps(_jsonable(per_class_rows), indent=1))
        with open(staged / "predictions.npz", "wb") as fh:
            np.savez(
                fh,
                ids=scores.ids.astype(np.int32),
                probs=top_probs.astype(np.float32),
                labels=truth.labels.astype(np.int32),
                reference_top1=(ref_scores.ids[:, 0] if ref_scores is not None else scores.ids[:, 0]).astype(np.int32),
            )
        (staged / "names.json").write_text(json.dumps(truth.names))
        write_text(
            staged / "results.txt",
            truth.names,
            scores.ids,
            top_probs,
            class_names,
            labels=truth.labels,
            classes=rows.shape[1],
        )
        inputs = {"outputs": outputs}
        inputs.update({k: v for k, v in (("reference", reference), ("probe", probe), ("parity", parity)) if v})
        name = (outputs.name or "run").rsplit("/", 1)[0]
        return store.commit(
            staged,
            kind="evaluation",
            name=f"{name}/evaluation",
            stage=STAGE,
            stage_version=STAGE_VERSION,
            params={"gates": metrics["gates"], "max_flips": max_flips},
            inputs=inputs,
            meta={
                "top1": scores.top1,
                "top5": scores.top5,
                "images": len(truth.names),
                "passed": verdict["passed"],
                **{k: metrics[k] for k in ("agreement", "drop_top1", "sqnr_db") if k in metrics},
            },
        )


def load_metrics(store: Store, evaluation: ArtifactRef) -> dict[str, Any]:
    """An evaluation artifact's ``metrics.json``."""
    if evaluation.kind != "evaluation":
        raise EvaluationError(f"{evaluation.label()} is a {evaluation.kind} artifact, not an evaluation", None)
    result: dict[str, Any] = json.loads(store.path(evaluation, "metrics.json").read_text())
    return result


def baseline_lookup(store: Store) -> Callable[[str], tuple[str, dict[str, float]]]:
    """Resolve a named baseline run (store reference to an evaluation) to (label, metrics)."""

    def lookup(spec: str) -> tuple[str, dict[str, float]]:
        try:
            ref = store.resolve(spec)
        except ZooflowError as exc:
            raise EvaluationError(
                f"baseline {spec!r} not found in the store: {exc.problem}",
                "name an evaluation artifact (`zooflow artifacts list evaluation`), e.g. NAME@VERSION or a digest",
            ) from None
        metrics = load_metrics(store, ref)
        return ref.label(), {k: v for k, v in metrics.items() if isinstance(v, int | float)}

    return lookup


def _jsonable(value: Any) -> Any:
    """NaN/inf -> None/strings so metrics.json stays valid JSON."""
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    return value
