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
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from zooflow.config import PRESETS

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


class Browser:
    """One headless Chromium page, driven through the DevTools protocol."""

    def __init__(self, width: int = 1400, height: int = 1800) -> None:
        self.port = _free_port()
        self.size = (width, height)
        self.proc = subprocess.Popen(
            [
                shutil.which("chromium") or "chromium",
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                f"--remote-debugging-port={self.port}",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.ws: Any = None
        self.n = 0

    async def __aenter__(self) -> Browser:
        import websockets

        for _ in range(100):
            try:
                pages = [t for t in _get(f"http://127.0.0.1:{self.port}/json") if t["type"] == "page"]
                break
            except OSError:
                await asyncio.sleep(0.2)
        self.ws = await websockets.connect(pages[0]["webSocketDebuggerUrl"], max_size=100_000_000)
        await self.call("Page.enable")
        await self._resize(*self.size)
        return self

    async def _resize(self, width: int, height: int) -> None:
        await self.call(
            "Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False
        )
        await asyncio.sleep(1)

    async def __aexit__(self, *exc: object) -> None:
        await self.ws.close()
        self.proc.kill()

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.n += 1
        await self.ws.send(json.dumps({"id": self.n, "method": method, "params": params}))
        while True:
            message = json.loads(await self.ws.recv())
            if message.get("id") == self.n:
                return dict(message.get("result", {}))

    async def js(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return result.get("result", {}).get("value")

    async def until(self, expression: str, timeout: float = 30.0) -> Any:
        """Poll a JS expression until it is truthy (its value) or `timeout` passes (None): no fixed sleeps."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = await self.js(  # an element found stands for true (it does not cross the protocol)
                f"(() => {{ try {{ const v = {expression}; return v instanceof Node ? true : v; }} catch (e) {{ return null; }} }})()"
            )
            if value:
                await asyncio.sleep(0.5)  # let the frame finish drawing
                return value
            await asyncio.sleep(0.25)
        return None

    async def click_text(self, text: str, ready: str = "true") -> None:
        """Click the innermost element whose own text is `text` (a tab, a button), then wait for `ready`."""
        clicked = await self.js(
            "(() => { const t = " + json.dumps(text) + "; const all = [...document.querySelectorAll('*')]"
            ".filter(e => e.children.length === 0 && (e.textContent || '').trim() === t);"
            " const e = all[0]; if (!e) return false; (e.closest('button, a, [role=tab]') || e).click(); return true; })()"
        )
        if not clicked:
            raise SystemExit(f"nothing to click reading {text!r}")
        await self.until(ready)

    async def type_into(self, element: str, text: str) -> None:
        """Replace the text of `element` (a JS expression) by typing, as a person does (Vue sees key events)."""
        if not await self.js(
            f"(() => {{ const e = {element}; if (!e) return false; e.focus(); e.select(); return true; }})()"
        ):
            raise SystemExit(f"nothing to type into: {element}")
        for kind in ("keyDown", "keyUp"):
            await self.call(
                "Input.dispatchKeyEvent", type=kind, key="Backspace", code="Backspace", windowsVirtualKeyCode=8
            )
        if text:
            await self.call("Input.insertText", text=text)
        await asyncio.sleep(0.5)

    async def open(self, url: str, ready: str, timeout: float = 60.0) -> bool:
        """Go to `url` and wait until the JS expression `ready` holds (the page has drawn what we need)."""
        await self.call("Page.navigate", url=url)
        await asyncio.sleep(0.5)
        return bool(await self.until(ready, timeout))

    async def shot(self, path: Path, full: bool = False) -> None:
        width, height = self.size
        if full:  # the UI scrolls an inner element, not the document: grow the window to its height
            tallest = await self.js("Math.max(...[...document.querySelectorAll('*')].map(e => e.scrollHeight))")
            await self._resize(width, max(height, min(int(tallest or height) + 200, 16000)))
        data = await self.call("Page.captureScreenshot", format="png")
        if full:
            await self._resize(width, height)
        path.write_bytes(base64.b64decode(data["data"]))
        print(f"screenshot -> {path}")


# Form helpers, injected into each page: a form property is found by its label (" (Optional)" dropped).
HELPERS = """
window.zf = {
  props(label) { return [...document.querySelectorAll('.schema-form-property')]
    .filter(p => p.innerText.split('\\n')[0].replace(' (Optional)', '').trim() === label); },
  prop(label, n) { const p = zf.props(label)[n || 0]; if (!p) throw new Error('no field ' + label); return p; },
  fire(e) { e.dispatchEvent(new Event('input', {bubbles: true})); e.dispatchEvent(new Event('change', {bubbles: true})); },
  select(label, value, n) { const s = zf.prop(label, n).querySelector('select'); s.value = value; zf.fire(s);
    return s.options[s.selectedIndex] ? s.options[s.selectedIndex].text : null; },
  options(label, n) { return [...zf.prop(label, n).querySelector('select').options].map(o => o.text); },
  number(label, value, n) { const i = zf.prop(label, n).querySelector('input'); i.value = String(value); zf.fire(i); return i.value; },
  check(label, on, n) { const i = zf.prop(label, n).querySelector('input[type=checkbox]'); if (i.checked !== on) i.click(); return i.checked; },
  submit() { const b = [...document.querySelectorAll('button')].find(b => b.innerText.trim() === 'Submit');
    if (b) b.click(); return !!b; },
  text() { return document.body.innerText; },
};
"""


# What the pages show once drawn: the form with its Submit button; after a submit, the server's
# refusal (a toast), the form's own check under a field, or the deployment page a run went to.
FORM_READY = (
    "document.querySelectorAll('.schema-form-property').length > 20 && "
    "[...document.querySelectorAll('button')].some(b => b.innerText.trim() === 'Submit')"
)
SUBMITTED = (
    "document.body.innerText.includes('Error creating flow run') || /is not one of|is a required property|"
    "is not of type/.test(document.body.innerText) || !location.pathname.endsWith('/run')"
)


class Checks:
    """PASS/FAIL lines, counted."""

    def __init__(self) -> None:
        self.failed: list[str] = []

    def __call__(self, ok: bool, what: str, detail: Any = "") -> bool:
        print(f"{'PASS' if ok else 'FAIL'}: {what}" + (f" ({detail})" if detail != "" else ""))
        if not ok:
            self.failed.append(what)
        return ok


class UI:
    """The Prefect UI and API of one server, for one deployment."""

    def __init__(self, page: Browser, base: str, deployment_id: str, out: Path, env: dict[str, str]) -> None:
        self.env = env  # the server's API and store, for the CLI run beside the form's
        self.page, self.base, self.api, self.out = page, base, f"{base}/api", out
        self.deployment_id = deployment_id

    def runs(self) -> list[dict[str, Any]]:
        return list(_get(f"{self.api}/flow_runs/filter", {"sort": "EXPECTED_START_TIME_DESC"}))

    async def form(self) -> None:
        url = f"{self.base}/deployments/deployment/{self.deployment_id}/run"
        if not await self.page.open(url, FORM_READY):
            raise SystemExit(f"the one-off form did not load: {url}")
        await self.page.js(HELPERS)

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

    async def wait(self, before: int, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while len(self.runs()) == before and time.monotonic() < deadline:
            await asyncio.sleep(2)
        run = self.runs()[0]
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
    await ui.form()
    await ui.page.js("zf.check('Demo (generated images, locally initialised weights)', false)")
    said = await ui.submit("2-refused-no-data.png")
    _refused(check, ui, said, "no demo and no data folder", "data.path")
    for number, (blank, what) in enumerate((('""', "an empty preset"), ("null", "a null preset"), ("", "no preset"))):
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
    inline = next((line for line in said.splitlines() if "is not one of" in line or "required" in line), None)
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
    await ui.page.js("zf.number('Classes', 10)")
    await ui.page.js("zf.check('Allow Short', true)")
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


async def drive(ui: UI, preset: str, timeout: float) -> Checks:
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
    return check


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
        served = _start([zooflow, "serve", "--only", "one-off"], env, home / "serve.log")
        for _ in range(120):
            found = _get(f"{api}/deployments/filter", {})
            if found:
                break
            time.sleep(1)
        else:
            raise SystemExit(f"zooflow serve registered nothing; see {home / 'serve.log'}")

        async def go() -> Checks:
            async with Browser() as page:
                return await drive(UI(page, base, found[0]["id"], args.out, env), args.preset, args.timeout)

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
