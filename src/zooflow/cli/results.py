"""Result commands: eval (score outputs) and report (show or copy a run's report)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from zooflow import outdir
from zooflow.cli.common import JsonOpt, StoreOpt, app, err, failing, inputs_of, open_existing
from zooflow.errors import ConfigError


@app.command(
    "eval",
    epilog="zooflow eval --outputs ./vamp_out --datalist ./npz/datalist.txt --labels ./val_label.txt --json\n\n"
    "zooflow eval --outputs shufflenet-v1-1x_16xb64_in1k/onnxruntime/int8-max/outputs-model-8f2f06d47344",
)
def eval_command(
    outputs: Annotated[
        str,
        typer.Option(help="outputs artifact (name, name@N, digest) or a folder of vamp's output_%06d.npz files"),
    ],
    datalist: Annotated[
        Path | None, typer.Option(help="the datalist the outputs were made from (line i <-> output_i)")
    ] = None,
    labels: Annotated[Path | None, typer.Option(help="val_label.txt: `FILE CLASS_ID` per line")] = None,
    names: Annotated[Path | None, typer.Option(help="class names, line = class id (imagenet.txt)")] = None,
    semantics: Annotated[
        str | None,
        typer.Option(
            help="logits | probs: required for a folder of output files; an outputs artifact records its own "
            "(zooflow's ONNX ends in softmax unless exported with --logits)"
        ),
    ] = None,
    text: Annotated[
        Path | None, typer.Option(help="also write the zoo's text format (5 lines per image) to this file")
    ] = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Top-1/top-5 of outputs paired with their inputs by index and name (never by directory order)."""
    from zooflow import evaluate as ev
    from zooflow import truth as tr

    with failing(as_json, "eval"):
        if text is not None:  # before scoring: never onto the labels, the datalist or a user's file
            inputs = inputs_of(datalist=datalist, labels=labels, names=names)
            outdir.check_file(
                text, "eval", [*inputs, ("--outputs", outputs if Path(outputs).exists() else None)], "--text"
            )
        if semantics not in (None, "logits", "probs"):
            raise ConfigError(f"--semantics {semantics!r} is not logits or probs", "pass --semantics logits|probs")
        folder = Path(outputs).expanduser()
        if folder.is_dir():
            if semantics is None:
                raise ConfigError(
                    "a folder of output files needs --semantics: nothing in it says whether output_0 holds logits "
                    "or softmax probabilities",
                    "pass --semantics probs for zooflow's default ONNX (it ends in softmax, as the seed's), "
                    "--semantics logits for one exported with --logits",
                )
            if datalist is None:
                raise ConfigError(
                    "a folder of output files needs --datalist", "pass the datalist vamp ran (line i -> output_i)"
                )
            truth = tr.truth_from_datalist(datalist.expanduser(), labels)
            rows = tr.read_vamp_folder(folder, len(truth.names))
            source = str(folder)
        else:
            st = open_existing(store)
            ref = st.resolve(outputs)
            if ref.kind != "outputs":
                raise ConfigError(
                    f"{outputs} is a {ref.kind} artifact, not outputs",
                    "`zooflow artifacts list outputs` shows them; or pass a folder of vamp output files",
                )
            truth, rows, semantics_found = ev.scored_outputs(st, ref)  # verified before it is read
            recorded = "probs" if ev.is_probs(semantics_found) else "logits"
            if semantics is not None and semantics != recorded:
                raise ConfigError(
                    f"--semantics {semantics} contradicts the outputs artifact, which records {semantics_found!r}",
                    "leave --semantics out for an outputs artifact: its own record is used",
                )
            semantics = recorded
            if datalist is not None:  # the user's list must be the one these outputs were made from
                given = tr.truth_from_datalist(datalist.expanduser(), labels)
                tr.pair(np.arange(len(given.names)), given.names, rows, truth)
                truth = tr.Truth(names=truth.names, labels=given.labels)
            elif labels is not None:
                table = tr.read_labels(labels)
                missing = [n for n in truth.names if tr.image_stem(n) not in table]
                if missing:
                    raise tr.EvaluationError(
                        f"{len(missing)} images have no label in {labels} (first: {missing[0]})",
                        "use the labels file of the same image set",
                    )
                truth = tr.Truth(names=truth.names, labels=np.array([table[tr.image_stem(n)] for n in truth.names]))
            source = ref.label()
        scores = ev.score(rows, truth)
        class_names = tr.read_class_names(names.expanduser() if names else None, rows.shape[1])
        if text is not None:
            probs = np.take_along_axis(ev.probabilities(rows, semantics), scores.ids, axis=1)
            ev.write_text(
                text.expanduser(),
                truth.names,
                scores.ids,
                probs,
                class_names,
                labels=truth.labels,
                classes=rows.shape[1],
            )
            outdir.remember(text, "eval")
    counts, per_class = scores.per_class()
    present = np.flatnonzero(counts > 0)
    err.print(f"{len(truth.names)} outputs from {source}, paired by index and name", highlight=False)
    print(f"top1_rate: {scores.top1:.3f} top5_rate: {scores.top5:.3f}")
    if len(present) > 1:
        worst = present[np.argsort(per_class[present], kind="stable")[:5]]
        err.print(
            "lowest per-class top-1: "
            + ", ".join(f"{int(c)} ({class_names[int(c)] if class_names else c}) {per_class[c]:.1f}%" for c in worst),
            highlight=False,
        )
    if text is not None:
        err.print(f"text results -> {text}", highlight=False)
    if as_json:
        print(
            json.dumps({"top1": scores.top1, "top5": scores.top5, "images": len(truth.names), "classes": len(present)})
        )


@app.command(epilog="zooflow report shufflenet-v1-1x_16xb64_in1k/onnxruntime/int8-max/report --out ./report")
def report(
    run: Annotated[str, typer.Argument(help="report or evaluation artifact (name, name@N, name@alias, digest)")],
    out: Annotated[Path | None, typer.Option(help="copy report.md/.html, the plot and results.txt here")] = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a run's report (rendering it from the evaluation if needed): summary, verdict, lineage, plots."""
    from zooflow import report as report_mod

    with failing(as_json, "report"):
        st = open_existing(store)
        ref = st.resolve(run)
        if ref.kind == "evaluation":
            ref = report_mod.render(st, ref)
        elif ref.kind != "report":
            raise ConfigError(
                f"{run} is a {ref.kind} artifact, not a report or evaluation",
                "`zooflow artifacts list report` shows the reports",
            )
        if out is not None:
            out = out.expanduser()
            outdir.place(
                out, "report", {f: st.path(ref, f) for f in ref.files}, inputs=inputs_of(st), artifact=ref.digest
            )
    if not as_json:
        print(st.path(ref, "report.md").read_text(encoding="utf-8"))
    err.print(f"HTML report: {out / 'report.html' if out else st.path(ref, 'report.html')}", highlight=False)
    if as_json:
        files = {f: str((out / f) if out else st.path(ref, f)) for f in ref.files}
        print(json.dumps({"digest": ref.digest, "name": ref.name, "passed": ref.meta.get("passed"), "files": files}))
