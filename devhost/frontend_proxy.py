"""Another ComfyUI frontend in front of a running server: a reverse proxy on 127.0.0.1 that serves one
comfyui-frontend-package's static files and passes every other request (the API, the websocket,
images, the custom nodes' scripts and docs) to the server, as a reverse proxy in front of ComfyUI does.

The UI tests run the newest frontend this way in front of the session's server (which serves the
pinned one itself): one server, so one set of loaded models and one cache, where a second server
would load and run everything again. The proxy runs in a thread of the test process with its own
event loop, and `stop()` closes it.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import aiohttp
from aiohttp import web

from .comfy_server import free_port

# Hop-by-hop and length headers: each side of the proxy sets its own. Host is passed on, as reverse
# proxies in front of ComfyUI do: the server refuses a request whose Origin is not its Host.
NOT_FORWARDED = frozenset({"connection", "upgrade", "keep-alive", "transfer-encoding", "content-length",
                           "content-encoding", "te", "trailer", "proxy-authorization", "proxy-authenticate"})
START_TIMEOUT_S = 30


class FrontendProxy:
    def __init__(self, server_url: str, static_root: Path, port: int | None = None):
        self.upstream = server_url.rstrip("/")
        self.root = Path(static_root).resolve()
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None
        self._sockets: set[web.WebSocketResponse] = set()  # the pages' open websockets, closed on stop

    def start(self) -> FrontendProxy:
        started = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve(started)), daemon=True)
        self._thread.start()
        if not started.wait(START_TIMEOUT_S):
            raise TimeoutError(f"the frontend proxy did not start on port {self.port}")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
        if self._thread is not None:
            self._thread.join(START_TIMEOUT_S)

    def __enter__(self) -> FrontendProxy:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    async def _serve(self, started: threading.Event) -> None:
        self._loop, self._stopped = asyncio.get_running_loop(), asyncio.Event()
        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("*", "/{path:.*}", self._handle)
        runner = web.AppRunner(app)
        await runner.setup()
        async with aiohttp.ClientSession(auto_decompress=False) as self._session:
            await web.TCPSite(runner, "127.0.0.1", self.port).start()
            started.set()
            await self._stopped.wait()
            for socket in list(self._sockets):
                await socket.close()
            await runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._websocket(request)
        static = self._static_file(request.match_info["path"])
        if request.method == "GET" and static is not None:
            return web.FileResponse(static)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in NOT_FORWARDED}
        async with self._session.request(request.method, self.upstream + request.path_qs, headers=headers,
                                         data=await request.read(), allow_redirects=False) as upstream:
            body = await upstream.read()
            kept = {k: v for k, v in upstream.headers.items()
                    if k.lower() not in NOT_FORWARDED - {"content-encoding"} and k.lower() != "host"}
            return web.Response(status=upstream.status, body=body, headers=kept)

    def _static_file(self, path: str) -> Path | None:
        """The frontend's own file for `path` ('' is its index.html), or None to ask the server."""
        file = (self.root / (path or "index.html")).resolve()
        return file if file.is_file() and file.is_relative_to(self.root) else None

    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        page = web.WebSocketResponse(max_msg_size=0)
        await page.prepare(request)
        self._sockets.add(page)
        url = self.upstream.replace("http", "ws", 1) + request.path_qs
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("host", "origin", "cookie")}
        async with self._session.ws_connect(url, max_msg_size=0, headers=headers) as server:
            async def relay(source, target) -> None:
                async for message in source:
                    if message.type == aiohttp.WSMsgType.TEXT:
                        await target.send_str(message.data)
                    elif message.type == aiohttp.WSMsgType.BINARY:
                        await target.send_bytes(message.data)
                    else:
                        break

            both = [asyncio.create_task(relay(page, server)), asyncio.create_task(relay(server, page))]
            _, pending = await asyncio.wait(both, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
        await page.close()
        self._sockets.discard(page)
        return page
