"""The pieces of a headless-Chromium check of Prefect's UI: the browser (DevTools protocol), form helpers
injected into each page, and PASS/FAIL lines. Used by `ui_screens.py`."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any


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
  multi(label, values, n) { const s = zf.prop(label, n).querySelector('select[multiple]');
    [...s.options].forEach(o => { o.selected = values.includes(o.value); }); zf.fire(s);
    return [...s.selectedOptions].map(o => o.value); },
  labels() { return [...document.querySelectorAll('.schema-form-property')]
    .map(p => p.innerText.split('\\n')[0].replace(' (Optional)', '').trim()); },
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
    "is not of type|was expected/.test(document.body.innerText) || !location.pathname.endsWith('/run')"
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
