"""Headless Chromium driven over the DevTools protocol, for tests that need the real ComfyUI frontend.

Some behaviour (how the frontend turns a graph into a prompt, what it saves) only exists in the
frontend's JavaScript, so tests load the real UI in a browser and read it from the page. The browser
runs in a process group of its own so `stop()` ends it and every helper process it spawned, and
never touches another process. Its HOME is a temporary folder, so its profile and crash database (whose
handler leaves the group, and exits once the browser is gone) stay out of the user's home.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp

from .comfy_server import free_port
from .processes import end_process_group

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage")
DESKTOP_VIEWPORT = (1600, 1000)  # CSS pixels: the frontend's side bar and dialogs laid out as on a desktop
# The frontend has built its app and graph and registered this package's node types.
FRONTEND_READY_JS = ("!!(window.app && window.app.graph && window.LiteGraph && "
                     "window.LiteGraph.registered_node_types['InST_TrainStyle'])")


class JavaScriptError(RuntimeError):
    """A script evaluated in the page threw; the message carries the page's exception text."""


class HeadlessChromium:
    """One headless Chromium with one page, evaluated synchronously from test code.

    The DevTools websocket is asynchronous; a private event loop keeps that out of the callers.
    """

    def __init__(self, log_path: Path | None = None, port: int | None = None, binary: Path = CHROMIUM):
        self.port = port or free_port()
        self.binary = Path(binary)
        self.log_path = Path(log_path) if log_path else None
        self.proc: subprocess.Popen | None = None
        self._home: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._ids = itertools.count(1)

    def start(self, timeout: float = 60) -> HeadlessChromium:
        if not self.binary.exists():
            raise FileNotFoundError(f"{self.binary} not found; install it with: apt-get install -y chromium")
        self._home = tempfile.mkdtemp(prefix="chromium-home-")
        cmd = [str(self.binary), *CHROMIUM_FLAGS, f"--remote-debugging-port={self.port}",
               "--remote-debugging-address=127.0.0.1", f"--user-data-dir={self._home}/profile", "about:blank"]
        log = open(self.log_path, "w") if self.log_path else subprocess.DEVNULL
        try:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True, env=dict(os.environ, HOME=self._home))
        finally:
            if self.log_path:
                log.close()
        try:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self._connect(self._page_websocket_url(timeout)))
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Close the browser, which reaps its own helpers; end its process group if it does not exit."""
        closing = False
        if self._loop is not None:
            closing = self._loop.run_until_complete(self._close_browser())
            self._loop.run_until_complete(self._disconnect())
            self._loop.close()
            self._loop = None
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.wait(10 if closing else 0)
            except subprocess.TimeoutExpired:
                end_process_group(self.proc, grace_s=10)
        if self._home is not None:
            shutil.rmtree(self._home, ignore_errors=True)
            self._home = None

    def __enter__(self) -> HeadlessChromium:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def navigate(self, url: str) -> None:
        self._call("Page.navigate", {"url": url})

    def set_viewport(self, width: int, height: int) -> None:
        """The page's size in CSS pixels, at one device pixel each (screenshots at 100%)."""
        self._call("Emulation.setDeviceMetricsOverride", {"width": width, "height": height,
                                                          "deviceScaleFactor": 1, "mobile": False})

    def screenshot(self, x: float, y: float, width: float, height: float) -> bytes:
        """PNG of a region of the page, in CSS pixels."""
        result = self._call("Page.captureScreenshot", {"format": "png", "clip": {
            "x": x, "y": y, "width": width, "height": height, "scale": 1}}, timeout=120)
        return base64.b64decode(result["data"])

    def evaluate(self, js: str, await_promise: bool = False, timeout: float = 60):
        """Value of the JavaScript expression `js` in the page (JSON-serialisable values only)."""
        result = self._call("Runtime.evaluate", {"expression": js, "awaitPromise": await_promise,
                                                 "returnByValue": True}, timeout)
        if "exceptionDetails" in result:
            raise JavaScriptError(_exception_text(result["exceptionDetails"]))
        return result["result"].get("value")

    def wait_for(self, js: str, timeout: float = 60, interval: float = 0.1) -> None:
        """Poll until the expression `js` is truthy in the page; page errors while loading are retried."""
        deadline = time.time() + timeout
        last_error = None
        while time.time() < deadline:
            try:
                if self.evaluate(js):
                    return
            except JavaScriptError as e:
                last_error = e
            time.sleep(interval)
        raise TimeoutError(f"page condition not met after {timeout}s: {js}" + (f" (last error: {last_error})"
                                                                                  if last_error else ""))

    def _page_websocket_url(self, timeout: float) -> str:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.proc.returncode}; log: {self.log_path}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/list", timeout=2) as r:
                    pages = [t for t in json.loads(r.read()) if t.get("type") == "page"]
                if pages:
                    return pages[0]["webSocketDebuggerUrl"]
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"chromium DevTools not reachable on port {self.port} after {timeout}s")

    async def _connect(self, ws_url: str) -> None:
        self._session = aiohttp.ClientSession()
        self._ws = await self._session.ws_connect(ws_url, max_msg_size=0)

    async def _close_browser(self) -> bool:
        """Ask the browser to quit; True when the request went out."""
        if self._ws is None or self._ws.closed:
            return False
        try:
            await asyncio.wait_for(self._send("Browser.close", {}), 5)
        except (RuntimeError, asyncio.TimeoutError, aiohttp.ClientError):
            pass  # the browser may drop the connection before it answers
        return True

    async def _disconnect(self) -> None:
        if self._ws is not None:
            await self._ws.close()
            self._ws = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _call(self, method: str, params: dict, timeout: float = 60) -> dict:
        if self._loop is None:
            raise RuntimeError("HeadlessChromium is not started")
        return self._loop.run_until_complete(asyncio.wait_for(self._send(method, params), timeout))

    async def _send(self, method: str, params: dict) -> dict:
        """Send one DevTools command and return its result; events arriving meanwhile are not needed."""
        call_id = next(self._ids)
        await self._ws.send_json({"id": call_id, "method": method, "params": params})
        while True:
            msg = await self._ws.receive()
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise RuntimeError(f"DevTools websocket closed during {method}: {msg.type}")
            reply = json.loads(msg.data)
            if reply.get("id") != call_id:
                continue
            if "error" in reply:
                raise RuntimeError(f"DevTools {method} failed: {reply['error']}")
            return reply["result"]


def _exception_text(details: dict) -> str:
    exception = details.get("exception", {})
    return exception.get("description") or details.get("text", "JavaScript exception")


@contextmanager
def frontend_page(url: str, log_path: Path, viewport: tuple[int, int] | None = None,
                  ready_js: str = FRONTEND_READY_JS) -> Iterator[HeadlessChromium]:
    """Headless Chromium showing the ComfyUI frontend at `url` once `ready_js` holds; stopped on exit."""
    browser = HeadlessChromium(log_path)
    try:
        browser.start()
        if viewport is not None:
            browser.set_viewport(*viewport)
        browser.navigate(url)
        browser.wait_for(ready_js, timeout=120)
        yield browser
    finally:
        browser.stop()
