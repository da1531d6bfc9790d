"""Start the real ComfyUI server on loopback with this package loaded, queue prompts, stop it.

The server runs in a process group of its own so `stop()` ends it and everything it spawned, and
never touches another process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import struct
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .paths import BASE_DIR, COMFY_DIR, PACKAGE_LINK_NAME, PYTHON
from .processes import end_process_group

# Server-log lines that mean this package failed to load (they name its folder), and lines that
# mean a LoRA did not fully apply (any LoRA: ours are the ones the tests load).
IMPORT_FAILURE_MARKERS = ("IMPORT FAILED", "Cannot import", "Error while calling comfy_entrypoint")
LORA_KEY_MISSING = "lora key not loaded"
POLL_S = 0.05  # how often start() and wait() ask the server; a prompt's result is seen this soon after it ends
PROGRESS_TEXT = 3  # the binary websocket message that carries a node's progress text (BinaryEventTypes.TEXT)
USUAL_UMASK = 0o022  # the server runs as started from a usual shell: the files it writes are 0644

@dataclass
class PromptResult:
    """What came back for one queued prompt: status, node outputs, and the execution error if any."""

    prompt_id: str
    status: str
    outputs: dict
    error: dict | None = None
    messages: list = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "success"


class PromptRejected(RuntimeError):
    """POST /prompt refused the prompt (validation failed); `body` holds the server's JSON."""

    def __init__(self, body: dict):
        super().__init__(json.dumps(body)[:4000])
        self.body = body


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ComfyServer:
    def __init__(self, log_path: Path, port: int | None = None, extra_args: tuple[str, ...] = ()):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(log_path)
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen | None = None
        self._log_file = None
        self.ready_s: float | None = None

    def start(self, timeout: float = 180) -> ComfyServer:
        for sub in ("custom_nodes", "user", "input", "output", "temp"):
            (BASE_DIR / sub).mkdir(parents=True, exist_ok=True)
        cmd = [str(PYTHON), "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
               "--base-directory", str(BASE_DIR),
               "--database-url", f"sqlite:///{BASE_DIR}/user/comfyui.db",
               "--disable-auto-launch", *self.extra_args]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self.log_path, "w")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        t0 = time.time()
        self.proc = subprocess.Popen(cmd, cwd=COMFY_DIR, stdout=self._log_file, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True, env=env, umask=USUAL_UMASK)
        while time.time() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.proc.returncode}; log: {self.log_path}\n"
                                   + self.log_text()[-3000:])
            try:
                with urllib.request.urlopen(self.url + "/system_stats", timeout=2) as r:
                    if r.status == 200:
                        self.ready_s = time.time() - t0
                        return self
            except OSError:
                pass
            time.sleep(POLL_S)
        self.stop()
        raise TimeoutError(f"ComfyUI not ready after {timeout}s; log: {self.log_path}")

    def stop(self) -> None:
        if self.proc is not None:
            end_process_group(self.proc, grace_s=20)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> ComfyServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def get(self, path: str):
        with urllib.request.urlopen(self.url + path, timeout=120) as r:
            body = r.read()
            return json.loads(body) if "json" in r.headers.get("Content-Type", "") else body

    def post(self, path: str, payload: dict | None = None) -> dict:
        data = json.dumps(payload or {}).encode()
        req = urllib.request.Request(self.url + path, data=data, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                body = r.read()
                return json.loads(body) if body.strip() else {}
        except urllib.error.HTTPError as e:
            text = e.read().decode()
            try:
                raise PromptRejected(json.loads(text)) from None
            except json.JSONDecodeError:
                raise RuntimeError(f"POST {path} -> {e.code}: {text[:4000]}") from None

    def queue(self, prompt: dict) -> str:
        return self.post("/prompt", {"prompt": prompt, "client_id": str(uuid.uuid4())})["prompt_id"]

    def wait(self, prompt_id: str, timeout: float = 900) -> PromptResult:
        t0 = time.time()
        while time.time() - t0 < timeout:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI died while running {prompt_id}; log: {self.log_path}")
            history = self.get(f"/history/{prompt_id}")
            entry = history.get(prompt_id)
            if entry and entry.get("status", {}).get("completed") is not None:
                status = entry["status"]
                if status.get("status_str") in ("success", "error") or status.get("completed"):
                    return self._result(prompt_id, entry, time.time() - t0)
            time.sleep(POLL_S)
        raise TimeoutError(f"prompt {prompt_id} not done after {timeout}s")

    def run(self, prompt: dict, timeout: float = 900) -> PromptResult:
        return self.wait(self.queue(prompt), timeout)

    def interrupt(self) -> None:
        self.post("/interrupt")

    @contextlib.contextmanager
    def progress_texts(self, timeout: float = 30) -> Iterator[list[tuple[str, str]]]:
        """Every (node id, text) the server shows on a node while the block runs, in order, as the
        frontend receives them: over the websocket, where the server broadcasts them."""
        texts: list[tuple[str, str]] = []
        connected, stop = threading.Event(), threading.Event()

        async def listen() -> None:
            import aiohttp

            async with aiohttp.ClientSession() as session, session.ws_connect(
                    f"{self.url.replace('http', 'ws', 1)}/ws?clientId={uuid.uuid4()}") as ws:
                connected.set()
                while not stop.is_set():
                    with contextlib.suppress(asyncio.TimeoutError):
                        message = await ws.receive(timeout=POLL_S)
                        if message.type == aiohttp.WSMsgType.BINARY and _event(message.data) == PROGRESS_TEXT:
                            texts.append(_node_text(message.data[4:]))

        listener = threading.Thread(target=asyncio.run, args=(listen(),), daemon=True)
        listener.start()
        try:
            assert connected.wait(timeout), "the server's websocket did not accept a connection"
            yield texts
        finally:
            stop.set()
            listener.join(timeout)

    @staticmethod
    def _result(prompt_id: str, entry: dict, wall_s: float) -> PromptResult:
        status = entry.get("status", {})
        messages = status.get("messages", [])
        error = None
        for kind, body in messages:
            if kind in ("execution_error", "execution_interrupted"):
                error = dict(body, kind=kind)
        return PromptResult(prompt_id, status.get("status_str", "unknown"), entry.get("outputs", {}),
                            error, messages, wall_s)

    def output_files(self, result: PromptResult, node_id: str, key: str = "images") -> list[Path]:
        """Absolute paths of the files a node reported in its UI output (SaveImage and the like)."""
        files = []
        for item in result.outputs.get(node_id, {}).get(key, []):
            root = BASE_DIR / item.get("type", "output")
            files.append(root / item.get("subfolder", "") / item["filename"])
        return files

    def log_text(self) -> str:
        if self._log_file is not None:
            self._log_file.flush()
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_problems(self, since: int = 0) -> list[str]:
        """Log lines (from character offset `since`) showing that this package failed to import or
        that a LoRA key was not loaded. ComfyUI's own optional nodes (audio) may fail to import
        on the dev host; those lines do not name this package and are not counted."""
        problems = []
        for line in self.log_text()[since:].splitlines():
            failed_import = any(m in line for m in IMPORT_FAILURE_MARKERS) and PACKAGE_LINK_NAME in line
            if failed_import or LORA_KEY_MISSING in line:
                problems.append(line)
        return problems


def _event(message: bytes) -> int:
    return struct.unpack(">I", message[:4])[0]


def _node_text(body: bytes) -> tuple[str, str]:
    """(node id, text) of a progress-text message body: the id's length, the id, then the text."""
    length = struct.unpack(">I", body[:4])[0]
    return body[4:4 + length].decode(), body[4 + length:].decode()
