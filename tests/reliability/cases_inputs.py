"""Bad input: every one is refused with the problem and the fix, before work it would spoil."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.reliability.catalogue import case
from tests.reliability.helpers import MODEL, cli, no_traceback, snapshot


def _copy_small(request: pytest.FixtureRequest) -> Path:
    data: Path = request.getfixturevalue("demo_small")
    tmp: Path = request.getfixturevalue("tmp_path")
    shutil.copytree(data, tmp / "d")
    return tmp / "d"


@case(
    "misspelled-preset",
    area="bad input",
    fault="`zooflow run --demo --quant int8-maxx`",
    sees="exit 2: unknown quantization preset 'int8-maxx' (did you mean 'int8-max'?) and the list of presets",
    kept="nothing is started",
)
def misspelled_preset(request: pytest.FixtureRequest) -> None:
    tmp: Path = request.getfixturevalue("tmp_path")
    code, _, err = cli("run", "--demo", "--quant", "int8-maxx", "--store", str(tmp / "s"))
    assert code == 2 and "did you mean 'int8-max'?" in err
    no_traceback(err)


@case(
    "misspelled-option",
    area="bad input",
    fault="a flow parameter spelled `tolchain` (the UI form, a deployment, a matrix file)",
    sees="unknown option (did you mean 'toolchain'?), with the options there are",
    kept="nothing is started",
)
def misspelled_option(request: pytest.FixtureRequest) -> None:
    from zooflow.config import build
    from zooflow.errors import ConfigError
    from zooflow.runconfig import RunConfig

    with pytest.raises(ConfigError, match=r"tolchain: unknown option \(did you mean 'toolchain'\?\)"):
        build(RunConfig, demo=True, tolchain="vastai")


@case(
    "unknown-model",
    area="bad input",
    fault="`zooflow run --model shufflenet-v1`",
    sees="exit 2: unknown model name, with the fix",
    kept="nothing is started",
)
def unknown_model(request: pytest.FixtureRequest) -> None:
    tmp: Path = request.getfixturevalue("tmp_path")
    code, _, err = cli("run", "--model", "shufflenet-v1", "--data", str(tmp), "--store", str(tmp / "s"))
    assert code == 2 and "unknown model name 'shufflenet-v1'" in err and "fix:" in err


@case(
    "missing-data-folder",
    area="bad input",
    fault="`zooflow check-data --data /no/such/folder`",
    sees="exit 2: dataset folder not found, pass --data with the folder of validation images",
    kept="nothing is written",
)
def missing_data(request: pytest.FixtureRequest) -> None:
    tmp: Path = request.getfixturevalue("tmp_path")
    code, _, err = cli("check-data", "--data", str(tmp / "nope"))
    assert code == 2 and "dataset folder not found" in err


@case(
    "labels-not-utf8",
    area="bad input",
    fault="a val_label.txt saved in Latin-1 (a byte that is not UTF-8)",
    sees="exit 2: the labels file is not UTF-8 text, the byte and its line, and how to convert it",
    kept="the dataset and the labels file are untouched",
    fixed_in="issue 10 #12",
)
def labels_latin1(request: pytest.FixtureRequest) -> None:
    root = _copy_small(request)
    labels = root / "val_label.txt"
    labels.write_bytes(labels.read_bytes() + "caf\xe9.JPEG 3\n".encode("latin-1"))
    before = snapshot(root)
    code, _, err = cli("check-data", "--data", str(root / "val"), "--no-decode")
    count = labels.read_bytes().count(b"\n")
    assert code == 2 and "is not UTF-8 text: byte 0xe9 on line" in err and f"line {count}" in err and "iconv" in err
    no_traceback(err)
    assert snapshot(root) == before


@case(
    "labels-with-bom",
    area="bad input",
    fault="a val_label.txt saved with a UTF-8 byte-order mark (Windows editors do)",
    sees="it just works: the first file is labelled (not reported missing and unlabelled)",
    kept="-",
    fixed_in="issue 10 #12",
)
def labels_bom(request: pytest.FixtureRequest) -> None:
    root = _copy_small(request)
    labels = root / "val_label.txt"
    labels.write_bytes(b"\xef\xbb\xbf" + labels.read_bytes())
    code, out, err = cli("check-data", "--data", str(root / "val"), "--no-decode", "--json")
    assert code == 0, err
    assert json.loads(out)["images"] == 36


@case(
    "labels-missing-and-unlabelled",
    area="bad input",
    fault="a labels line naming a missing file, an image without a label, a label out of range, a duplicate line",
    sees="exit 2 listing every problem at once, by file and line",
    kept="nothing is written",
)
def labels_problems(request: pytest.FixtureRequest) -> None:
    root = _copy_small(request)
    labels = root / "val_label.txt"
    lines = labels.read_text().splitlines()
    first = lines[0].split()[0]
    labels.write_text("\n".join([*lines[1:], "ghost.JPEG 1", f"{lines[1].split()[0]} 2", "x.JPEG 5000"]) + "\n")
    code, _, err = cli("check-data", "--data", str(root / "val"), "--no-decode")
    assert code == 2
    for text in (
        "ghost.JPEG (line",
        f"without a label in val_label.txt (1): {first}",
        "listed more than once",
        "outside 0..999",
    ):
        assert text in err, text


@case(
    "corrupt-jpegs",
    area="bad input",
    fault="one JPEG that is garbage and one truncated to half its size",
    sees="check-data lists both by name with the decoder's reason (exit 1); a run refuses with the list, or with --skip-corrupt leaves them out and records them",
    kept="the images; the other shards of an npz stage finish and are kept",
)
def corrupt_jpegs(request: pytest.FixtureRequest) -> None:
    from zooflow import datasets, npz
    from zooflow.config import DataSpec
    from zooflow.errors import DatasetError
    from zooflow.store import Store

    root = _copy_small(request)
    images = sorted((root / "val").glob("*.JPEG"))
    images[5].write_bytes(b"not a jpeg")
    images[30].write_bytes(images[30].read_bytes()[: images[30].stat().st_size // 2])
    code, out, _ = cli("check-data", "--data", str(root / "val"), "--workers", "1", "--json")
    corrupt = json.loads(out.strip().splitlines()[-1])["corrupt"]
    assert code == 1 and set(corrupt) == {images[5].name, images[30].name}
    store = Store(request.getfixturevalue("tmp_path") / "s")
    data = datasets.scan(DataSpec(path=str(root / "val")))
    params = npz.NpzParams.for_format("vastai", None, None)
    with pytest.raises(DatasetError, match="2 of 3 npz shard") as exc:
        npz.build_npz(data, store, params, shard_size=12, show_progress=False)
    assert images[5].name in exc.value.problem and "--skip-corrupt" in (exc.value.fix or "")
    assert len(store.digests()) == 1  # the clean shard is kept
    ref = npz.build_npz(data, store, params, shard_size=12, show_progress=False, skip_corrupt=True)
    assert ref.meta["skipped_corrupt"] == 2 and ref.meta["count"] == 34


@case(
    "checkpoint-file-missing",
    area="bad input",
    fault="`zooflow fetch --checkpoint ./missing.pth`",
    sees="exit 2: checkpoint file not found, with the accepted sources",
    kept="nothing is written",
)
def checkpoint_missing(request: pytest.FixtureRequest) -> None:
    tmp: Path = request.getfixturevalue("tmp_path")
    code, _, err = cli("fetch", "--checkpoint", str(tmp / "missing.pth"), "--store", str(tmp / "s"))
    assert code == 2 and "checkpoint file not found" in err


@case(
    "wrong-sha256",
    area="bad input",
    fault="`zooflow fetch --checkpoint x.pth --sha256 <wrong>`",
    sees="exit 2: checksum mismatch naming both digests; the file was not kept",
    kept="earlier checkpoint versions; no partial file, no new version",
)
def wrong_sha(request: pytest.FixtureRequest) -> None:
    tmp: Path = request.getfixturevalue("tmp_path")
    ckpt = str(request.getfixturevalue("checkpoint_file"))
    assert cli("fetch", "--checkpoint", ckpt, "--store", str(tmp / "s"))[0] == 0
    before = snapshot(tmp / "s" / "objects")
    code, _, err = cli("fetch", "--checkpoint", ckpt, "--sha256", "0" * 64, "--store", str(tmp / "s"))
    assert code == 2 and "checksum mismatch" in err and "not kept" in err
    assert snapshot(tmp / "s" / "objects") == before


@case(
    "truncated-checkpoint",
    area="bad input",
    fault="a checkpoint file cut to 3 MB of its 7.7 MB (an interrupted copy), no digest given",
    sees="exit 2: not a readable PyTorch checkpoint (may be truncated); nothing was published",
    kept="the previous checkpoint@latest stays the latest",
    fixed_in="issue 10 #7",
)
def truncated_checkpoint(request: pytest.FixtureRequest) -> None:
    tmp: Path = request.getfixturevalue("tmp_path")
    good: Path = request.getfixturevalue("checkpoint_file")
    assert cli("fetch", "--checkpoint", str(good), "--store", str(tmp / "s"))[0] == 0
    cut = tmp / good.name
    cut.write_bytes(good.read_bytes()[:3_000_000])
    code, _, err = cli("fetch", "--checkpoint", str(cut), "--store", str(tmp / "s"))
    assert code == 2 and "not a readable PyTorch checkpoint" in err and "nothing was published" in err
    code, out, _ = cli("artifacts", "list", "checkpoint", "--store", str(tmp / "s"), "--json")
    assert [r["version"] for r in json.loads(out)] == [1]


@case(
    "checkpoint-of-another-model",
    area="bad input",
    fault="`zooflow export --model shufflenet-v1... --checkpoint` of a checkpoint with changed keys and shapes",
    sees="exit 2 listing missing, unexpected and mis-shaped keys, and the fix (--model)",
    kept="no ONNX is stored",
)
def wrong_architecture(request: pytest.FixtureRequest) -> None:
    import torch

    tmp: Path = request.getfixturevalue("tmp_path")
    ckpt = torch.load(request.getfixturevalue("checkpoint_file"), weights_only=True)
    ckpt["state_dict"].pop("head.fc.bias")
    ckpt["state_dict"]["head.fc.weight"] = torch.zeros(10, 960)
    torch.save(ckpt, tmp / "other.pth")
    code, _, err = cli(
        "export", "--checkpoint", str(tmp / "other.pth"), "--out", str(tmp / "m.onnx"), "--store", str(tmp / "s")
    )
    assert code == 2 and "1 missing key(s): head.fc.bias" in err and "(10, 960) vs (1000, 960)" in err
    assert not (tmp / "m.onnx").exists()


@case(
    "bad-gate",
    area="bad input",
    fault="`--gate top1:max_drop=1` (no such limit) and `--gate top1` (no limit)",
    sees="exit 2 naming the field and the allowed limits",
    kept="nothing is started",
)
def bad_gate(request: pytest.FixtureRequest) -> None:
    tmp: Path = request.getfixturevalue("tmp_path")
    code, _, err = cli("run", "--demo", "--gate", "top1:max_drop=1", "--store", str(tmp / "s"))
    assert code == 2 and "max_drop: unknown option" in err
    code, _, err = cli("run", "--demo", "--gate", "top1", "--store", str(tmp / "s"))
    assert code == 2 and "is not METRIC:LIMIT=VALUE" in err


@case(
    "bad-matrix-file",
    area="bad input",
    fault="`zooflow nightly --matrix m.yaml` with a YAML syntax error, and one with a misspelled preset",
    sees="exit 2: not valid YAML (with the line), or the field that is wrong, the value, and the value meant (did you mean 'int8-max'?)",
    kept="nothing is started",
)
def bad_matrix(request: pytest.FixtureRequest) -> None:
    tmp: Path = request.getfixturevalue("tmp_path")
    (tmp / "m.yaml").write_text("name: x\nmodels: [\n")
    code, _, err = cli("nightly", "--matrix", str(tmp / "m.yaml"), "--store", str(tmp / "s"))
    assert code == 2 and "is not valid YAML" in err
    (tmp / "m.yaml").write_text("name: x\nmodels:\n  - presets: [int8-maxx]\n")
    code, _, err = cli("nightly", "--matrix", str(tmp / "m.yaml"), "--store", str(tmp / "s"))
    assert code == 2 and "got 'int8-maxx' (did you mean 'int8-max'?)" in err


def _vamp_folder(tmp: Path, count: int) -> tuple[Path, Path, Path]:
    out = tmp / "vamp"
    out.mkdir()
    rng = np.random.default_rng(0)
    names = [f"ILSVRC2012_val_{i:08d}.npz" for i in range(1, count + 1)]
    for i in range(count):
        with open(out / f"output_{i:06d}.npz", "wb") as fh:
            np.savez(fh, output_0=rng.standard_normal((1, 1000)).astype(np.float32))
    datalist = tmp / "datalist.txt"
    datalist.write_text("".join(f"/data/npz/{n}\n" for n in names))
    labels = tmp / "val_label.txt"
    labels.write_text("".join(f"{n.replace('.npz', '.JPEG')} {i}\n" for i, n in enumerate(names)))
    return out, datalist, labels


@case(
    "eval-corrupt-output-file",
    area="bad input",
    fault="`zooflow eval --outputs vamp_out` where output_000002.npz was cut short (a full disk, a killed copy)",
    sees="exit 2 naming output_000002.npz: not a readable .npz file (BadZipFile), nothing was scored",
    kept="the output files",
    fixed_in="issue 10 #12",
)
def eval_corrupt_file(request: pytest.FixtureRequest) -> None:
    tmp: Path = request.getfixturevalue("tmp_path")
    out, datalist, labels = _vamp_folder(tmp, 4)
    bad = out / "output_000002.npz"
    bad.write_bytes(bad.read_bytes()[:100])
    code, _, err = cli(
        "eval", "--outputs", str(out), "--datalist", str(datalist), "--labels", str(labels), "--semantics", "logits"
    )
    assert code == 2 and "output_000002.npz is not a readable .npz file" in err and "nothing was scored" in err
    no_traceback(err)
    with pytest.raises(zipfile.BadZipFile):
        np.load(bad)


@case(
    "eval-missing-output-file",
    area="bad input",
    fault="`zooflow eval` over a vamp folder with output_000001.npz missing and a stale output_000004.npz",
    sees="exit 2: the outputs do not pair with the datalist (missing, and stale or extra), never a shifted score",
    kept="the output files",
)
def eval_missing_file(request: pytest.FixtureRequest) -> None:
    tmp: Path = request.getfixturevalue("tmp_path")
    out, datalist, labels = _vamp_folder(tmp, 5)
    (out / "output_000001.npz").unlink()
    datalist.write_text("".join(datalist.read_text().splitlines(keepends=True)[:4]))
    code, _, err = cli(
        "eval", "--outputs", str(out), "--datalist", str(datalist), "--labels", str(labels), "--semantics", "logits"
    )
    assert code == 2 and "1 missing" in err and "stale or extra" in err


@case(
    "eval-damaged-stored-outputs",
    area="bad input",
    fault="`zooflow eval --outputs NAME` after a stored outputs shard was damaged on disk",
    sees="exit 2: the stored outputs are damaged (which file, why), nothing was scored; the fix says how to recompute",
    kept="the store's other artifacts",
    fixed_in="issue 10 #12",
)
def eval_damaged_store(request: pytest.FixtureRequest) -> None:
    from zooflow import datasets, npz
    from zooflow.config import DataSpec
    from zooflow.store import Store
    from zooflow.toolchains import outputs

    tmp: Path = request.getfixturevalue("tmp_path")
    store = Store(tmp / "s")
    data = datasets.scan(DataSpec(path=str(request.getfixturevalue("demo_small") / "val"))).limited(4)
    ref = npz.build_npz(data, store, npz.NpzParams.for_format("vastai", None, None), shard_size=4, show_progress=False)
    shard = store.ref(json.loads(store.path(ref, "index.json").read_text())["shards"][0]["digest"])
    rows = np.random.default_rng(1).standard_normal((4, 1000)).astype(np.float32)
    names = [r.name for r in data.records]
    out = outputs.commit_shard(store, np.arange(4), names, rows, compiled=ref, shard=shard, meta={}, toolchain={})
    done = outputs.assemble(store, [out], compiled=ref.model_copy(update={"name": f"{MODEL}/x"}), npz=ref, toolchain={})
    target = store.path(out, "outputs.npz")
    target.chmod(0o644)
    target.write_bytes(target.read_bytes()[:-10] + b"0123456789")
    code, _, err = cli("eval", "--outputs", done.digest, "--store", str(tmp / "s"))
    assert code == 2 and f"stored outputs {out.digest[:12]} are damaged" in err and "outputs.npz: sha256" in err
    no_traceback(err)


def _npz_arrays(tmp: Path, data: Path, fmt: str) -> dict[str, np.ndarray]:
    """`zooflow npz --format FMT` of a dataset, read back through its datalist: name -> array."""
    from zooflow import npz

    out = tmp / f"npz-{fmt}"
    code, _, err = cli("npz", "--data", str(data), "--format", fmt, "--out", str(out), "--store", str(tmp / "s"))
    assert code == 0, err
    return {Path(name).stem: array for name, _, array in npz.read(out / "datalist.txt")}


def _labelled(tmp: Path, root: Path) -> list[str]:
    """Label every file of a flat folder (its own class each) in val_label.txt beside it."""
    names = sorted(p.name for p in root.iterdir())
    (tmp / "val_label.txt").write_text("".join(f"{n} {i}\n" for i, n in enumerate(names)))
    return names


def _same_in_every_format(tmp: Path, root: Path, stems: tuple[str, ...]) -> None:
    """check-data counts every file; each stem's array equals its ``_twin`` PNG's in every npz format."""
    code, out, err = cli("check-data", "--data", str(root), "--json")
    assert code == 0 and json.loads(out.splitlines()[-1])["images"] == len(list(root.iterdir())), err
    for fmt in ("model", "vastai", "dsp"):
        arrays = _npz_arrays(tmp, root, fmt)
        for stem in stems:
            assert np.array_equal(arrays[stem], arrays[f"{stem}_twin"]), (fmt, stem)


@case(
    "gif-and-tiff-images",
    area="bad input",
    fault="a labelled dataset holding a 2-frame GIF and a TIFF beside their PNG twins",
    sees="both count as images (they were 'missing though present'); every format (model, vastai, dsp) stores "
    "the GIF's first frame and the TIFF exactly as their PNG twins",
    kept="the dataset",
    fixed_in="issue 29 #7",
)
def gif_and_tiff(request: pytest.FixtureRequest) -> None:
    from PIL import Image

    tmp: Path = request.getfixturevalue("tmp_path")
    root = tmp / "val"
    root.mkdir()
    rng = np.random.default_rng(3)
    first, second, tiff = (rng.integers(0, 256, (96, 120, 3), dtype=np.uint8) for _ in range(3))
    frames = [Image.fromarray(a).quantize(64, dither=Image.Dither.NONE) for a in (first, second)]
    frames[0].save(root / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    frames[0].convert("RGB").save(root / "anim_twin.png")  # the first frame as PIL decodes it
    Image.fromarray(tiff).save(root / "scan.tiff")
    Image.fromarray(tiff).save(root / "scan_twin.png")
    _labelled(tmp, root)
    _same_in_every_format(tmp, root, ("anim", "scan"))


@case(
    "png-16-bit",
    area="bad input",
    fault="a 16-bit grey PNG (a gradient over 0..65535) in a labelled dataset",
    sees="every format stores it as the 8-bit PNG of its top 8 bits (cv2.imread's documented conversion); the "
    "model format clipped it nearly white before while vastai and dsp scaled it",
    kept="the dataset",
    fixed_in="issue 29 #7",
)
def png_16_bit(request: pytest.FixtureRequest) -> None:
    from PIL import Image

    tmp: Path = request.getfixturevalue("tmp_path")
    root = tmp / "val"
    root.mkdir()
    wide = (np.arange(200 * 256, dtype=np.uint32).reshape(200, 256) * 65535 // (200 * 256 - 1)).astype(np.uint16)
    Image.fromarray(wide).save(root / "deep.png")
    assert Image.open(root / "deep.png").mode == "I;16"
    Image.fromarray((wide >> 8).astype(np.uint8)).save(root / "deep_twin.png")
    _labelled(tmp, root)
    _same_in_every_format(tmp, root, ("deep",))
    deep = _npz_arrays(tmp, root, "vastai")["deep"]
    assert np.array_equal(deep, np.broadcast_to((wide >> 8).astype(np.uint8), (3, *wide.shape)))


@case(
    "image-names-unrecordable",
    area="bad input",
    fault="in a synset dataset: an image whose name holds a newline, one whose name is Latin-1 bytes (not UTF-8), "
    "a link to itself and a link to nothing, each named .JPEG",
    sees="check-data, npz and calib exit 2 before anything is stored, listing each by name (a newline shown as "
    "\\n, a bad byte as \\xe9) with the fix; before, npz committed an artifact it could not read back, the "
    "byte gave UnicodeEncodeError and the loop an ELOOP traceback",
    kept="the dataset; nothing is committed (no npz, no calibration set)",
    fixed_in="issue 29 #4",
)
def names_unrecordable(request: pytest.FixtureRequest) -> None:
    import os

    tmp: Path = request.getfixturevalue("tmp_path")
    root = tmp / "D"
    code, _, err = cli("demo-data", "--out", str(root), "--classes", "3", "--per-class", "2", "--layout", "synset")
    assert code == 0, err
    folder = sorted((root / "val").iterdir())[0]
    image = sorted(folder.iterdir())[0]
    shutil.copyfile(image, folder / "two\nlines.JPEG")
    shutil.copyfile(image, os.fsdecode(bytes(folder) + b"/caf\xe9.JPEG"))
    (folder / "loop.JPEG").symlink_to("loop.JPEG")
    (folder / "gone.JPEG").symlink_to("nowhere.JPEG")
    before = snapshot(root)
    store = ["--store", str(tmp / "s")]
    for args in (
        ["check-data", "--data", str(root / "val")],
        ["npz", "--data", str(root / "val"), "--out", str(tmp / "n"), *store],
        ["calib", "--data", str(root / "val"), "--out", str(tmp / "c"), "--allow-short", *store],
    ):
        code, _, err = cli(*args)
        assert code == 2, (args, err)
        no_traceback(err)
        for shown in ("'two\\nlines.JPEG'", "'caf\\xe9.JPEG' is not valid UTF-8", "loop.JPEG (Too many levels"):
            assert shown in err, (shown, err)
        assert "gone.JPEG (leads to nowhere.JPEG" in err and "rename them" in err
    assert snapshot(root) == before
    assert not (tmp / "s" / "names").exists() and not (tmp / "n").exists() and not (tmp / "c").exists()


def _refused_before_work(tmp: Path, cases: list[tuple[list[str], str]]) -> None:
    """Each command exits 2 naming the bound, before any work: no store and no output folder appear."""
    for args, says in cases:
        code, _, err = cli(*args)
        assert code == 2 and says in err, (args, err)
        no_traceback(err)
    assert not (tmp / "s").exists() and not (tmp / "n").exists()


@case(
    "threads-out-of-bounds",
    area="bad input",
    fault="`run --bench-threads 100000`, `bench --threads 1000`, `npz --workers 1000`",
    sees="exit 2 before any work naming the option and the bound: at most 4 threads (or workers) per core, "
    "at least 8 (before, the run grew to 17.5 GB RSS in 5 minutes and bench hung)",
    kept="nothing is started: no store is created",
    fixed_in="issue 29 #6",
)
def threads_out_of_bounds(request: pytest.FixtureRequest) -> None:
    import os

    tmp: Path = request.getfixturevalue("tmp_path")
    data: Path = request.getfixturevalue("demo_small")
    store = ["--store", str(tmp / "s")]
    most, cores = max(8, 4 * (os.cpu_count() or 1)), os.cpu_count()
    npz = ["npz", "--data", str(data / "val"), "--out", str(tmp / "n"), *store]
    _refused_before_work(
        tmp,
        [
            (
                ["run", "--demo", "--bench-threads", "100000", *store],
                f"100000 threads on {cores} cores: at most {most}",
            ),
            (["bench", "--compiled", "x", "--threads", "1000", *store], f"1000 threads on {cores} cores"),
            ([*npz, "--workers", "1000"], f"1000 worker processes on {cores} cores: at most {most}"),
        ],
    )


@case(
    "pre-resize-out-of-bounds",
    area="bad input",
    fault="`npz --format vastai --pre-resize 0x0 --skip-corrupt`, `--pre-resize 100000x100000`, and `run "
    "--toolchain vastai --pre-resize 0x0`",
    sees="exit 2 before any work: each side 32..16384 and at most 89,478,485 pixels (PIL's limit); before, 0x0 "
    "committed an empty npz with exit 0 and 100000x100000 asked for 30 GB",
    kept="nothing is started: no store is created",
    fixed_in="issue 29 #7",
)
def pre_resize_out_of_bounds(request: pytest.FixtureRequest) -> None:
    tmp: Path = request.getfixturevalue("tmp_path")
    data: Path = request.getfixturevalue("demo_small")
    store = ["--store", str(tmp / "s")]
    npz = ["npz", "--data", str(data / "val"), "--out", str(tmp / "n"), "--format", "vastai", *store]
    _refused_before_work(
        tmp,
        [
            ([*npz, "--pre-resize", "0x0", "--skip-corrupt"], "0x0 is outside what images are resized to here"),
            ([*npz, "--pre-resize", "100000x100000"], "each side 32..16384 and at most 89,478,485 pixels"),
            (["run", "--demo", "--toolchain", "vastai", "--pre-resize", "0x0", *store], "pre_resize: 0x0 is outside"),
        ],
    )


@case(
    "gate-threshold-out-of-range",
    area="bad input",
    fault="`run --gate agreement:min=150`, `--gate top1:max_drop_vs_reference=500`, `--gate cosine:min=2`",
    sees="exit 2 before any work: agreement is a percentage, min=150 is outside 0..100 (it was accepted, a gate "
    "that can never pass); a drop of more than 100 can never happen; a cosine similarity lies in -1..1",
    kept="nothing is started: no store is created",
    fixed_in="issue 29 #7",
)
def gate_out_of_range(request: pytest.FixtureRequest) -> None:
    tmp: Path = request.getfixturevalue("tmp_path")
    store = ["--store", str(tmp / "s")]
    _refused_before_work(
        tmp,
        [
            (
                ["run", "--demo", "--gate", "agreement:min=150", *store],
                "agreement is a percentage: min=150 is outside 0..100",
            ),
            (["run", "--demo", "--gate", "top1:max_drop_vs_reference=500", *store], "a drop of more than 100"),
            (
                ["run", "--demo", "--gate", "cosine:min=2", *store],
                "cosine is a cosine similarity: min=2 is outside -1..1",
            ),
        ],
    )


@case(
    "calibration-short-found-early",
    area="bad input",
    fault="`run --demo --demo-classes 4` without --allow-short; and `run --data` on a 12-class set without it",
    sees="the demo: exit 2 before Prefect starts, naming --allow-short; the real set: the calibration check "
    "runs right after the scan and fails the run before the checkpoint is fetched or exported (they ran first)",
    kept="the dataset index; no checkpoint or ONNX was made for nothing",
    fixed_in="issue 29 #7",
    slow=True,
)
def calibration_short_early(request: pytest.FixtureRequest) -> None:
    from tests.reliability.helpers import run_env, zooflow_process
    from zooflow.store import Store

    tmp: Path = request.getfixturevalue("tmp_path")
    code, _, err = cli("run", "--demo", "--demo-classes", "4", "--store", str(tmp / "s"))
    assert code == 2 and "--allow-short" in err and "demo's 4 class(es)" in err, err
    assert not (tmp / "s").exists()
    data: Path = request.getfixturevalue("demo_small")
    args = ["run", "--data", str(data / "val"), "--checkpoint", str(request.getfixturevalue("checkpoint_file"))]
    done = zooflow_process(*args, "--store", str(tmp / "s"), env=run_env(tmp, tmp / "s", request))
    assert done.returncode == 2 and "988 of 1000 classes have fewer than 1 image(s)" in done.stderr, done.stderr[-2000:]
    assert "--allow-short" in done.stderr
    kinds = {Store(tmp / "s").manifest(d).kind for d in Store(tmp / "s").digests()}
    assert "dataset-index" in kinds and not kinds & {"checkpoint", "onnx"}, kinds
