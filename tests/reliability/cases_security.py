"""Security: checkpoints that would run code, and names that would reach outside the store."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from tests.reliability.catalogue import case
from tests.reliability.helpers import MODEL, cli, evil_checkpoint, no_traceback, snapshot
from tests.support.http import FileServer


@case(
    "malicious-pickle-export",
    area="security",
    fault="`zooflow export --checkpoint evil.pth`, whose pickle calls os.mkdir (a stand-in for any payload)",
    sees="exit 2: the file needs full unpickling, names the global it refers to (posix.mkdir), says nothing was run, and how to opt in for a trusted file",
    kept="the payload never ran; no checkpoint, ONNX or version was stored; the user's file is untouched",
    fixed_in="issue 10 #1",
)
def malicious_export(request: pytest.FixtureRequest) -> None:
    tmp: Path = request.getfixturevalue("tmp_path")
    marker = tmp / "PAYLOAD-RAN"
    evil = evil_checkpoint(tmp / "evil.pth", marker, request.getfixturevalue("checkpoint_file"))
    before = evil.read_bytes()
    code, _, err = cli("export", "--checkpoint", str(evil), "--out", str(tmp / "m.onnx"), "--store", str(tmp / "s"))
    assert code == 2 and "refused to load it and nothing in it was run" in err and "mkdir" in err
    assert "--trust-checkpoint" in err
    no_traceback(err)
    assert not marker.exists() and not (tmp / "m.onnx").exists() and evil.read_bytes() == before
    code, out, _ = cli("artifacts", "list", "--store", str(tmp / "s"), "--json")
    assert code == 0 and json.loads(out) == []


@case(
    "malicious-pickle-url",
    area="security",
    fault="`zooflow fetch --checkpoint http://.../evil.pth` (the download path `run --checkpoint URL` takes)",
    sees="exit 2 with the same refusal; the download itself completed",
    kept="the payload never ran; nothing published as checkpoint@latest",
    fixed_in="issue 10 #1",
)
def malicious_url(request: pytest.FixtureRequest) -> None:
    tmp: Path = request.getfixturevalue("tmp_path")
    marker = tmp / "PAYLOAD-RAN"
    evil = evil_checkpoint(tmp / "evil.pth", marker, request.getfixturevalue("checkpoint_file"))
    with FileServer({"/evil.pth": evil.read_bytes()}) as srv:
        code, _, err = cli("fetch", "--checkpoint", srv.url("/evil.pth"), "--store", str(tmp / "s"))
    assert code == 2 and "nothing in it was run" in err and "nothing was published" in err
    no_traceback(err)
    assert not marker.exists()
    assert cli("artifacts", "list", "--store", str(tmp / "s"), "--json")[1].strip() == "[]"


@case(
    "malicious-pickle-run",
    area="security",
    fault="`deploy_classifier` (the UI's one-off run) with `checkpoint` pointing at evil.pth",
    sees="the run fails at the fetch stage with the refusal (no traceback for this error on the console)",
    kept="the payload never ran; the dataset index scanned before is kept",
    fixed_in="issue 10 #1",
)
def malicious_run(request: pytest.FixtureRequest) -> None:
    request.getfixturevalue("prefect_api")
    from flows.runner import _finish
    from zooflow.runconfig import RunConfig
    from zooflow.store import Store

    tmp: Path = request.getfixturevalue("tmp_path")
    data: Path = request.getfixturevalue("demo_small")
    marker = tmp / "PAYLOAD-RAN"
    evil = evil_checkpoint(tmp / "evil.pth", marker, request.getfixturevalue("checkpoint_file"))
    from flows.deploy_classifier import deploy_classifier

    config = RunConfig(
        checkpoint=str(evil), data={"path": str(data / "val")}, calibration={"allow_short": True}, store=str(tmp / "s")
    )
    result = _finish(deploy_classifier(config, return_state=True))
    assert result["status"] == "failed" and result["exit_code"] == 2
    assert "nothing in it was run" in result["error"] and "--trust-checkpoint" in (result["fix"] or "")
    assert not marker.exists()
    kinds = {Store(tmp / "s").manifest(d).kind for d in Store(tmp / "s").digests()}
    assert "dataset-index" in kinds and "checkpoint" not in kinds


@case(
    "trusted-checkpoint-opt-in",
    area="security",
    fault="an old checkpoint whose metadata holds an argparse.Namespace (not plain weights)",
    sees="refused without opt-in, naming argparse.Namespace; with --trust-checkpoint it loads and the manifest and the run summary say it was fully unpickled",
    kept="without opt-in nothing is stored",
    fixed_in="issue 10 #1",
)
def trusted_opt_in(request: pytest.FixtureRequest) -> None:
    import torch

    tmp: Path = request.getfixturevalue("tmp_path")
    ckpt = torch.load(request.getfixturevalue("checkpoint_file"), weights_only=True)
    ckpt["meta"] = {"args": argparse.Namespace(lr=0.1)}
    path = tmp / "old.pth"
    torch.save(ckpt, path)
    code, _, err = cli("fetch", "--checkpoint", str(path), "--store", str(tmp / "s"))
    assert code == 2 and "argparse.Namespace" in err
    code, _, err = cli("fetch", "--checkpoint", str(path), "--store", str(tmp / "s"), "--trust-checkpoint", "--json")
    assert code == 0, err
    code, shown, _ = cli("artifacts", "show", f"{MODEL}/checkpoint", "--store", str(tmp / "s"))
    load = json.loads(shown)["meta"]["load"]
    assert (
        load["unpickled"] is True and load["trusted_by_user"] is True and "argparse.Namespace" in load["unsafe_globals"]
    )


@case(
    "numpy-metadata-checkpoint",
    area="security",
    fault="a checkpoint whose metadata holds numpy scalars and arrays, as mmcv's runner writes them",
    sees="loads without any opt-in (numpy's plain types are allow-listed for the weights-only loader)",
    kept="the checkpoint, stored and verified",
    fixed_in="issue 10 #1",
)
def numpy_meta(request: pytest.FixtureRequest) -> None:
    import numpy as np
    import torch

    tmp: Path = request.getfixturevalue("tmp_path")
    ckpt = torch.load(request.getfixturevalue("checkpoint_file"), weights_only=True)
    ckpt["meta"] = {"hook_msgs": {"best_score": np.float64(0.68), "best_ckpt": "x"}, "hist": np.arange(4), "epoch": 100}
    path = tmp / "mmcv.pth"
    torch.save(ckpt, path)
    code, _, err = cli("fetch", "--checkpoint", str(path), "--store", str(tmp / "s"), "--json")
    assert code == 0, err
    assert "--trust-checkpoint" not in err


@case(
    "alias-path-traversal",
    area="security",
    fault="`zooflow artifacts alias '../../outside@1' good`",
    sees="exit 2: invalid artifact name, with the allowed form",
    kept="nothing is read or written outside the store",
    fixed_in="issue 10 #10",
)
def alias_traversal(request: pytest.FixtureRequest) -> None:
    tmp: Path = request.getfixturevalue("tmp_path")
    from zooflow.fetch import fetch_checkpoint
    from zooflow.store import Store

    store_dir = tmp / "area" / "store"
    fetch_checkpoint(
        str(request.getfixturevalue("checkpoint_file")), Store(store_dir), model=MODEL, show_progress=False
    )
    # what the reviewer planted: a versions folder outside the store that the traversal would reach
    outside = tmp / "outside" / "versions"
    outside.mkdir(parents=True)
    (outside / "000001.json").write_text(
        json.dumps({"name": "x", "version": 1, "digest": "0" * 64, "kind": "x", "created": ""})
    )
    before = snapshot(tmp / "outside"), snapshot(store_dir)
    code, _, err = cli("artifacts", "alias", "../../outside@1", "good", "--store", str(store_dir))
    assert code == 2 and "invalid artifact name '../../outside'" in err
    no_traceback(err)
    assert (snapshot(tmp / "outside"), snapshot(store_dir)) == before


@case(
    "baseline-path-traversal",
    area="security",
    fault="`--gate top1:max_drop_vs_baseline=1,baseline=../../outside@1`",
    sees="exit 2 before any work: the baseline is not an artifact reference, with the allowed forms",
    kept="nothing is started or written",
    fixed_in="issue 10 #10",
)
def baseline_traversal(request: pytest.FixtureRequest) -> None:
    tmp: Path = request.getfixturevalue("tmp_path")
    code, _, err = cli(
        "run", "--demo", "--gate", "top1:max_drop_vs_baseline=1,baseline=../../outside@1", "--store", str(tmp / "s")
    )
    assert code == 2 and "is not an artifact reference" in err
    assert not (tmp / "s").exists()


@case(
    "tampered-version-record",
    area="security",
    fault="a version record whose digest was edited to '../../../etc'",
    sees="`artifacts list` lists the rest and names the damaged record with the repair; resolving it is an error naming the file",
    kept="no path outside the store is read; other versions stay usable",
    fixed_in="issue 10 #10",
)
def tampered_record(request: pytest.FixtureRequest) -> None:
    tmp: Path = request.getfixturevalue("tmp_path")
    from zooflow.fetch import fetch_checkpoint
    from zooflow.store import Store

    store = Store(tmp / "s")
    fetch_checkpoint(str(request.getfixturevalue("checkpoint_file")), store, model=MODEL, show_progress=False)
    record = tmp / "s" / "names" / MODEL / "checkpoint" / "versions" / "000002.json"
    record.write_text(
        json.dumps({"name": f"{MODEL}/checkpoint", "version": 2, "digest": "../../../etc", "kind": "x", "created": ""})
    )
    code, out, err = cli("artifacts", "list", "--store", str(tmp / "s"), "--json")
    assert code == 1 and [r["version"] for r in json.loads(out)] == [1] and "000002.json" in err and "gc --apply" in err
    code, _, err = cli("artifacts", "show", f"{MODEL}/checkpoint@1", "--store", str(tmp / "s"))
    assert code == 2 and "damaged" in err and "000002.json" in err
    no_traceback(err)


@case(
    "legacy-format-checkpoint",
    area="security",
    fault="a checkpoint in torch's legacy (pre-1.6, non-zip) format whose metadata holds an argparse.Namespace; "
    "and the same file with a pickled os.mkdir payload",
    sees="refused without opt-in naming argparse.Namespace (before: 'not a readable checkpoint', with terminal "
    "escape codes from torch's message, even with --trust-checkpoint); with --trust-checkpoint it loads; the "
    "payload file names posix.mkdir and never runs without the opt-in",
    kept="without opt-in nothing is stored and nothing in the file runs",
    fixed_in="issue 29 #7",
)
def legacy_checkpoint(request: pytest.FixtureRequest) -> None:
    import torch

    tmp: Path = request.getfixturevalue("tmp_path")
    ckpt = torch.load(request.getfixturevalue("checkpoint_file"), weights_only=True)
    ckpt["meta"] = {"args": argparse.Namespace(lr=0.1)}
    path = tmp / "legacy.pth"
    torch.save(ckpt, path, _use_new_zipfile_serialization=False)
    assert not path.read_bytes().startswith(b"PK")  # really the legacy format
    code, _, err = cli("fetch", "--checkpoint", str(path), "--store", str(tmp / "s"))
    assert code == 2 and "argparse.Namespace" in err and "--trust-checkpoint" in err and "\x1b" not in err, err
    assert not (tmp / "s" / "names").exists()
    code, _, err = cli("fetch", "--checkpoint", str(path), "--store", str(tmp / "s"), "--trust-checkpoint")
    assert code == 0, err
    marker = tmp / "payload-ran"
    evil = tmp / "evil-legacy.pth"
    ckpt = torch.load(request.getfixturevalue("checkpoint_file"), weights_only=True)
    from tests.reliability.helpers import Evil

    ckpt["meta"] = {"payload": Evil(marker)}
    torch.save(ckpt, evil, _use_new_zipfile_serialization=False)
    code, _, err = cli("fetch", "--checkpoint", str(evil), "--store", str(tmp / "s2"))
    assert code == 2 and "posix.mkdir" in err and not marker.exists(), err


@case(
    "nan-weights",
    area="bad input",
    fault="`zooflow export` of a checkpoint with one NaN weight (and one with an infinity)",
    sees="exit 2 at fetch: the file holds N NaN or infinite weight value(s), naming the tensor, a damaged or "
    "diverged checkpoint (it was blamed on the exporter: 'try another --opset')",
    kept="nothing is published: no checkpoint, no ONNX; the user's file is untouched",
    fixed_in="issue 29 #7",
)
def nan_weights(request: pytest.FixtureRequest) -> None:
    import torch

    tmp: Path = request.getfixturevalue("tmp_path")
    for value, name in ((float("nan"), "nan.pth"), (float("inf"), "inf.pth")):
        ckpt = torch.load(request.getfixturevalue("checkpoint_file"), weights_only=True)
        key = next(k for k, v in ckpt["state_dict"].items() if v.is_floating_point() and v.ndim == 4)
        ckpt["state_dict"][key].view(-1)[3] = value
        torch.save(ckpt, tmp / name)
        before = (tmp / name).read_bytes()
        code, _, err = cli(
            "export", "--checkpoint", str(tmp / name), "--out", str(tmp / "m.onnx"), "--store", str(tmp / "s")
        )
        assert code == 2 and "1 NaN or infinite weight value(s) in 1 tensor(s)" in err and key in err, err
        assert "opset" not in err and "diverged" in err
        assert (tmp / name).read_bytes() == before and not (tmp / "m.onnx").exists()
    assert not (tmp / "s" / "names").exists()
