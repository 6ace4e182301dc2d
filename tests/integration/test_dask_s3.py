"""Scale-out: shard tasks on a Dask cluster of 2 worker processes, the store on an S3-compatible server.

The S3 server is moto's, started on 127.0.0.1 by the test; the cluster is a Dask LocalCluster whose
workers are separate processes that reach the store only through its s3:// URL.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.s3 import moto_bucket

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_api")]


@pytest.fixture
def s3_store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    """A bucket on a local moto S3 server; credentials and endpoint in the environment (workers inherit it)."""
    with moto_bucket(monkeypatch, tmp_path) as url:
        yield url


def test_shards_run_on_two_dask_workers_against_an_s3_store(s3_store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from distributed import Client, LocalCluster, get_task_stream
    from prefect.settings import PREFECT_API_URL

    from flows.runner import run_deploy
    from zooflow.config import ExecutionOptions
    from zooflow.runconfig import RunConfig
    from zooflow.store import Store

    monkeypatch.setenv("PREFECT_API_URL", str(PREFECT_API_URL.value()))  # workers report task states here
    config = RunConfig(
        demo=True,
        store=s3_store,
        quant="int8-max",
        data={"demo": {"classes": 12, "per_class": 2}},
        calibration={"allow_short": True},
        npz={"shard_size": 4},
        benchmark={"batch_sizes": (1,), "trials": 1, "iterations": 2, "warmup": 0},
        evaluation={"probe_images": 0, "preprocess_parity": False},
    )
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        execution = ExecutionOptions(runner="dask", dask_address=cluster.scheduler_address)
        with get_task_stream(client=client) as stream:
            result: dict[str, Any] = run_deploy(config, execution)
        assert result["status"] == "completed", result.get("error")
        workers = {task["worker"] for task in stream.data}
        assert len(workers) == 2, f"tasks ran on {workers}"
        again = run_deploy(config, execution)
    assert again["status"] == "completed"
    assert again["stages"]["npz-shards"] == "6 Cached" and again["stages"]["compiled"] == "Cached"
    store = Store(s3_store)  # the artifacts live in the bucket, readable from anywhere
    assert f"{result['model']}/onnxruntime/int8-max/evaluation" in store.names()
    evaluation = store.resolve(f"{result['model']}/onnxruntime/int8-max/evaluation")
    assert store.verify(evaluation.digest) == []
    assert os.environ["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
