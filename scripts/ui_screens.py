"""Use the Prefect UI as a person would, in headless Chromium, and save screenshots.

Starts ``prefect server start`` on a free port of 127.0.0.1 (its own PREFECT_HOME), serves the
one-off deployment from this process with a small demo as the form's defaults, opens the
one-off form, picks a preset from the drop-down, submits, waits for the run to finish, and saves
screenshots of the form, the run page and its Artifacts tab.

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
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

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
        width, height = self.size
        await self.call(
            "Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False
        )
        return self

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

    async def click_text(self, text: str, settle: float = 5.0) -> None:
        """Click the innermost element whose own text is `text` (a tab, a button)."""
        clicked = await self.js(
            "(() => { const t = " + json.dumps(text) + "; const all = [...document.querySelectorAll('*')]"
            ".filter(e => e.children.length === 0 && (e.textContent || '').trim() === t);"
            " const e = all[0]; if (!e) return false; (e.closest('button, a, [role=tab]') || e).click(); return true; })()"
        )
        if not clicked:
            raise SystemExit(f"nothing to click reading {text!r}")
        await asyncio.sleep(settle)

    async def open(self, url: str, settle: float = 8.0) -> None:
        await self.call("Page.navigate", url=url)
        await asyncio.sleep(settle)

    async def shot(self, path: Path, full: bool = False) -> None:
        params: dict[str, Any] = {"format": "png"}
        if full:
            height = int(await self.js("document.documentElement.scrollHeight") or self.size[1])
            params["clip"] = {"x": 0, "y": 0, "width": self.size[0], "height": height, "scale": 1}
            params["captureBeyondViewport"] = True
        data = await self.call("Page.captureScreenshot", **params)
        path.write_bytes(base64.b64decode(data["data"]))
        print(f"screenshot -> {path}")


def _serve(api: str, config: dict[str, Any]) -> None:
    """Serve the one-off deployment from this process (a thread), with `config` as the form's defaults."""
    os.environ["PREFECT_API_URL"] = api
    sys.path.insert(0, str(REPO))
    from prefect import serve

    from flows.deploy_classifier import deploy_classifier

    deployment = deploy_classifier.to_deployment(name="one-off", parameters={"config": config})
    serve(deployment, print_starting_message=False)


async def drive(base: str, deployment_id: str, preset: str, out: Path, api: str, timeout: float) -> None:
    async with Browser() as page:
        await page.open(f"{base}/deployments/deployment/{deployment_id}/run", settle=10)
        await page.shot(out / "1-form.png")
        await page.shot(out / "1-form-full.png", full=True)
        picked = await page.js(
            "(() => { const s = [...document.querySelectorAll('select')].find(s => [...s.options].some("
            f"o => o.text === {json.dumps(preset)})); if (!s) return null; const o = [...s.options].find("
            f"o => o.text === {json.dumps(preset)}); s.value = o.value; "
            "s.dispatchEvent(new Event('input', {bubbles: true})); s.dispatchEvent(new Event('change', {bubbles: true})); "
            "return s.options[s.selectedIndex].text; })()"
        )
        print(f"preset drop-down: picked {picked!r}")
        if picked != preset:
            raise SystemExit(f"the form has no preset drop-down offering {preset}")
        await page.shot(out / "2-preset-picked.png")
        clicked = await page.js(
            "(() => { const b = [...document.querySelectorAll('button')].find(b => b.innerText.trim() === 'Submit');"
            " if (!b) return false; b.click(); return true; })()"
        )
        if not clicked:
            raise SystemExit("no Submit button on the form")
        await asyncio.sleep(5)
        runs = _get(f"{api}/flow_runs/filter", {"sort": "EXPECTED_START_TIME_DESC", "limit": 1})
        run_id = runs[0]["id"]
        deadline = time.monotonic() + timeout
        while True:
            run = _get(f"{api}/flow_runs/{run_id}")
            if run["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") or time.monotonic() > deadline:
                break
            await asyncio.sleep(5)
        print(
            f"run {run['name']!r}: {run['state_type']}, tags {run['tags']}, quant {run['parameters']['config'].get('quant')}"
        )
        await page.open(f"{base}/runs/flow-run/{run_id}", settle=8)
        await page.shot(out / "3-run.png")
        for number, tab in ((4, "Artifacts"), (5, "Task Runs")):
            await page.click_text(tab)
            await page.shot(out / f"{number}-{tab.lower().replace(' ', '-')}.png", full=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("ui-screens"), help="folder for the screenshots")
    parser.add_argument("--preset", default="int8-max", help="the preset to pick from the drop-down")
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for the run")
    args = parser.parse_args()
    if shutil.which("chromium") is None:
        raise SystemExit("chromium is not installed: apt-get install chromium")
    args.out.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="zooflow-ui-"))
    port = _free_port()
    base, api = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_UI_API_URL": api, "PREFECT_API_URL": api}
    server = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=open(home / "server.log", "w"),  # noqa: SIM115 - lives as long as the server
        stderr=subprocess.STDOUT,
    )
    try:
        for _ in range(120):
            try:
                if _get(f"{api}/health") is True:
                    break
            except OSError:
                time.sleep(1)
        os.environ.update({"PREFECT_HOME": str(home), "ZOOFLOW_STORE": str(home / "store")})
        config = {"demo": True, "data": {"demo": {"classes": 10, "per_class": 2}}, "calibration": {"allow_short": True}}
        threading.Thread(target=_serve, args=(api, config), daemon=True).start()
        for _ in range(60):
            found = _get(f"{api}/deployments/filter", {})
            if found:
                break
            time.sleep(1)
        asyncio.run(drive(base, found[0]["id"], args.preset, args.out, api, args.timeout))
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
