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
# caches that only save time (image hashes without a store, remote objects) stay out of ~/.cache
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="zooflow-test-cache-")
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


@pytest.fixture(scope="session")
def toolchain_store(
    tmp_path_factory: pytest.TempPathFactory, checkpoint_file: Path, photos: list[Path], demo_small: Path
):  # type: ignore[no-untyped-def]
    """A store with a dynamic-batch ONNX (logits), a calibration set and model-format npz of real photos + demo images."""
    import shutil

    from zooflow import calibration, datasets, export, npz
    from zooflow.config import CalibrationOptions, DataSpec, ExportOptions
    from zooflow.fetch import fetch_checkpoint
    from zooflow.store import Store

    store = Store(tmp_path_factory.mktemp("toolchain-store"))
    ckpt = fetch_checkpoint(str(checkpoint_file), store, model=MODEL, show_progress=False)
    onnx = export.export_checkpoint(ckpt, store, model=MODEL, options=ExportOptions(logits=True, dynamic_batch=True))
    data = tmp_path_factory.mktemp("photo-data")
    shutil.copytree(demo_small, data, dirs_exist_ok=True)
    with open(data / "val_label.txt", "a") as labels:  # the real photos join the set, labelled 0..3
        for i, photo in enumerate(photos):
            shutil.copyfile(photo, data / "val" / f"photo_{photo.stem}.JPEG")
            labels.write(f"photo_{photo.stem}.JPEG {i}\n")
    dataset = datasets.scan(DataSpec(path=str(data / "val")))
    calib = calibration.build_calibration(dataset, store, CalibrationOptions(per_class=3, allow_short=True), seed=0)
    model_npz = npz.build_npz(
        dataset,
        store,
        npz.NpzParams.for_format("model", onnx.meta["preprocess"], None),
        shard_size=16,
        show_progress=False,
    )
    return {"store": store, "onnx": onnx, "calibration": calib, "npz": model_npz, "dataset": dataset}


@pytest.fixture
def emulators(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The vamc/vamp EMULATORS (tests/support/vastai_emulator.py) first on PATH."""
    from tests.support.vastai_emulator import install

    bin_dir = install(tmp_path / "emulator-bin")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("VASTAI_EMULATOR_FAULT", raising=False)
    return bin_dir


# The longest files, longest first (each takes 3-8 minutes of one worker in CI on 2 cores, 2026-12-06).
LONGEST = (
    "reliability/test_catalogue.py",
    "flows/test_deploy_classifier.py",
    "integration/test_team_path.py",
    "integration/test_ui_browser.py",
    "integration/test_dask_cli.py",
    "flows/test_sweep_and_nightly.py",
    "integration/test_benchmarks_smoke.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Long files first (the longest by name, then the rest with slow tests, and the flows under Prefect):
    xdist hands out whole files in collection order, and a long file handed out last ran alone at the
    end of CI for minutes (the team path, once 36 slow files came before it)."""
    long = {item.path for item in items if item.get_closest_marker("slow") or item.path.parent.name == "flows"}

    def rank(item: pytest.Item) -> int:
        name = "/".join(item.path.parts[-2:])
        return LONGEST.index(name) if name in LONGEST else len(LONGEST) + (item.path not in long)

    items.sort(key=rank)  # stable: the order within each group is kept
