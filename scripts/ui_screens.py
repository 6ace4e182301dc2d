"""Use the Prefect UI as a person would, in headless Chromium, and save screenshots.

Starts ``prefect server start`` on a free port of 127.0.0.1 (its own PREFECT_HOME and store) and
``zooflow serve --only one-off``, then, in the one-off form:

1. submits an inconsistent form (toolchain vastai, preset fp32) and a blank preset (through the
   field's JSON input): each must be refused with the field named and no run created;
2. fills in a small demo (10 classes, short classes allowed), picks a preset from the drop-down,
   submits, waits for the run, and saves the run page, its Artifacts and Task Runs tabs and the
   report artifact (with its plot);
3. submits the same form again: the cached re-run must still show its run summary.

Every check prints PASS or FAIL; the exit status is non-zero when one failed.

    uv run python scripts/ui_screens.py --out ui-screens --preset int8-max

Needs Debian's ``chromium`` (``apt-get install chromium``); it is driven through its DevTools
protocol (websockets, which Prefect already depends on) because browser tools that download
their own build cannot run here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ui_browser import FORM_READY, HELPERS, SUBMITTED, Browser, Checks, _free_port, _get  # beside this script

from zooflow.config import PRESETS
from zooflow.runconfig import NEEDS_DATA, NO_FP32_ON_VASTAI

REPO = Path(__file__).resolve().parents[1]


class UI:
    """The Prefect UI and API of one server, for one deployment."""

    def __init__(self, page: Browser, base: str, deployments: dict[str, str], out: Path, env: dict[str, str]) -> None:
        self.env = env  # the server's API and store, for the CLI run beside the form's
        self.page, self.base, self.api, self.out = page, base, f"{base}/api", out
        self.deployments = deployments  # name -> id

    def runs(self, name: str = "one-off") -> list[dict[str, Any]]:
        """Deployment `name`'s flow runs that were started by hand (serve schedules the nightly's own)."""
        found = _get(
            f"{self.api}/flow_runs/filter",
            {"sort": "EXPECTED_START_TIME_DESC", "deployments": {"id": {"any_": [self.deployments[name]]}}},
        )
        return [r for r in found if "auto-scheduled" not in r["tags"]]

    async def form(self, name: str = "one-off", fields: int = 20) -> None:
        """Open deployment `name`'s Run form and wait until it has drawn more than `fields` fields."""
        url = f"{self.base}/deployments/deployment/{self.deployments[name]}/run"
        if not await self.page.open(url, FORM_READY.replace("> 20", f"> {fields}")):
            raise SystemExit(f"the {name} form did not load: {url}")
        await self.page.js(HELPERS)

    async def small_demo(self) -> None:
        """Fill in the small demo (10 classes, short classes allowed) and read it back: the form redraws
        after a change, and a value typed meanwhile can be lost (a sweep once ran 1000 classes)."""
        for _ in range(5):
            await asyncio.sleep(0.5)
            await self.page.js("zf.number('Classes', 10)")
            await asyncio.sleep(0.5)
            await self.page.js("zf.check('Allow Short', true)")
            await asyncio.sleep(0.5)
            held = await self.page.js(
                "[zf.prop('Classes').querySelector('input').value, "
                "zf.prop('Allow Short').querySelector('input[type=checkbox]').checked]"
            )
            if held == ["10", True]:
                return
        raise SystemExit(f"the form did not keep Classes 10 and Allow Short on: {held}")

    async def json_input(self, label: str) -> bool:
        """Switch a field to JSON input through its menu (how a person types a raw value, e.g. a blank)."""
        await self.page.js(f"zf.prop({json.dumps(label)}).querySelector('button').click()")
        item = "[...document.querySelectorAll('*')].find(e => e.children.length === 0 && e.textContent.trim() === 'Use JSON input')"
        if not await self.page.until(item, 10):
            return False
        await self.page.js(f"{item}.click()")
        return bool(await self.page.until(f"zf.prop({json.dumps(label)}).querySelector('textarea')", 10))

    async def submit(self, shot: str) -> str:
        """Submit the form; the page's text a few seconds later (what a person reads), screenshot saved."""
        if not await self.page.js("zf.submit()"):
            raise SystemExit("no Submit button on the form")
        await self.page.until(SUBMITTED, timeout=20)
        await self.page.shot(self.out / shot)
        return str(await self.page.js("zf.text()"))

    async def wait(self, before: int, timeout: float, name: str = "one-off") -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while len(self.runs(name)) == before and time.monotonic() < deadline:
            await asyncio.sleep(2)
        run = self.runs(name)[0]
        while run["state_type"] not in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") and time.monotonic() < deadline:
            await asyncio.sleep(5)
            run = _get(f"{self.api}/flow_runs/{run['id']}")
        return dict(run)

    def artifacts(self, run_id: str) -> dict[str, dict[str, Any]]:
        found = _get(f"{self.api}/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [run_id]}}})
        return {a["key"]: a for a in found if a.get("key")}


async def refusals(ui: UI, check: Checks) -> None:
    """An inconsistent form and a blank preset: refused, the field named, no run created."""
    await ui.form()
    await ui.page.shot(ui.out / "1-form.png")
    await ui.page.shot(ui.out / "1-form-full.png", full=True)
    check(await ui.page.js("zf.options('Preset')") == list(PRESETS), "the preset is a drop-down of the presets")
    check(await ui.page.js("zf.prop('Preset').querySelector('select').value") == "fp32", "its default is fp32")
    check("| None" not in await ui.page.js("zf.text()"), "no 'str | None' switches on the form")
    await ui.page.js("zf.select('Toolchain', 'vastai')")
    said = await ui.submit("2-refused-vastai-fp32.png")
    _refused(check, ui, said, "vastai with fp32")
    _sentence_shown(check, said, NO_FP32_ON_VASTAI, "vastai with fp32")
    await ui.form()
    await ui.page.js("zf.check('Demo (generated images, locally initialised weights)', false)")
    said = await ui.submit("2-refused-no-data.png")
    _refused(check, ui, said, "no demo and no data folder", "data")
    _sentence_shown(check, said, NEEDS_DATA, "no demo and no data folder")
    # a cleared JSON input sends no preset at all, which is the default preset (as `--param config='{"demo":
    # true}'`); the drop-down itself has no blank entry (checked above)
    for number, (blank, what) in enumerate((('""', "an empty preset"), ("null", "a null preset"))):
        await ui.form()
        if not check(await ui.json_input("Preset"), "the preset field offers JSON input"):
            return
        await ui.page.type_into("zf.prop('Preset').querySelector('textarea')", blank)
        said = await ui.submit(f"2-refused-blank-preset-{number}.png")
        _refused(
            check,
            ui,
            said + str(await ui.page.js("zf.prop('Preset').innerText")),
            f"{what} (JSON {blank or 'cleared'})",
        )


def _refused(check: Checks, ui: UI, said: str, what: str, field: str = "quant") -> None:
    """Refused, the field named (the server's toast for the run, or the form's check under the field:
    `said` ends with the field's own text), and no run created."""
    toast = _near(said, "Error creating flow run")
    inline = next(
        (line for line in said.splitlines() if any(w in line for w in ("is not one of", "required", "was expected"))),
        None,
    )
    named = f"config.{field}" in toast or inline is not None
    check(named and not ui.runs(), f"{what}: refused, the field named, no run created", inline or toast)


def _near(text: str, word: str, width: int = 240) -> str:
    at = text.find(word)
    return " ".join(text[at : at + width].split()) if at >= 0 else f"{word!r} is not on the page"


async def fill_and_run(ui: UI, preset: str, check: Checks, timeout: float, tag: str) -> dict[str, Any]:
    """The small demo a person fills in: 10 classes, short classes allowed, `preset` from the drop-down."""
    await ui.form()
    check(
        await ui.page.js(f"zf.select('Preset', {json.dumps(preset)})") == preset, f"picked {preset} from the drop-down"
    )
    await ui.small_demo()
    await ui.page.shot(ui.out / f"{tag}-filled.png")
    before = len(ui.runs())
    await ui.submit(f"{tag}-submitted.png")
    run = await ui.wait(before, timeout)
    print(f"run {run['name']!r}: {run['state_type']}, tags {run['tags']}")
    check(run["state_type"] == "COMPLETED", f"the {tag} run completed", run["state_type"])
    check(
        run["parameters"]["config"].get("quant") == preset,
        "it ran the picked preset",
        run["parameters"]["config"].get("quant"),
    )
    check(run["name"].endswith(f" {preset} demo (onnxruntime)"), "its name says model, preset, data", run["name"])
    demo = run["parameters"]["config"].get("data", {}).get("demo", {})
    check(demo.get("classes") == 10, "it ran the small demo filled in", demo)
    export = run["parameters"]["config"].get("export", {})
    check(
        export.get("dynamic_batch", "auto") == "auto",
        "the untouched Dynamic Batch drop-down sent auto (the toolchain's choice, as the CLI's default)",
        export,
    )
    return run


def cli_equivalent(ui: UI, preset: str, check: Checks) -> None:
    """`zooflow run` with the options matching what was filled in: an untouched form means the CLI's
    defaults, so the run reuses the form run's ONNX and fp32 reference (same config, same cache keys)."""
    zooflow = str(Path(sys.executable).parent / "zooflow")
    args = ["run", "--demo", "--demo-classes", "10", "--allow-short", "--quant", preset, "--json"]
    done = subprocess.run([zooflow, *args], env=ui.env, capture_output=True, text=True, timeout=900)
    try:
        stages = json.loads(done.stdout.strip().splitlines()[-1])["stages"]
    except (ValueError, IndexError, KeyError):
        check(False, "`zooflow run` with the same settings completed", done.stderr[-2000:])
        return
    shared = ("checkpoint", "onnx", "reference-onnx", "reference-compiled", "reference-outputs", "compiled")
    print(f"zooflow {' '.join(args)}: {stages}")
    check(
        all(stages.get(s) == "Cached" for s in shared),
        "`zooflow run --demo` with the same settings reuses the form run's ONNX and fp32 reference",
        {s: stages.get(s) for s in shared},
    )


async def screens(ui: UI, run: dict[str, Any], tag: str, check: Checks, preset: str) -> dict[str, dict[str, Any]]:
    logged = await ui.page.open(
        f"{ui.base}/runs/flow-run/{run['id']}", "/: (PASS|FAIL), top-1 /.test(document.body.innerText)"
    )
    await ui.page.shot(ui.out / f"{tag}-run.png")
    check(logged, "the run's log shows the summary line (verdict, top-1)")
    for number, tab, ready in (
        (1, "Artifacts", "document.body.innerText.includes('Flow run')"),
        (2, "Task Runs", "document.body.innerText.includes('compile ')"),
    ):
        await ui.page.click_text(tab, ready)
        await ui.page.shot(ui.out / f"{tag}-{number}-{tab.lower().replace(' ', '-')}.png", full=True)
    artifacts = ui.artifacts(run["id"])
    summary = [k for k in artifacts if k.startswith("run-") and preset.replace("_", "-") in k]
    check(bool(summary), "the run published its run summary artifact", sorted(artifacts))
    return artifacts


async def drive(ui: UI, preset: str, timeout: float, forms: tuple[str, ...] = ("sweep", "nightly")) -> Checks:
    check = Checks()
    await refusals(ui, check)
    run = await fill_and_run(ui, preset, check, timeout, "3")
    cli_equivalent(ui, preset, check)
    artifacts = await screens(ui, run, "4", check, preset)
    report = next((a for k, a in artifacts.items() if k.startswith("report-")), None)
    if check(report is not None, "the run published its report"):
        shown = await ui.page.open(
            f"{ui.base}/artifacts/artifact/{report['id']}",
            "[...document.querySelectorAll('img')].filter(i => i.src.startsWith('data:image/png') && i.naturalWidth > 100).length",
        )
        await ui.page.shot(ui.out / "5-report.png", full=True)
        check(bool(shown), "the report shows its per-class plot (an image drawn from the artifact)")
    again = await fill_and_run(ui, preset, check, timeout, "6")
    cached = await screens(ui, again, "7", check, preset)
    summary = next((a for k, a in cached.items() if k.startswith("run-")), None)
    if summary is not None:  # the cached run's summary, and its link to the report (published by the first run)
        await ui.page.open(
            f"{ui.base}/artifacts/artifact/{summary['id']}", "document.body.innerText.includes('top-1 (%)')"
        )
        await ui.page.shot(ui.out / "8-cached-summary.png", full=True)
        text = str(await ui.page.js("document.body.innerText"))
        check(
            "cached" in text and "top-1 (%)" in text, "the cached run's summary has its metrics", _near(text, "stages")
        )
        link = await ui.page.js(
            "(() => { const a = [...document.querySelectorAll('a')].find(a => a.innerText.startsWith('report-'));"
            " return a ? [a.href, a.target] : null; })()"
        )
        if check(bool(link) and "/artifacts/artifact/" in link[0], "its report link points at the report", link):
            # the link opens a new tab (target _blank): follow it here
            opened = await ui.page.open(link[0], "document.body.innerText.includes('Classes that lost the most')")
            check(opened, "the link opens the report in the UI", link[0])
            await ui.page.shot(ui.out / "9-report-from-the-summary-link.png")
    if "sweep" in forms:
        await sweep_form(ui, check, timeout)
    if "nightly" in forms:
        await nightly_form(ui, check, timeout)
    return check


def _sentence_shown(check: Checks, said: str, sentence: str, what: str) -> None:
    check(f"'{sentence}' was expected" in said, f"{what}: the refusal is a sentence", _near(said, sentence[:20]))


async def sweep_form(ui: UI, check: Checks, timeout: float) -> None:
    """The sweep form: what a sweep chooses first, keep-float one text box, vastai + fp32 refused in a sentence
    with no run created; then a two-preset demo sweep whose table and Pareto plot are under "Flow run"."""
    await ui.form("quant-sweep")
    await ui.page.shot(ui.out / "10-sweep-form.png", full=True)
    labels = await ui.page.js("zf.labels()")
    check(
        labels[1:5] == ["Model (mmcls model index name)", "Presets", "Per Channel", "Keep Float"],
        "sweep form: presets, per-channel and keep-float right below the model",
        labels[:6],
    )
    text = str(await ui.page.js("zf.text()"))
    check("| None" not in text and "const" not in text, "sweep form: no type switches, no 'const' field")
    keep = await ui.page.js(
        "(() => { const e = zf.prop('Keep Float').querySelector('textarea, input'); return e ? e.value : null; })()"
    )
    check(keep == "auto", "sweep form: Keep Float is one text box holding auto", keep)
    before = len(ui.runs("quant-sweep"))
    picked = await ui.page.js("zf.multi('Presets', ['fp32', 'int8-max'])")
    await ui.page.js("zf.select('Toolchain', 'vastai')")
    said = await ui.submit("11-sweep-refused-vastai-fp32.png")
    said += str(await ui.page.js("zf.prop('Presets').innerText"))
    _sentence_shown(check, said, NO_FP32_ON_VASTAI, "sweep form, vastai with fp32")
    check(len(ui.runs("quant-sweep")) == before, "sweep form, vastai with fp32: no run created", picked)
    await ui.form("quant-sweep")
    picked = await ui.page.js("zf.multi('Presets', ['fp32', 'int8-max'])")
    await ui.small_demo()
    await ui.submit("12-sweep-submitted.png")
    run = await ui.wait(before, timeout, "quant-sweep")
    print(f"sweep run {run['name']!r}: {run['state_type']}")
    check(run["state_type"] == "COMPLETED", "the sweep run from the form completed", run["state_type"])
    check(run["parameters"]["config"].get("presets") == ["fp32", "int8-max"], "it swept the picked presets", picked)
    demo = run["parameters"]["config"].get("data", {}).get("demo", {})
    check(demo.get("classes") == 10, "it swept the small demo filled in", demo)
    await ui.page.open(f"{ui.base}/runs/flow-run/{run['id']}", "document.body.innerText.includes('Artifacts')")
    await ui.page.click_text("Artifacts", "document.body.innerText.includes('Flow run')")
    await ui.page.shot(ui.out / "13-sweep-artifacts.png", full=True)
    flow_level = [a for a in ui.artifacts(run["id"]).values() if a.get("task_run_id") is None]
    table = next((a for a in flow_level if a["type"] == "table"), None)
    check(
        table is not None and any(a["type"] == "markdown" for a in flow_level),
        "the sweep's table and Pareto plot are under Flow run",
        [a["key"] for a in flow_level],
    )
    if table is not None:
        await ui.page.open(
            f"{ui.base}/artifacts/artifact/{table['id']}", "document.body.innerText.includes('int8-max')"
        )
        await ui.page.shot(ui.out / "14-sweep-table.png", full=True)
        shown = str(await ui.page.js("document.body.innerText"))
        long = re.findall(r"\d+\.\d{4,}", shown)
        check(
            not long and "None" not in shown,
            "the sweep table is rounded and reads no None",
            long[:3] or _before(shown, "None"),
        )


async def nightly_form(ui: UI, check: Checks, timeout: float) -> None:
    """The nightly form: the matrix a drop-down of deployments/' matrices, a bad night refused in a sentence;
    the untouched Run on a host without ImageNet fails at once in a sentence; the demo matrix completes,
    named after matrix and night, with its summary line and its trend under "Flow run", no "None"."""
    await ui.form("nightly-regression", fields=2)
    await ui.page.shot(ui.out / "20-nightly-form.png")
    matrices = await ui.page.js("zf.options('Matrix')")
    check(
        matrices == ["deployments/regression-demo.yaml", "deployments/regression.yaml"],
        "nightly form: the matrix is a drop-down of the matrices in deployments/",
        matrices,
    )
    before = len(ui.runs("nightly-regression"))
    await ui.page.type_into("zf.prop('Night').querySelector('textarea, input')", "2026-13-45")
    said = await ui.submit("21-nightly-refused-night.png")
    said += str(await ui.page.js("zf.prop('Night').innerText"))
    _sentence_shown(
        check, said, "a night as YYYY-MM-DD (2026-12-06), or blank for today (UTC)", "nightly form, night 2026-13-45"
    )
    check(len(ui.runs("nightly-regression")) == before, "nightly form, night 2026-13-45: no run created")
    await ui.form("nightly-regression", fields=2)
    await ui.submit("22-nightly-default-submitted.png")
    run = await ui.wait(before, 120, "nightly-regression")
    message = str((run.get("state") or {}).get("message") or "")
    if not Path("/data/imagenet/val").is_dir():
        check(
            run["state_type"] == "FAILED"
            and "does not exist on this host" in message
            and "regression-demo.yaml runs anywhere" in message,
            "the untouched nightly Run on a host without ImageNet fails at once, in a sentence",
            message[:300],
        )
    await ui.form("nightly-regression", fields=2)
    await ui.page.js("zf.select('Matrix', 'deployments/regression-demo.yaml')")
    await ui.page.type_into("zf.prop('Night').querySelector('textarea, input')", "2026-12-01")
    before = len(ui.runs("nightly-regression"))
    await ui.submit("23-nightly-demo-submitted.png")
    run = await ui.wait(before, timeout, "nightly-regression")
    print(f"nightly run {run['name']!r}: {run['state_type']}")
    check(run["state_type"] == "COMPLETED", "the demo nightly from the form completed", run["state_type"])
    check(run["name"] == "nightly demo-nightly 2026-12-01", "it is named after its matrix and night", run["name"])
    logged = await ui.page.open(
        f"{ui.base}/runs/flow-run/{run['id']}", "document.body.innerText.includes('night 2026-12-01 of demo-nightly')"
    )
    await ui.page.shot(ui.out / "24-nightly-run.png")
    check(bool(logged), "its log has the summary line (night, matrix, results)")
    await ui.page.click_text("Artifacts", "document.body.innerText.includes('Flow run')")
    await ui.page.shot(ui.out / "25-nightly-artifacts.png", full=True)
    flow_level = [a for a in ui.artifacts(run["id"]).values() if a.get("task_run_id") is None]
    check(
        any("trend" in a["key"] for a in flow_level),
        "the nightly's trend is under Flow run",
        [a["key"] for a in flow_level],
    )
    for number, artifact in enumerate(flow_level):  # each as a person opens it: its page and the run's panel
        await ui.page.open(
            f"{ui.base}/artifacts/artifact/{artifact['id']}", "document.body.innerText.includes('State Message')"
        )
        await ui.page.shot(ui.out / f"26-nightly-artifact-{number}.png", full=True)
        shown = str(await ui.page.js("document.body.innerText"))
        check(
            not re.search(r"\bNone\b", shown),
            f"the nightly's {artifact['key']} page reads no None",
            _before(shown, "None"),
        )


def _before(text: str, word: str, width: int = 120) -> str:
    at = text.find(word)
    return " ".join(text[max(0, at - width) : at + len(word)].split()) if at >= 0 else ""


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        args, cwd=REPO, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("ui-screens"), help="folder for the screenshots")
    parser.add_argument("--preset", default="int8-max", help="the preset to pick from the drop-down")
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for each run")
    parser.add_argument("--forms", default="sweep,nightly", help="forms to drive after the one-off's (comma list)")
    args = parser.parse_args()
    if shutil.which("chromium") is None:
        raise SystemExit("chromium is not installed: apt-get install chromium")
    args.out.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="zooflow-ui-"))
    port = _free_port()
    base, api = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_UI_API_URL": api,
        "PREFECT_API_URL": api,
        "ZOOFLOW_STORE": str(home / "store"),
        "PREFECT_LOGGING_LEVEL": "INFO",  # Prefect's default, what a person's runs log (a test suite may lower it)
    }
    server = _start(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env,
        home / "server.log",
    )
    served = None
    try:
        for _ in range(120):
            try:
                if _get(f"{api}/health") is True:
                    break
            except OSError:
                time.sleep(1)
        zooflow = str(Path(sys.executable).parent / "zooflow")
        served = _start([zooflow, "serve"], env, home / "serve.log")  # all three deployments
        for _ in range(120):
            found = {d["name"]: d["id"] for d in _get(f"{api}/deployments/filter", {})}
            if len(found) == 3:
                break
            time.sleep(1)
        else:
            raise SystemExit(f"zooflow serve did not register its three deployments; see {home / 'serve.log'}")

        async def go() -> Checks:
            async with Browser() as page:
                ui = UI(page, base, found, args.out, env)
                return await drive(ui, args.preset, args.timeout, tuple(args.forms.split(",")))

        checks = asyncio.run(go())
    finally:
        if served is not None:
            _stop(served)
        _stop(server)
    print(f"screenshots in {args.out}")
    if checks.failed:
        raise SystemExit(f"{len(checks.failed)} check(s) failed: {'; '.join(checks.failed)}; server logs in {home}")
    shutil.rmtree(home, ignore_errors=True)  # our own temporary server home and store; kept above for its logs


if __name__ == "__main__":
    main()
