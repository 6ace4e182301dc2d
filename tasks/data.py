"""Data tasks: scan (or generate) the dataset, sample the calibration set, make npz shards."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks._cache import ArtifactCachePolicy, full_verify, remember, resumable
from tasks.ui import publish
from zooflow import calibration, datasets, demo, npz
from zooflow.config import CalibrationOptions, DataSpec
from zooflow.datasets import DatasetHandle
from zooflow.npz import NpzParams
from zooflow.store import ArtifactRef, open_store


@task(name="scan-dataset", cache_policy=NO_CACHE)
def scan_dataset(spec: DataSpec, demo_run: bool, seed: int, store_url: str) -> DatasetHandle:
    """Scan and validate the images, with their content hashes (never cached: the folder may have
    changed since the last run; unchanged images are not re-read, see `zooflow.filehash`)."""
    store = open_store(store_url)
    if full_verify():
        spec = spec.model_copy(update={"rehash": True})
    source: dict[str, object] = {"path": spec.path}
    inputs = {}
    if demo_run and spec.path is None:
        folder, ref = demo.ensure_demo_dataset(store, spec.demo, seed=seed)
        spec = spec.model_copy(update={"path": str(folder / "val"), "layout": spec.demo.layout})
        source, inputs = {"demo": ref.digest}, {"images": ref}
    dataset = datasets.scan(spec, hash_cache=store.local_cache_dir / "file-hashes").limited(spec.limit)
    index = datasets.publish_index(dataset, store, source=source, inputs=inputs)
    summary = dataset.summary()
    publish(
        index,
        "Dataset",
        {
            "images": summary["images"],
            "classes present": f"{summary['classes_present']} of {summary['num_classes']}",
            "layout": dataset.layout,
            "identity": f"`{dataset.identity}`",
        },
        warning="generated demo images, not photographs" if "demo" in source else None,
    )
    return datasets.handle(dataset, index)


CALIBRATION_POLICY = ArtifactCachePolicy(
    stage=calibration.STAGE, stage_version=calibration.STAGE_VERSION, libraries=("pillow",)
)


@task(name="calibration-set", cache_policy=CALIBRATION_POLICY, persist_result=True, result_serializer="json")
@resumable
def calibration_set(
    dataset: DatasetHandle, options: CalibrationOptions, seed: int, skip_corrupt: bool, store_url: str
) -> ArtifactRef:
    """Sample `per_class` images of every class into a flat folder (vamc's calibration input)."""
    store = open_store(store_url)
    ref = calibration.build_calibration(
        dataset.open(store), store, options, seed=seed, skip_corrupt=skip_corrupt, inputs={"dataset": dataset.index}
    )
    remember(ref)  # first: a kill while publishing must not lose the record
    publish(
        ref,
        "Calibration set",
        {
            "images": f"{ref.meta['count']} of {ref.meta['requested']} requested",
            "per class": options.per_class,
            "seed": seed,
            "short classes": ref.meta["short_classes"],
            "skipped corrupt": ref.meta["skipped_corrupt"],
        },
    )
    return ref


NPZ_POLICY = ArtifactCachePolicy(stage=npz.STAGE, stage_version=npz.STAGE_VERSION, libraries=npz.LIBRARIES)


@task(name="npz-shard", cache_policy=NPZ_POLICY, persist_result=True, result_serializer="json")
@resumable
def npz_shard(
    dataset: DatasetHandle, shard: int, shard_size: int, params: NpzParams, skip_corrupt: bool, store_url: str
) -> ArtifactRef:
    """Encode one shard of the dataset (one cached unit; shards run in parallel)."""
    store = open_store(store_url)
    data = dataset.open(store)
    spec = npz.plan(len(data.records), shard_size)[shard]
    records = list(data.records[spec.first : spec.first + spec.count])
    return remember(npz.build_shard(store, data.root, records, spec.first, params, skip_corrupt=skip_corrupt))


@task(name="npz-index", cache_policy=NPZ_POLICY, persist_result=True, result_serializer="json")
@resumable
def npz_index(dataset: DatasetHandle, shards: list[ArtifactRef], params: NpzParams, store_url: str) -> ArtifactRef:
    """Join the shards into the ``npz`` artifact (records in dataset order, shard digests)."""
    store = open_store(store_url)
    ref = npz.assemble(dataset.open(store), shards, params, store, inputs={"dataset": dataset.index})
    remember(ref)  # first: a kill while publishing must not lose the record
    publish(
        ref,
        f"npz ({params.format})",
        {
            "images": ref.meta["count"],
            "shards": ref.meta["shards"],
            "converted to RGB": ref.meta["converted_to_rgb"] or "-",
            "skipped corrupt": ref.meta["skipped_corrupt"],
        },
    )
    return ref
