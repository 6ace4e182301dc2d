"""Concurrent runs on one store, and reproducible artifacts."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest

from tests.reliability.catalogue import case
from tests.reliability.helpers import run_env, small_run
from zooflow.store import ArtifactRef, Store


def _counts(state: str) -> Counter[str]:
    """'3 Cached, 7 Completed' (a map stage) or 'Cached' (one task) -> counts per state."""
    counts: Counter[str] = Counter()
    for part in state.split(", "):
        number, _, name = part.partition(" ")
        if name:
            counts[name] += int(number)
        else:
            counts[part] += 1
    return counts


@case(
    "concurrent-identical-runs",
    area="concurrency",
    fault="two `zooflow run` processes of the same work on one store, started together",
    sees="both complete; every stage and shard is computed by one of them while the other waits on its key's lock and ends Cached",
    kept="one version of each artifact (no duplicates)",
    fixed_in="issue 10 #9",
    slow=True,
)
def concurrent_runs(request: pytest.FixtureRequest) -> None:
    tmp: Path = request.getfixturevalue("tmp_path")
    store = tmp / "store"
    args = small_run(request, 12, "--quant", "int8-max", "--json")
    exe = Path(sys.executable).with_name("zooflow")
    env = run_env(tmp, store, request)  # both on one Prefect server, as a team's runs are
    procs = [
        subprocess.Popen([str(exe), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [p.communicate(timeout=600) for p in procs]
    for proc, (_, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err[-3000:]
    summaries = [json.loads(out.strip().splitlines()[-1]) for out, _ in results]
    a, b = (s["stages"] for s in summaries)
    assert set(a) == set(b)
    for stage in a:
        if stage in ("dataset", "gates"):  # each run scans its data and checks its gates (never cached)
            continue
        computed = _counts(a[stage])["Completed"] + _counts(b[stage])["Completed"]
        units = sum(_counts(a[stage]).values())
        assert computed <= units, f"{stage}: computed {computed} times for {units} unit(s): {a[stage]} / {b[stage]}"
    assert {s["artifacts"][k]["digest"] for s in summaries for k in ("compiled", "report")} == {
        summaries[0]["artifacts"][k]["digest"] for k in ("compiled", "report")
    }
    listed = subprocess.run(
        [str(exe), "artifacts", "list", "--json"], env=env, capture_output=True, text=True, check=True
    )
    versions = Counter(r["name"] for r in json.loads(listed.stdout))
    assert versions and all(n == 1 for n in versions.values()), versions


@case(
    "concurrent-commits",
    area="concurrency",
    fault="eight threads commit to one name at once: the same content, then eight different contents",
    sees="the same content makes one version; different contents get versions 1..8, each record whole",
    kept="every content, once",
    fixed_in="issue 10 #9",
)
def concurrent_commits(request: pytest.FixtureRequest) -> None:
    store = Store(request.getfixturevalue("tmp_path") / "s")
    results: list[ArtifactRef] = []
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def commit(data: bytes, name: str) -> None:
        try:
            start.wait()
            with store.staging("test") as staged:
                (staged / "a.bin").write_bytes(data)
                results.append(store.commit(staged, kind="thing", stage="test", stage_version="1", name=name))
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    for contents, name in (([b"same"] * 8, "x/same"), ([bytes([i]) * 10 for i in range(8)], "x/many")):
        threads = [threading.Thread(target=commit, args=(c, name)) for c in contents]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
    assert [v.version for v in store.versions("x/same")] == [1]
    many = store.versions("x/many")
    assert [v.version for v in many] == list(range(1, 9)) and len({v.digest for v in many}) == 8


@case(
    "recompile-same-digest",
    area="reproducibility",
    fault="the same ONNX compiled again with the same settings (a lost cache record, a second store)",
    sees="the same digest and version: the time it took is in the manifest's metadata, not in the content",
    kept="one compiled version, so no new benchmark or report is forced",
    fixed_in="issue 10 #11",
)
def recompile(request: pytest.FixtureRequest) -> None:
    from zooflow import toolchains
    from zooflow.config import QuantSpec

    setup = request.getfixturevalue("toolchain_store")
    store, onnx = setup["store"], setup["onnx"]
    tc = toolchains.get("onnxruntime")
    first = tc.compile(onnx, None, QuantSpec(dtype="fp16"), store)
    again = tc.compile(onnx, None, QuantSpec(dtype="fp16"), store)
    assert (again.digest, again.version) == (first.digest, first.version)
    assert "compile_seconds" in store.manifest(first.digest).meta
    assert "compile_seconds" not in json.loads(store.path(first, "compile.json").read_text())
