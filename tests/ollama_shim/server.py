"""Run the Ollama shim on uvicorn in a thread, on a free loopback port."""

from __future__ import annotations

import socket
import threading
from typing import TYPE_CHECKING

import uvicorn

from tooti.testing import eventually

if TYPE_CHECKING:
    from .app import OllamaShim


class ShimServer:
    """Runs :class:`OllamaShim` on uvicorn in a thread, on a free loopback port."""

    def __init__(self, app: OllamaShim) -> None:
        self.app = app
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.base_url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        config = uvicorn.Config(app, lifespan="off", ws="none", http="h11", log_level="warning", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    def start(self) -> None:
        self._thread.start()

        def started() -> bool:
            if not self._thread.is_alive():
                raise RuntimeError("the Ollama shim did not start: its server thread ended")
            return bool(self._server.started)

        eventually(started, timeout=30, interval=0.02, what="the Ollama shim did not start")

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(30)
        self._sock.close()
