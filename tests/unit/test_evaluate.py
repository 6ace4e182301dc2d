"""Evaluation: exact top-1/top-5 on outputs with known answers, pairing, fidelity, gates, reports."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from tests.support.outputs import labelled_npz, stored_outputs
from zooflow import evaluate as ev
from zooflow import imagenet, report
from zooflow import truth as tr
from zooflow.cli import app
from zooflow.config import EvaluationOptions, Gate, QuantSpec
from zooflow.errors import ConfigError
from zooflow.gates import Baselines, GateFailedError, check_gates, raise_on_failure
from zooflow.store import Store

C = 1000
CRANE_BIRD, CRANE_MACHINE = 134, 517  # both named "crane" in ImageNet


def known_answers() -> tuple[list[str], list[int], np.ndarray, float, float]:
    """Eight images whose top-1/top-5 are worked out by hand: cranes, ties, a label ranked 6th."""
    rows = np.zeros((8, C), np.float32)
    labels = [CRANE_BIRD, CRANE_MACHINE, 3, 7, 14, 15, 999, 0]
    rows[0, CRANE_BIRD] = 9  # right
    rows[1, CRANE_BIRD], rows[1, CRANE_MACHINE] = 9, 8  # the other crane wins: wrong top-1, right top-5
    rows[2, [3, 7]] = 5  # tie: the lower id (3) ranks first -> right
    rows[3, [3, 7]] = 5  # same tie, label 7 -> wrong top-1, right top-5
    rows[4, 10:17] = 2  # seven-way tie: top-5 is 10..14; label 14 in it
    rows[5, 10:17] = 2  # label 15 ranks 6th -> wrong top-5
    rows[6, :5] = [5, 4, 3, 2, 1]
    rows[6, 999] = 0.5  # 6th
    # row 7: all equal -> class 0 first -> right
    names = [f"ILSVRC2012_val_{i + 1:08d}.JPEG" for i in range(8)]
    return names, labels, rows, 100 * 3 / 8, 100 * 6 / 8


def test_top1_top5_are_exact_with_ties_and_both_cranes() -> None:
    names, labels, rows, top1, top5 = known_answers()
    scores = ev.score(rows, tr.Truth(names=names, labels=np.array(labels)))
    assert scores.top1 == top1 and scores.top5 == top5
    assert scores.ids[4].tolist() == [10, 11, 12, 13, 14]
    assert scores.ids[1, :2].tolist() == [CRANE_BIRD, CRANE_MACHINE]
    assert scores.ids[7].tolist() == [0, 1, 2, 3, 4]
    counts, per_class = scores.per_class()
    assert counts[CRANE_MACHINE] == 1 and per_class[CRANE_MACHINE] == 0 and per_class[CRANE_BIRD] == 100
    assert math.isnan(per_class[500])  # no images of that class


def test_nan_outputs_are_an_error_not_a_class() -> None:
    names, labels, rows, _, _ = known_answers()
    rows[5, 3] = np.nan
    with pytest.raises(tr.EvaluationError, match=r"1 output rows contain NaN \(first: ILSVRC2012_val_00000006"):
        ev.score(rows, tr.Truth(names=names, labels=np.array(labels)))


def _vamp_folder(tmp_path: Path, rows: np.ndarray, names: list[str], labels: list[int]) -> tuple[Path, Path, Path]:
    out = tmp_path / "vamp_out"
    out.mkdir()
    for i, row in enumerate(rows):
        with open(out / f"output_{i:06d}.npz", "wb") as fh:
            np.savez(fh, output_0=row[None, :].astype(np.float16))
    datalist = tmp_path / "datalist.txt"
    datalist.write_text("".join(f"/data/npz/n0000/{n.replace('.JPEG', '.npz')}\n" for n in names))
    label_file = tmp_path / "val_label.txt"
    label_file.write_text("".join(f"{n} {lab}\n" for n, lab in zip(names, labels, strict=True)))
    return out, datalist, label_file


def test_cli_eval_on_a_vamp_folder_and_a_stale_file_is_an_error(tmp_path: Path) -> None:
    names, labels, rows, top1, top5 = known_answers()
    out, datalist, label_file = _vamp_folder(tmp_path, rows, names, labels)
    args = ["eval", "--outputs", str(out), "--datalist", str(datalist), "--labels", str(label_file)]
    no_semantics = CliRunner().invoke(app, args)
    assert no_semantics.exit_code == 2 and "a folder of output files needs --semantics" in no_semantics.stderr
    args += ["--semantics", "logits"]
    (out / "output_000008.npz").write_bytes((out / "output_000000.npz").read_bytes())  # left from an older run
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 2
    assert "output_000008.npz" in result.stderr and "stale" in result.stderr
    (out / "output_000008.npz").unlink()
    class_names = tmp_path / "imagenet.txt"
    class_names.write_text("".join("crane\n" if c in (CRANE_BIRD, CRANE_MACHINE) else f"class {c}\n" for c in range(C)))
    text_args = ["--json", "--text", str(tmp_path / "result.txt"), "--names", str(class_names)]
    result = CliRunner().invoke(app, [*args, *text_args])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"top1": top1, "top5": top5, "images": 8, "classes": 8}
    assert "top1_rate: 37.500 top5_rate: 75.000" in result.stdout
    lines = (tmp_path / "result.txt").read_text().splitlines()
    assert len(lines) == 40  # five per image
    # the machine crane (517) predicted as the bird crane (134): same name, counted wrong by id; the flat
    # set's name gains its true class's synset folder, where the zoo's eval_topk.py reads the truth
    synset_517 = imagenet.synsets()[CRANE_MACHINE]
    assert lines[5].startswith(
        f"/data/npz/n0000/{synset_517}/ILSVRC2012_val_00000002.npz: Relay top-0 id: 134, prob: 0."
    )
    p517 = math.exp(8) / (math.exp(9) + math.exp(8) + (C - 2))  # a real softmax probability, not the logit
    assert lines[5].endswith("class name: crane") and lines[6].endswith(f"id: 517, prob: {p517:.8f}, class name: crane")
    # read as the zoo's eval_topk.py reads it (published rule: truth = the synset folder around the path,
    # prediction = the text after the fourth ':'), ImageNet's names without --names: its top-1 and top-5
    # by name (a crane counts as a crane, whichever crane: 4 of 8 and 6 of 8 here)
    plain = tmp_path / "plain.txt"
    assert CliRunner().invoke(app, [*args, "--text", str(plain)]).exit_code == 0
    truth_names = dict(zip(imagenet.synsets(), imagenet.class_names(), strict=True))
    hits = [truth_names[line.split("/")[-2]] == line.split(":")[4].strip() for line in plain.read_text().splitlines()]
    per_image = [hits[i : i + 5] for i in range(0, len(hits), 5)]
    assert sum(h[0] for h in per_image) == 4 and sum(any(h) for h in per_image) == 6
    # written fresh: a second run replaces the file instead of appending to it
    assert CliRunner().invoke(app, [*args, "--text", str(tmp_path / "result.txt")]).exit_code == 0
    assert len((tmp_path / "result.txt").read_text().splitlines()) == 40
    # a missing output file and a label-less image are named too
    (out / "output_000003.npz").unlink()
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "output_000003.npz" in result.stderr
    label_file.write_text("".join(f"{n} {lab}\n" for n, lab in zip(names[:-1], labels[:-1], strict=True)))
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "ILSVRC2012_val_00000008" in result.stderr


def test_outputs_pair_by_index_and_name_whatever_their_order(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    names, labels, rows, top1, top5 = known_answers()
    npz = labelled_npz(store, names, labels)
    shuffled = stored_outputs(store, npz, rows, name="m/test/fp32", order=[5, 2, 7, 0, 6, 1, 4, 3], shards=3)
    truth, paired, semantics = ev.scored_outputs(store, shuffled)
    assert semantics == "logits" and truth.names == names
    np.testing.assert_array_equal(paired, rows)
    scores = ev.score(paired, truth)
    assert (scores.top1, scores.top5) == (top1, top5)
    # outputs of other images, or of a truncated list, are refused rather than shifted
    other = labelled_npz(store, [n.replace("val", "test") for n in names], labels, dataset="other")
    index, got_names, got_rows = np.arange(8), [n.replace("val", "test") for n in names], rows
    with pytest.raises(tr.EvaluationError, match=r"is named 'ILSVRC2012_test_00000001\.JPEG' but that input is"):
        tr.pair(index, got_names, got_rows, truth)
    with pytest.raises(tr.EvaluationError, match=r"7 outputs .* for 8 labelled inputs"):
        tr.pair(index[:7], names[:7], rows[:7], truth)
    with pytest.raises(tr.EvaluationError, match="appears twice"):
        tr.pair(np.array([0, 1, 2, 3, 4, 5, 6, 6]), names, rows, truth)
    assert tr.truth_from_npz(store, other).names[0] == "ILSVRC2012_test_00000001.JPEG"


def test_gates_say_metric_value_limit_and_baseline() -> None:
    gates = [
        Gate(metric="top1", max_drop_vs_reference=1.5),
        Gate(metric="top1", min=65),
        Gate(metric="top5", max_drop_vs_published=1.0),
        Gate(metric="agreement", min=99),
        Gate(metric="top1", max_drop_vs_baseline=0.2, baseline="m/evaluation@3"),
    ]
    against = Baselines(
        reference={"top1": 68.0, "top5": 88.0},
        published={"top1": 68.13, "top5": 87.81},
        baseline=lambda spec: (f"{spec} (abc)", {"top1": 66.4}),
    )
    verdict = check_gates(gates, {"top1": 66.2, "top5": 87.3, "agreement": 97.1}, against)
    assert not verdict["passed"]
    reasons = [c["reason"] for c in verdict["checks"]]
    assert reasons[0] == (
        "top1 = 66.20 is 1.80 points below the fp32 reference (68.00); the limit is 1.50 points below"
    )
    assert reasons[1] == "top1 = 66.20, at least the minimum 65.00"
    assert (
        reasons[2] == "top5 = 87.30 is 0.51 points below the published number (87.81); the limit is 1.00 points below"
    )
    assert reasons[3] == "agreement = 97.10, below the minimum 99.00"
    assert reasons[4].startswith("top1 = 66.20 is 0.20 points below baseline m/evaluation@3 (abc) (66.40)")
    assert [c["passed"] for c in verdict["checks"]] == [False, True, True, False, True]
    with pytest.raises(GateFailedError, match="failed 2 gate check") as info:
        raise_on_failure(verdict, "m/int8-max", "m/int8-max/report")
    assert "agreement = 97.10" in info.value.problem and "zooflow report m/int8-max/report" in str(info.value.fix)
    # a metric that was not measured cannot pass; published numbers are skipped (and said so) on demo data
    demo = Baselines(published={"top1": 68.13}, published_note="demo data is not ImageNet")
    verdict = check_gates(
        [Gate(metric="sqnr_db", min=20), Gate(metric="top1", max_drop_vs_published=1)], {"top1": 0.1}, demo
    )
    assert verdict["checks"][0]["passed"] is False and "not measured" in verdict["checks"][0]["reason"]
    assert verdict["checks"][1]["skipped"] and "demo data" in verdict["checks"][1]["reason"]


def test_gate_config_and_cli_syntax() -> None:
    assert Gate.parse("top1:max_drop_vs_reference=1.5") == Gate(metric="top1", max_drop_vs_reference=1.5)
    assert Gate.parse("top1:max_drop_vs_baseline=0.3,baseline=m/evaluation@2").baseline == "m/evaluation@2"
    for bad, needle in (
        ("top1", "METRIC:LIMIT=VALUE"),
        ("top1:min", "not LIMIT=VALUE"),
        ("top7:min=3", "metric"),
        ("top1:mni=3", "did you mean 'min'"),
        ("sqnr_db:max_drop_vs_reference=1", "no fp32 or published value"),
        ("top1:max_drop_vs_baseline=1", "go together"),
    ):
        with pytest.raises(ConfigError, match=needle):
            Gate.parse(bad)
    options = EvaluationOptions()
    assert options.gates_for(QuantSpec.from_preset("int8-max")) == (Gate(metric="top1", max_drop_vs_reference=1.5),)
    assert options.gates_for(QuantSpec.from_preset("fp32")) == ()
    assert EvaluationOptions(gates=()).gates_for(QuantSpec.from_preset("int8-mse")) == ()


@pytest.fixture(scope="module")
def quantised(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """3000 images over 1000 classes: an fp32 reference near 70% top-1 and a noisier 'int8' version of it."""
    store = Store(tmp_path_factory.mktemp("eval-store"))
    rng = np.random.default_rng(0)
    n = 3000
    labels = np.repeat(np.arange(C), 3)
    reference = rng.normal(0, 1, (n, C)).astype(np.float32)
    reference[np.arange(n), labels] += rng.normal(3.9, 1.0, n).astype(np.float32)
    noisy = reference + rng.normal(0, 0.35, (n, C)).astype(np.float32)
    names = [f"n{lab:08d}/ILSVRC2012_val_{i + 1:08d}.JPEG" for i, lab in enumerate(labels)]
    npz = labelled_npz(store, names, labels.tolist())
    ref_out = stored_outputs(store, npz, reference, name="m/test/fp32", shards=4)
    run_out = stored_outputs(store, npz, noisy, name="m/test/int8-max", shards=4)
    return store, ref_out, run_out, reference, noisy, labels


def test_evaluation_artifact_fidelity_flips_and_verdict(quantised) -> None:  # type: ignore[no-untyped-def]
    store, ref_out, run_out, reference, noisy, labels = quantised
    against = Baselines(published={"top1": 68.13, "top5": 87.81})
    gates = [Gate(metric="top1", max_drop_vs_reference=1.5), Gate(metric="top1", max_drop_vs_reference=0.01)]
    ref = ev.evaluate_run(store, run_out, reference=ref_out, gates=gates, against=against, max_flips=50)
    metrics = ev.load_metrics(store, ref)
    top1 = 100 * np.mean(noisy.argmax(1) == labels)
    ref_top1 = 100 * np.mean(reference.argmax(1) == labels)
    assert metrics["top1"] == pytest.approx(top1) and metrics["reference"]["top1"] == pytest.approx(ref_top1)
    assert 60 < ref_top1 < 85 and metrics["drop_top1"] == pytest.approx(ref_top1 - top1)
    flipped = np.flatnonzero(noisy.argmax(1) != reference.argmax(1))
    assert metrics["fidelity"]["flips"] == len(flipped) > 0
    assert metrics["agreement"] == pytest.approx(100 * (1 - len(flipped) / len(labels)))
    signal, noise = np.sum(reference.astype(np.float64) ** 2), np.sum((noisy - reference).astype(np.float64) ** 2)
    assert metrics["sqnr_db"] == pytest.approx(10 * np.log10(signal / noise), rel=1e-6)
    flips = json.loads(store.path(ref, "flips.json").read_text())
    assert len(flips) == 50 and flips[0]["reference"] == int(reference[flipped[0]].argmax())
    broken = np.sum((reference.argmax(1) == labels)[flipped] & (noisy.argmax(1) != labels)[flipped])
    assert metrics["fidelity"]["flips_broken"] == broken
    # the verdict is in the artifact: the 1.5-point gate holds, the 0.01-point gate does not (drop > 0)
    assert [c["passed"] for c in metrics["verdict"]["checks"]] == [ref_top1 - top1 <= 1.5, False]
    per_class = json.loads(store.path(ref, "per_class.json").read_text())
    assert len(per_class) == C and all(r["images"] == 3 for r in per_class)
    assert sum(r["drop"] for r in per_class) / C == pytest.approx(ref_top1 - top1)
    assert len(store.path(ref, "results.txt").read_text().splitlines()) == 5 * len(labels)


def test_report_files_and_plots_are_readable(quantised, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store, ref_out, run_out, *_ = quantised
    evaluation = ev.evaluate_run(
        store,
        run_out,
        reference=ref_out,
        gates=[Gate(metric="top1", max_drop_vs_reference=1.5)],
        against=Baselines(published={"top1": 68.13, "top5": 87.81}),
        context={"model": "shufflenet-v1-1x_16xb64_in1k", "toolchain": "onnxruntime", "preset": "int8-max"},
    )
    rendered = report.render(store, evaluation)
    md = store.path(rendered, "report.md").read_text()
    assert md.startswith("# shufflenet-v1-1x_16xb64_in1k · onnxruntime · int8-max: ")
    for needle in (
        "| top-1 |",
        "top-1 agreement with fp32",
        "## Verdict",
        "fp32 reference",
        "## Lineage",
        "| reference |",
    ):
        assert needle in md, needle
    html = store.path(rendered, "report.html").read_text()
    assert 'src="data:image/png;base64,' in html and "<table>" in html and 'src="per_class.png"' not in html
    with Image.open(store.path(rendered, "per_class.png")) as png:
        assert png.size[0] >= 1200 and png.size[1] >= 500
    points = [
        {"label": "fp32", "top1": 70.1, "throughput": 200.0},
        {"label": "fp16", "top1": 70.0, "throughput": 190.0},  # dominated by fp32
        {"label": "int8-max", "top1": 69.0, "throughput": 320.0},
        {"label": "int8-mse", "top1": 69.4, "throughput": 318.0},
    ]
    assert report.pareto_front(points) == [0, 3, 2]
    plot = report.pareto_plot(points, tmp_path / "pareto.png", "sweep")
    with Image.open(plot) as png:
        assert png.size == (880, 605)
    # with agreement known, a second panel (agreement vs throughput) and int8-mixed's K search drawn in both
    tried = [{"keep_float": k, "top1": 69.5, "agreement": 90.0 + k, "throughput": 300.0 - 10 * k} for k in (1, 2, 4, 8)]
    both = [{**p, "agreement": 100.0 if p["label"] == "fp32" else 95.0} for p in points]
    plot = report.pareto_plot(both, tmp_path / "pareto2.png", "sweep", [("int8-mixed-k8", tried)])
    with Image.open(plot) as png:
        assert png.size == (1760, 605)
