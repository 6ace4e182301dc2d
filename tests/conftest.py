"""Shared fixtures: a locally built checkpoint, stores in temp dirs, Prefect's test API."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# Prefect must never write results to ~/.prefect in tests: anything that escapes the
# artifact store lands here, and the flow tests assert this folder stays empty.
_DEFAULT_RESULTS = Path(tempfile.mkdtemp(prefix="zooflow-prefect-default-results-"))
os.environ["PREFECT_RESULTS_LOCAL_STORAGE_PATH"] = str(_DEFAULT_RESULTS)
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

MODEL = "shufflenet-v1-1x_16xb64_in1k"


@pytest.fixture(scope="session")
def default_results_dir() -> Path:
    """Where Prefect would put results that are not routed to the store."""
    return _DEFAULT_RESULTS


@pytest.fixture(scope="session")
def model_info():  # type: ignore[no-untyped-def]
    from zooflow import registry

    return registry.resolve(MODEL)


@pytest.fixture(scope="session")
def checkpoint_file(tmp_path_factory: pytest.TempPathFactory, model_info) -> Path:  # type: ignore[no-untyped-def]
    """A real ShuffleNetV1 checkpoint built from the mmcls config with locally initialised weights."""
    from zooflow import models

    path = tmp_path_factory.mktemp("ckpt") / "shufflenet_v1_local.pth"
    models.init_checkpoint(model_info, path, seed=7)
    return path


@pytest.fixture(scope="session")
def photos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Real photographs as JPEG files."""
    from tests.support.images import write_photos

    return write_photos(tmp_path_factory.mktemp("photos"))


@pytest.fixture
def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    from zooflow.store import Store

    return Store(tmp_path / "store")


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[None]:
    """One Prefect test API (temporary SQLite) for the whole session (~15 s to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture(scope="session")
def demo_small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated flat ImageNet-layout set: 12 classes x 3 images, incl. one greyscale and one CMYK JPEG."""
    from zooflow.demo import write_demo_dataset

    out = tmp_path_factory.mktemp("demo-small")
    write_demo_dataset(out, classes=12, per_class=3, layout="flat", seed=1)
    return out


@pytest.fixture(scope="session")
def demo_1000(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated flat set over all 1000 classes, 2 images each (for calibration at full scale)."""
    from zooflow.demo import write_demo_dataset

    out = tmp_path_factory.mktemp("demo-1000")
    write_demo_dataset(out, classes=1000, per_class=2, layout="flat", seed=2)
    return out
