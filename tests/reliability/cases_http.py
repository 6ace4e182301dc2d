"""Downloads against a real HTTP server on 127.0.0.1 that misbehaves on demand."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests.reliability.catalogue import case
from tests.reliability.helpers import MODEL, cli, no_traceback
from tests.support.http import FileServer, closed_port_url
from zooflow.errors import CheckpointError, FetchError
from zooflow.fetch import FetchPolicy, fetch_checkpoint
from zooflow.store import Store

FAST = FetchPolicy(attempts=3, backoff_initial=0.01, backoff_max=0.05, timeout=5)
ONCE = FetchPolicy(attempts=1, backoff_initial=0.01, timeout=5)


def _setup(request: pytest.FixtureRequest) -> tuple[Path, bytes, Store]:
    tmp: Path = request.getfixturevalue("tmp_path")
    data = request.getfixturevalue("checkpoint_file").read_bytes()
    return tmp, data, Store(tmp / "s")


def _other_checkpoint(tmp: Path, checkpoint_file: Path) -> bytes:
    """A second real checkpoint of the same size class (other weights): 'the file changed upstream'."""
    import torch

    ckpt = torch.load(checkpoint_file, weights_only=True)
    ckpt["state_dict"] = {k: v + 1 if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()}
    torch.save(ckpt, tmp / "v2.pth")
    return (tmp / "v2.pth").read_bytes()


def _fetch(store: Store, url: str, policy: FetchPolicy = FAST, **kw: object):  # type: ignore[no-untyped-def]
    return fetch_checkpoint(url, store, model=MODEL, policy=policy, show_progress=False, **kw)  # type: ignore[arg-type]


@case(
    "http-404",
    area="http",
    fault="the checkpoint URL answers 404",
    sees="exit 2: cannot download <url>: HTTP 404 Not Found; check the URL (or the model name)",
    kept="nothing is written",
)
def http_404(request: pytest.FixtureRequest) -> None:
    tmp, _, _ = _setup(request)
    with FileServer({}) as srv:
        code, _, err = cli("fetch", "--checkpoint", srv.url("/missing.pth"), "--store", str(tmp / "s"))
    assert code == 2 and "HTTP 404" in err and "check the URL" in err


@case(
    "http-500-retried",
    area="http",
    fault="the server answers 500 twice, then serves the file",
    sees="nothing: retried with exponential backoff, the checkpoint is stored",
    kept="the checkpoint, SHA-256 verified",
)
def http_500(request: pytest.FixtureRequest) -> None:
    _, data, store = _setup(request)
    with FileServer({"/m.pth": data}) as srv:
        srv.behaviour.fail_times = 2
        ref = _fetch(store, srv.url("/m.pth"))
    assert store.path(ref).read_bytes() == data


@case(
    "http-dropped-resumes",
    area="http",
    fault="the connection drops after 2 MB",
    sees="the next attempt resumes at byte 2,000,000 with Range and If-Range (the file's ETag); the stored file is exact",
    kept="the 2 MB already downloaded",
    fixed_in="issue 10 #7",
)
def http_dropped(request: pytest.FixtureRequest) -> None:
    _, data, store = _setup(request)
    with FileServer({"/m.pth": data}) as srv:
        srv.behaviour.drop_after = 2_000_000
        ref = _fetch(store, srv.url("/m.pth"))
        etag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
        assert srv.behaviour.requests[1][1] == "bytes=2000000-" and srv.behaviour.if_range[1] == etag
    assert store.path(ref).read_bytes() == data


@case(
    "http-file-changed-while-resuming",
    area="http",
    fault="the server's file is replaced between a dropped attempt and the resume",
    sees="If-Range does not match, the server sends the whole new file, the download restarts: the stored file is exactly the new one",
    kept="never a splice of old[:2 MB] + new[2 MB:]",
    fixed_in="issue 10 #7",
)
def http_changed(request: pytest.FixtureRequest) -> None:
    tmp, old, store = _setup(request)
    new = _other_checkpoint(tmp, request.getfixturevalue("checkpoint_file"))
    with FileServer({"/m.pth": old}) as srv:
        srv.behaviour.drop_after = 2_000_000
        with pytest.raises(FetchError, match="2000000 bytes are kept"):
            _fetch(store, srv.url("/m.pth"), ONCE)
        srv.files["/m.pth"] = new
        ref = _fetch(store, srv.url("/m.pth"))
    assert store.path(ref).read_bytes() == new


@case(
    "http-server-ignores-if-range",
    area="http",
    fault="a broken server answers a resume with 206 from the new file although If-Range no longer matches",
    sees="the ETag of the 206 differs from the first response's: the partial file is dropped and the download restarts",
    kept="never a splice; the stored file is exactly the new one",
    fixed_in="issue 10 #7",
)
def http_ignores_if_range(request: pytest.FixtureRequest) -> None:
    tmp, old, store = _setup(request)
    new = _other_checkpoint(tmp, request.getfixturevalue("checkpoint_file"))
    with FileServer({"/m.pth": old}) as srv:
        srv.behaviour.drop_after = 2_000_000
        srv.behaviour.ignore_if_range = True
        with pytest.raises(FetchError):
            _fetch(store, srv.url("/m.pth"), ONCE)
        srv.files["/m.pth"] = new
        ref = _fetch(store, srv.url("/m.pth"))
    assert store.path(ref).read_bytes() == new


@case(
    "http-no-validators",
    area="http",
    fault="a server that sends neither ETag nor Last-Modified drops the connection after 2 MB",
    sees="the retry starts from byte 0 (a resume could not be checked against the file), and succeeds",
    kept="the stored file is exact",
    fixed_in="issue 10 #7",
)
def http_no_validators(request: pytest.FixtureRequest) -> None:
    _, data, store = _setup(request)
    with FileServer({"/m.pth": data}) as srv:
        srv.behaviour.validators = False
        srv.behaviour.drop_after = 2_000_000
        ref = _fetch(store, srv.url("/m.pth"))
        assert [r for _, r in srv.behaviour.requests] == [None, None]
    assert store.path(ref).read_bytes() == data


@case(
    "http-short-body",
    area="http",
    fault="the body ends short of its Content-Length on the only attempt allowed",
    sees="exit 2: download failed (connection closed after N of M bytes); N bytes are kept and the next run resumes",
    kept="the partial download (for the resume); nothing is committed",
    fixed_in="issue 10 #7",
)
def http_short(request: pytest.FixtureRequest) -> None:
    _, data, store = _setup(request)
    with FileServer({"/m.pth": data}) as srv:
        srv.behaviour.drop_after = 3_000_000
        with pytest.raises(FetchError, match="3000000 bytes are kept and the next run resumes"):
            _fetch(store, srv.url("/m.pth"), ONCE)
    assert store.digests() == []


@case(
    "http-cut-without-length",
    area="http",
    fault="a body without Content-Length cut at 3 MB (indistinguishable from the end of the file), no digest given",
    sees="the file does not load as a checkpoint: exit 2, not a readable PyTorch checkpoint, nothing was published",
    kept="no checkpoint@latest made of a truncated file",
    fixed_in="issue 10 #7",
)
def http_cut_no_length(request: pytest.FixtureRequest) -> None:
    _, data, store = _setup(request)
    with FileServer({"/m.pth": data}) as srv:
        srv.behaviour.content_length = False
        srv.behaviour.drop_after = 3_000_000
        with pytest.raises(CheckpointError, match=r"not a readable PyTorch checkpoint.*nothing was published"):
            _fetch(store, srv.url("/m.pth"), ONCE)
    assert store.digests() == [] and store.names() == []


@case(
    "http-html-instead-of-checkpoint",
    area="http",
    fault="the URL serves an HTML login page with status 200",
    sees="exit 2: not a readable PyTorch checkpoint; nothing was published",
    kept="checkpoint@latest stays what it was",
    fixed_in="issue 10 #7",
)
def http_html(request: pytest.FixtureRequest) -> None:
    tmp, _, _ = _setup(request)
    with FileServer({"/m.pth": b"<html><body>Please sign in</body></html>"}) as srv:
        code, _, err = cli("fetch", "--checkpoint", srv.url("/m.pth"), "--store", str(tmp / "s"))
    assert code == 2 and "not a readable PyTorch checkpoint" in err and "nothing was published" in err
    no_traceback(err)


@case(
    "http-redirect-loop",
    area="http",
    fault="the URL redirects in a loop",
    sees="exit 2: redirected more than 10 times (a redirect loop), nothing was kept, and what to do",
    kept="nothing is written",
    fixed_in="issue 10 #12",
)
def http_redirect_loop(request: pytest.FixtureRequest) -> None:
    tmp, _, _ = _setup(request)
    with FileServer({}) as srv:
        srv.behaviour.redirect_loop = True
        code, _, err = cli("fetch", "--checkpoint", srv.url("/m.pth"), "--store", str(tmp / "s"))
    assert code == 2 and "redirect loop" in err
    no_traceback(err)


@case(
    "http-connection-refused",
    area="http",
    fault="nothing listens at the URL's host and port",
    sees="exit 2: download failed after N attempts (cannot reach 127.0.0.1:port) and the fix",
    kept="nothing is written",
)
def http_refused(request: pytest.FixtureRequest) -> None:
    _, _, store = _setup(request)
    with pytest.raises(FetchError, match=r"cannot reach 127\.0\.0\.1"):
        _fetch(store, closed_port_url())


@case(
    "http-no-digest-unverified",
    area="http",
    fault="a checkpoint URL with no --sha256 and no OpenMMLab digest suffix in its name",
    sees="it is stored, marked unverified in its manifest, with a warning on the console and in the run's summary",
    kept="the checkpoint",
    fixed_in="issue 10 #7",
)
def http_unverified(request: pytest.FixtureRequest) -> None:
    tmp, data, _ = _setup(request)
    with FileServer({"/model.pth": data}) as srv:
        code, out, err = cli("fetch", "--checkpoint", srv.url("/model.pth"), "--store", str(tmp / "s"), "--json")
    assert code == 0 and "warning:" in err and "not checked against any published digest" in err
    assert json.loads(out)["verified"] is False
    shown = json.loads(cli("artifacts", "show", f"{MODEL}/checkpoint", "--store", str(tmp / "s"))[1])
    assert shown["meta"]["verified"] is False and "pass --sha256" in shown["meta"]["unverified"]


@case(
    "http-gzip-encoded-checkpoint",
    area="http",
    fault="a server sends a correct checkpoint gzip-compressed (Content-Encoding: gzip) although zooflow asked "
    "for identity",
    sees="nothing: the body is decoded and its SHA-256 matches --sha256; it never succeeded before ('closed "
    "after 7685123 of 6940866 bytes': the compressed length was compared with the decoded one)",
    kept="the checkpoint, byte for byte the published file",
    fixed_in="issue 29 #5",
)
def http_gzip(request: pytest.FixtureRequest) -> None:
    tmp, data, store = _setup(request)
    with FileServer({"/m.pth": data}) as srv:
        srv.behaviour.gzip = True
        digest = hashlib.sha256(data).hexdigest()
        code, out, err = cli(
            "fetch", "--checkpoint", srv.url("/m.pth"), "--sha256", digest, "--store", str(tmp / "s"), "--json"
        )
        assert code == 0, err
        assert srv.behaviour.accept_encoding == ["identity"]
    ref = store.resolve(f"{MODEL}/checkpoint")
    assert ref.digest == json.loads(out.splitlines()[-1])["digest"] and store.path(ref).read_bytes() == data


@case(
    "http-gzip-bomb",
    area="http",
    fault="a server sends a gzip bomb as the checkpoint: 1 MB on the wire that decodes to 1 GiB",
    sees="exit 2 once the decoded body passes 50x its compressed size (about 50 MiB): the body decodes larger "
    "than a checkpoint may, nothing kept (it decoded until the disk was full and left the .part file)",
    kept="the disk: no .part file is left, nothing is published",
    fixed_in="issue 29 #5",
)
def http_bomb(request: pytest.FixtureRequest) -> None:
    from tests.support.http import gzip_bomb

    tmp, _, store = _setup(request)
    with FileServer({"/m.pth": gzip_bomb(1 << 30)}) as srv:
        srv.behaviour.gzipped = True
        code, _, err = cli("fetch", "--checkpoint", srv.url("/m.pth"), "--store", str(tmp / "s"))
    assert code == 2 and "gzip-compressed body decodes larger than" in err and "nothing was kept" in err, err
    no_traceback(err)
    assert not list(store.downloads_dir.iterdir()) and not (tmp / "s" / "refs").exists()
    assert sum(p.stat().st_size for p in (tmp / "s").rglob("*") if p.is_file()) < 1 << 20


@case(
    "http-trickle",
    area="http",
    fault="a server trickles the checkpoint a byte at a time (it kept `fetch` going past 400 s)",
    sees="each attempt ends at its deadline (an hour by default; here 1.5 s), or when fewer than 1 KiB arrive "
    "in a minute (here 1 s), then the fetch fails naming the reason and how many bytes are kept",
    kept="the bytes received, as a .part the next fetch resumes; `artifacts gc` counts and removes it once "
    "it is an hour old",
    fixed_in="issue 29 #5",
)
def http_trickle(request: pytest.FixtureRequest) -> None:
    import os
    import time

    from zooflow import storecheck

    _, data, store = _setup(request)
    deadline = FetchPolicy(attempts=2, backoff_initial=0.01, timeout=5, attempt_deadline=1.5, low_speed_seconds=60)
    floor = FetchPolicy(attempts=1, backoff_initial=0.01, timeout=5, low_speed_seconds=1.0, low_speed_bytes=1024)
    with FileServer({"/m.pth": data}) as srv:
        srv.behaviour.trickle = 0.05
        start = time.monotonic()
        with pytest.raises(FetchError, match=r"deadline of 1\.5 s") as caught:
            _fetch(store, srv.url("/m.pth"), deadline)
        assert time.monotonic() - start < 10
        assert "bytes are kept and the next run resumes" in caught.value.problem
        with pytest.raises(FetchError, match=r"only \d+ bytes arrived in 1 s"):
            _fetch(store, srv.url("/m.pth"), floor)
    (part,) = store.downloads_dir.glob("*.part")
    assert 0 < part.stat().st_size < len(data) and data.startswith(part.read_bytes())
    assert storecheck.partial_downloads(store) == []  # young: a fetch may still be writing it
    old = time.time() - 2 * storecheck.GRACE_SECONDS
    os.utime(part, (old, old))
    (action,) = storecheck.plan_gc(store)
    assert action.kind == "download" and action.size == part.stat().st_size
    storecheck.apply_gc(store, [action])
    assert not list(store.downloads_dir.iterdir())


@case(
    "url-dotdot-name",
    area="http",
    fault="a checkpoint URL whose last segment is `%2e%2e` (it decodes to '..')",
    sees="it downloads and is stored as checkpoint.pth (an EBUSY traceback before, from renaming onto '..')",
    kept="no .part file is left",
    fixed_in="issue 29 #7",
)
def url_dotdot(request: pytest.FixtureRequest) -> None:
    tmp, data, store = _setup(request)
    with FileServer({"/a/%2e%2e": data}) as srv:
        code, out, err = cli("fetch", "--checkpoint", srv.url("/a/%2e%2e"), "--store", str(tmp / "s"), "--json")
    assert code == 0, err
    assert json.loads(out.splitlines()[-1])["files"] == ["checkpoint.pth"]
    assert store.path(store.resolve(f"{MODEL}/checkpoint")).read_bytes() == data
    assert not list(store.downloads_dir.glob("*.part"))


@case(
    "url-long-name",
    area="http",
    fault="a checkpoint URL whose file name has 250 characters, ending in OpenMMLab's digest suffix",
    sees="it downloads and is stored under the name shortened to 120 characters, its suffix kept (an "
    "ENAMETOOLONG traceback before); the digest suffix is still checked: a wrong one is refused",
    kept="no .part file is left; the wrong file is not kept",
    fixed_in="issue 29 #7",
)
def url_long_name(request: pytest.FixtureRequest) -> None:
    tmp, data, store = _setup(request)
    digest = hashlib.sha256(data).hexdigest()
    good, bad = "x" * 230 + f"-{digest[:8]}.pth", "y" * 230 + "-00000000.pth"
    with FileServer({f"/{good}": data, f"/{bad}": data}) as srv:
        code, out, err = cli("fetch", "--checkpoint", srv.url(f"/{good}"), "--store", str(tmp / "s"), "--json")
        assert code == 0, err
        (name,) = json.loads(out.splitlines()[-1])["files"]
        assert len(name) == 120 and name.startswith("xxx") and name.endswith(".pth"), name
        code, _, err = cli("fetch", "--checkpoint", srv.url(f"/{bad}"), "--store", str(tmp / "s"))
        assert code == 2 and "checksum mismatch" in err and "-00000000" in err, err
    assert not list(store.downloads_dir.glob("*.part"))
    assert len(store.versions(f"{MODEL}/checkpoint")) == 1
