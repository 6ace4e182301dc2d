"""Stored outputs with known answers: an npz index and an outputs artifact built from given rows.

The evaluation reads only the records (names, labels) and the output rows, so these artifacts
are the real formats with synthetic content, not mocks of the evaluation's inputs.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from zooflow.store import ArtifactRef, Store
from zooflow.toolchains import outputs


def _commit(store: Store, kind: str, files: dict[str, str], **kwargs: Any) -> ArtifactRef:
    with store.staging() as staged:
        for name, text in files.items():
            (staged / name).write_text(text)
        return store.commit(staged, kind=kind, stage="test", stage_version="1", **kwargs)


def labelled_npz(store: Store, names: list[str], labels: list[int], dataset: str = "synthetic000") -> ArtifactRef:
    """An npz index over `names` (one shard) with their labels, as the npz stage writes it."""
    rows = [
        [i, n, int(lab), n.rsplit(".", 1)[0] + ".npz"] for i, (n, lab) in enumerate(zip(names, labels, strict=True))
    ]
    shard = _commit(store, "npz-shard", {"records.json": json.dumps({"first": 0, "records": rows})}, meta={"first": 0})
    tsv = "index\tname\tlabel\tshard\tfile\n" + "".join(f"{i}\t{n}\t{lab}\t0\t{f}\n" for i, n, lab, f in rows)
    index = {"format": "model", "params": {}, "count": len(names), "shards": [{"digest": shard.digest}]}
    return _commit(
        store,
        "npz",
        {"records.tsv": tsv, "index.json": json.dumps(index)},
        name=f"datasets/{dataset}/npz-model",
        inputs={"shard-0000": shard},
        meta={"format": "model", "dataset": dataset, "count": len(names)},
    )


def stored_outputs(
    store: Store,
    npz: ArtifactRef,
    rows: np.ndarray,
    *,
    name: str,
    semantics: str = "logits",
    order: list[int] | None = None,
    shards: int = 2,
) -> ArtifactRef:
    """An outputs artifact for every record of `npz`, split into `shards` shards in the given record `order`."""
    doc = json.loads(store.path(npz, "index.json").read_text())
    shard = store.ref(doc["shards"][0]["digest"])
    names = [line.split("\t")[1] for line in store.path(npz, "records.tsv").read_text().splitlines()[1:]]
    compiled = _commit(store, "compiled", {"model.txt": name}, name=name)
    order = order if order is not None else list(range(len(names)))
    parts = []
    for chunk in np.array_split(np.asarray(order), shards):
        parts.append(
            outputs.commit_shard(
                store,
                chunk,
                [names[i] for i in chunk],
                rows[chunk],
                compiled=compiled,
                shard=shard,
                meta={"semantics": semantics, "output_name": "logits"},
                toolchain={"toolchain": "test"},
            )
        )
    return outputs.assemble(store, parts, compiled=compiled, npz=npz, toolchain={"toolchain": "test"})
