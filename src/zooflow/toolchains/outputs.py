"""Model outputs, the same for every toolchain: per shard, by record index and name.

``outputs-shard`` artifact: ``outputs.npz`` with ``index`` (int64, the records' global index in
the npz artifact) and ``output_0`` (one row per record), plus ``names.json`` (the records' image
names, in the same order). The ``outputs`` artifact joins the shards (``index.json``).

Outputs are paired with inputs by index and checked by name, never by file listing order.
`export_vamp_layout` writes them as vamp does (``output_%06d.npz``, key ``output_0``, shape
(1, classes)) for scripts that expect that layout.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from zooflow.errors import ZooflowError
from zooflow.store import ArtifactRef, Store

STAGE = "run"
STAGE_VERSION = "1"


class OutputsError(ZooflowError):
    """Outputs do not pair with their inputs (counts, indices or names differ)."""


def commit_shard(
    store: Store,
    index: np.ndarray,
    names: list[str],
    outputs: np.ndarray,
    *,
    compiled: ArtifactRef,
    shard: ArtifactRef,
    meta: dict[str, Any],
    toolchain: dict[str, Any],
) -> ArtifactRef:
    """Store one shard's outputs (checked: one row per record)."""
    if not (len(index) == len(names) == len(outputs)):
        raise OutputsError(
            f"{len(outputs)} output rows for {len(index)} records ({len(names)} names) in shard {shard.short}",
            "this is a toolchain bug; its raw output is kept with the run",
        )
    with store.staging(STAGE) as staged:
        with open(staged / "outputs.npz", "wb") as fh:
            np.savez(fh, index=np.asarray(index, dtype=np.int64), output_0=outputs)
        (staged / "names.json").write_text(json.dumps(names))
        return store.commit(
            staged,
            kind="outputs-shard",
            stage=STAGE,
            stage_version=STAGE_VERSION,
            params={"first": int(index[0]) if len(index) else 0, "count": len(index)},
            inputs={"compiled": compiled, "npz-shard": shard},
            meta={**meta, "count": len(index), "dtype": str(outputs.dtype), "shape": list(outputs.shape)},
            toolchain=toolchain,
        )


def shard_records(store: Store, shard: ArtifactRef) -> list[tuple[int, str, int, str]]:
    """(index, name, label, file) of an npz shard's records."""
    doc = json.loads(store.path(shard, "records.json").read_text())
    return [(int(i), str(n), int(lab), str(f)) for i, n, lab, f in doc["records"]]


def assemble(
    store: Store,
    shards: list[ArtifactRef],
    *,
    compiled: ArtifactRef,
    npz: ArtifactRef,
    toolchain: dict[str, Any],
) -> ArtifactRef:
    """The ``outputs`` artifact over the shards, checked to cover every npz record exactly once.

    Named ``<compiled name>/outputs-<npz format>-<dataset identity prefix>``.
    """
    expected = json.loads(store.path(npz, "index.json").read_text())["count"]
    count = sum(int(s.meta["count"]) for s in shards)
    if count != expected:
        raise OutputsError(
            f"outputs cover {count} records but the npz artifact has {expected}",
            "rerun the run stage; a shard is missing or was produced for other inputs",
        )
    first = shards[0].meta if shards else {}
    output = {k: first.get(k) for k in ("output_name", "semantics", "dtype")}
    with store.staging(STAGE) as staged:
        index = {
            "count": count,
            "shards": [{"digest": s.digest, "count": s.meta["count"]} for s in shards],
            "output": output,
        }
        (staged / "index.json").write_text(json.dumps(index, indent=1, sort_keys=True))
        return store.commit(
            staged,
            kind="outputs",
            name=f"{compiled.name or 'compiled'}/outputs-{npz.meta.get('format', 'npz')}-"
            f"{str(npz.meta.get('dataset', 'data'))[:12]}",
            stage=STAGE,
            stage_version=STAGE_VERSION,
            inputs={"compiled": compiled, "npz": npz, **{f"shard-{i:04d}": s for i, s in enumerate(shards)}},
            meta={"count": count, **output},
            toolchain=toolchain,
        )


def verified(store: Store, digests: list[str]) -> None:
    """Re-check stored artifacts before their bytes are scored: a damaged one is an error naming it."""
    for digest in digests:
        problems = store.verify(digest)
        if problems:
            raise OutputsError(
                f"stored outputs {digest[:12]} are damaged ({'; '.join(problems[:3])}); nothing was scored",
                "run the flow again: damaged artifacts are recomputed (`zooflow artifacts gc --apply` repairs what it can)",
            )


def load_npz(path: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The named arrays of an .npz file; an unreadable or incomplete file is an error naming it."""
    import zipfile

    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in keys if k not in data]
            if missing:
                raise OutputsError(
                    f"{path} has no {', '.join(missing)} (keys: {sorted(data)})", "is this the right file?"
                )
            return {k: np.asarray(data[k]) for k in keys}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as exc:
        raise OutputsError(
            f"{path} is not a readable .npz file ({type(exc).__name__}: {str(exc)[:120]}); nothing was scored",
            "the file is truncated or damaged: produce it again (rerun vamp, or the run stage)",
        ) from None


def read(store: Store, outputs: ArtifactRef) -> tuple[np.ndarray, list[str], np.ndarray]:
    """(index, names, outputs) of every record, sorted by index (the stored shards verified first)."""
    doc = json.loads(store.path(outputs, "index.json").read_text())
    verified(store, [outputs.digest, *(shard["digest"] for shard in doc["shards"])])
    indices, names, rows = [], [], []
    for shard in doc["shards"]:
        data = load_npz(store.path(shard["digest"], "outputs.npz"), ("index", "output_0"))
        indices.append(data["index"])
        rows.append(data["output_0"])
        names += json.loads(store.path(shard["digest"], "names.json").read_text())
    index = np.concatenate(indices) if indices else np.zeros(0, np.int64)
    order = np.argsort(index, kind="stable")
    return index[order], [names[i] for i in order], (np.concatenate(rows)[order] if rows else np.zeros((0, 0)))


def export_vamp_layout(store: Store, outputs: ArtifactRef, folder: Path) -> int:
    """Write ``output_%06d.npz`` (key ``output_0``, shape (1, C)) in record order; returns the count.

    The folder must be new, empty or an earlier export of zooflow's (`zooflow.outdir`): its old
    output files are removed first, so a stale file can never shift the pairs. The folder holds only
    the output files (the zoo's vamp_npz_decode.py pairs them by sorted listing); zooflow's marker
    lies beside it, ``<folder>.zooflow-out.json``.
    """
    from zooflow.outdir import OutputFolder

    index, _, rows = read(store, outputs)
    planned = [f"output_{i:06d}.npz" for i in range(len(rows))]
    store_input = [("the artifact store", store.root)] if store.is_local else []
    target = OutputFolder(folder, "export-outputs", planned, store_input, beside=True)  # the folder: only vamp's files
    target.claim()
    for position, row in enumerate(rows):
        with open(folder / f"output_{position:06d}.npz", "wb") as fh:
            np.savez(fh, output_0=row[None, :])
    target.done(outputs=outputs.digest)
    return len(index)
