"""Fetch stage against a real HTTP server on 127.0.0.1 serving a locally built checkpoint."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.conftest import MODEL
from tests.support.http import FileServer, closed_port_url
from zooflow.errors import ChecksumError, FetchError
from zooflow.fetch import FetchPolicy, digest_from_filename, fetch_checkpoint
from zooflow.store import Store, sha256_file

FAST = FetchPolicy(attempts=3, backoff_initial=0.01, backoff_max=0.05, timeout=5)


@pytest.fixture(scope="module")
def ckpt_bytes(checkpoint_file: Path) -> bytes:
    return checkpoint_file.read_bytes()


def _openmmlab_name(data: bytes) -> str:
    return f"/shufflenet_v1_local-{hashlib.sha256(data).hexdigest()[:8]}.pth"


def _fetch(store: Store, url: str, **kw):  # type: ignore[no-untyped-def]
    return fetch_checkpoint(url, store, model=MODEL, policy=kw.pop("policy", FAST), show_progress=False, **kw)


def test_suffix_convention_is_parsed() -> None:
    assert digest_from_filename("shufflenet_v1_batch1024_imagenet_20200804-5d6cec73.pth") == "5d6cec73"
    assert digest_from_filename("model.pth") is None


def test_download_verifies_against_name_suffix_and_explicit_digest(store: Store, ckpt_bytes: bytes) -> None:
    name = _openmmlab_name(ckpt_bytes)
    full = hashlib.sha256(ckpt_bytes).hexdigest()
    with FileServer({name: ckpt_bytes}) as srv:
        ref = _fetch(store, srv.url(name), sha256=full)
    assert ref.kind == "checkpoint"
    assert ref.name == f"{MODEL}/checkpoint"
    assert store.path(ref).read_bytes() == ckpt_bytes
    assert ref.meta["sha256"] == full
    assert ref.meta["verified_against"] == ["the given --sha256", f"the file name's OpenMMLab suffix -{full[:8]}"]
    assert store.verify(ref.digest) == []


def test_interrupted_download_resumes_with_range(store: Store, ckpt_bytes: bytes) -> None:
    name = _openmmlab_name(ckpt_bytes)
    with FileServer({name: ckpt_bytes}) as srv:
        srv.behaviour.drop_after = 1_000_000
        ref = _fetch(store, srv.url(name))
        ranges = [r for _, r in srv.behaviour.requests]
    assert ranges[0] is None
    assert ranges[1] == "bytes=1000000-", "second request must resume where the dropped one stopped"
    assert store.path(ref).read_bytes() == ckpt_bytes


def test_partial_download_survives_a_failed_run_and_the_next_run_resumes(store: Store, ckpt_bytes: bytes) -> None:
    name = _openmmlab_name(ckpt_bytes)
    with FileServer({name: ckpt_bytes}) as srv:
        srv.behaviour.drop_after = 2_000_000
        srv.behaviour.fail_times = 0
        one_try = FetchPolicy(attempts=1, backoff_initial=0.01, timeout=5)
        with pytest.raises(FetchError, match="2000000 bytes are kept and the next run resumes"):
            _fetch(store, srv.url(name), policy=one_try)
        ref = _fetch(store, srv.url(name))
        assert srv.behaviour.requests[-1][1] == "bytes=2000000-"
    assert sha256_file(store.path(ref)) == hashlib.sha256(ckpt_bytes).hexdigest()


def test_server_errors_are_retried_with_backoff(store: Store, ckpt_bytes: bytes) -> None:
    with FileServer({"/model.pth": ckpt_bytes}) as srv:
        srv.behaviour.fail_times = 2
        ref = _fetch(store, srv.url("/model.pth"))
        assert len(srv.behaviour.requests) == 3
    assert store.path(ref).read_bytes() == ckpt_bytes


def test_server_that_ignores_range_restarts_cleanly(store: Store, ckpt_bytes: bytes) -> None:
    with FileServer({"/model.pth": ckpt_bytes}) as srv:
        srv.behaviour.drop_after = 500_000
        srv.behaviour.ignore_range = True
        ref = _fetch(store, srv.url("/model.pth"))
    assert store.path(ref).read_bytes() == ckpt_bytes


def test_checksum_mismatch_names_both_digests_and_keeps_nothing(store: Store, ckpt_bytes: bytes) -> None:
    wrong = "/shufflenet_v1_local-deadbeef.pth"
    with FileServer({wrong: ckpt_bytes}) as srv, pytest.raises(ChecksumError) as exc:
        _fetch(store, srv.url(wrong))
    actual = hashlib.sha256(ckpt_bytes).hexdigest()
    assert exc.value.expected == "deadbeef"
    assert exc.value.actual == actual
    assert "expected SHA-256 deadbeef" in str(exc.value)
    assert actual in str(exc.value)
    assert "OpenMMLab suffix" in str(exc.value)
    assert store.digests() == []
    assert list(Path(store.root, "tmp", "downloads").glob("*")) == []


def test_explicit_digest_mismatch(store: Store, ckpt_bytes: bytes) -> None:
    with (
        FileServer({"/model.pth": ckpt_bytes}) as srv,
        pytest.raises(ChecksumError, match=r"expected SHA-256 0123456789abcdef\.\.\. \(the given --sha256\)"),
    ):
        _fetch(store, srv.url("/model.pth"), sha256="0123456789abcdef")
    assert store.digests() == []


def test_unreachable_url_fails_after_retries_with_a_fix(store: Store) -> None:
    url = closed_port_url()
    with pytest.raises(FetchError) as exc:
        _fetch(store, url)
    assert "failed after 3 attempts" in exc.value.problem
    assert "cannot reach 127.0.0.1" in exc.value.problem
    assert "--checkpoint" in (exc.value.fix or "")


def test_not_found_is_not_retried(store: Store) -> None:
    with FileServer({}) as srv:
        with pytest.raises(FetchError, match="HTTP 404"):
            _fetch(store, srv.url("/missing.pth"))
        assert len(srv.behaviour.requests) == 1


def test_local_path_and_file_url(store: Store, checkpoint_file: Path) -> None:
    by_path = _fetch(store, str(checkpoint_file))
    by_url = _fetch(store, checkpoint_file.as_uri())
    assert by_path.digest == by_url.digest
    assert store.path(by_path).read_bytes() == checkpoint_file.read_bytes()
    with pytest.raises(FetchError, match="checkpoint file not found"):
        _fetch(store, str(checkpoint_file.with_name("nope.pth")))


def test_local_init_is_deterministic_and_labelled(tmp_path: Path) -> None:
    one = fetch_checkpoint("local-init", Store(tmp_path / "a"), model=MODEL, seed=3, show_progress=False)
    two = fetch_checkpoint("local-init", Store(tmp_path / "b"), model=MODEL, seed=3, show_progress=False)
    other = fetch_checkpoint("local-init", Store(tmp_path / "c"), model=MODEL, seed=4, show_progress=False)
    assert one.digest == two.digest != other.digest
    assert one.meta["locally_initialised"] is True
    assert "NOT the published weights" in one.meta["warning"]
