"""A small Python client for the Kiln HTTP API, and a context manager that runs `kiln serve`.

>>> with KilnServer(store=".kiln/store", port=3000) as server:  # doctest: +SKIP
...     client = KilnClient(server.url)
...     client.classify_text(["was the delivery fast"])["predictions"][0]["label"]
'question'
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx


class ServerError(RuntimeError):
    """The server did not start or answered with an error; the message carries its output."""


class KilnClient:
    def __init__(self, url: str, timeout: float = 30.0):
        self.http = httpx.Client(base_url=url, timeout=timeout)

    def _json(self, response: httpx.Response) -> dict[str, Any]:
        if response.status_code >= 400:
            raise ServerError(f"HTTP {response.status_code} from {response.request.url}: {response.text}")
        return dict(response.json())

    def classify_image(self, path: str | Path) -> dict[str, Any]:
        with open(path, "rb") as fh:
            return self._json(self.http.post("/classify_image", files={"image": (Path(path).name, fh)}))

    def classify_text(self, texts: list[str]) -> dict[str, Any]:
        return self._json(self.http.post("/classify_text", json={"texts": texts}))

    def ready(self) -> bool:
        try:
            return self.http.get("/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex((host, port)) != 0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class KilnServer:
    """Runs `kiln serve` in a subprocess on localhost until the block ends; waits for /readyz."""

    def __init__(
        self,
        store: str | Path,
        port: int | None = None,
        startup_timeout: float = 180.0,
        log_path: str | Path | None = None,
    ):
        self.store = Path(store)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.startup_timeout = startup_timeout
        self.log_path = Path(log_path) if log_path else self.store.parent / f"server-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> KilnServer:
        if not port_is_free("127.0.0.1", self.port):
            raise ServerError(f"port {self.port} is already in use; pick another with --port")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")
        cmd = [sys.executable, "-m", "flows.cli", "serve", "--store", str(self.store), "--port", str(self.port)]
        # A new session, so stopping the server also stops BentoML's worker processes.
        self.process = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        client = KilnClient(self.url)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.stop()
                raise ServerError(f"kiln serve exited with {self.process.returncode}:\n{self.output()[-3000:]}")
            if client.ready():
                return self
            time.sleep(0.5)
        self.stop()
        raise ServerError(f"kiln serve was not ready after {self.startup_timeout:.0f}s:\n{self.output()[-3000:]}")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if hasattr(self, "_log"):
            self._log.close()

    def __exit__(self, *exc: object) -> None:
        self.stop()
