"""A headless Chromium driven over the DevTools protocol, for tests that need a real page session.

Why not Playwright or Selenium: both expect a browser (or driver) of their own, downloaded from
the internet; the tests use the distribution's ``chromium`` package as it is. The DevTools
protocol needs only a WebSocket, and :mod:`wsproto` (python-hyper's sans-IO WebSocket library,
already installed with libp2p's WebSocket transport) speaks it over a plain blocking socket, so this
module adds no dependency and no event loop: a test calls :meth:`Page.evaluate` and gets a value.

Only what the tests use is here: open a page, evaluate JavaScript (promises awaited), take a
screenshot. The browser runs with a throw-away profile and is killed (by its pid) on close.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Ping, RejectConnection, Request, TextMessage
from wsproto.utilities import LocalProtocolError

__all__ = ["Browser", "BrowserError", "Page", "find_chromium"]

_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


class BrowserError(RuntimeError):
    """The browser could not be started, or a DevTools command failed."""


def find_chromium() -> str | None:
    """Path of a Chromium binary (``$TOOTI_CHROMIUM`` first), or ``None``."""
    explicit = os.environ.get("TOOTI_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).exists() else None
    for name in _CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


class Page:
    """One page target, over its own DevTools WebSocket."""

    def __init__(self, host: str, port: int, ws_path: str, timeout: float) -> None:
        self._sock = socket.create_connection((host, port), timeout=timeout)
        self._ws = WSConnection(ConnectionType.CLIENT)
        self._next_id = 0
        self._buffer: list[str] = []
        self._sock.sendall(self._ws.send(Request(host=f"{host}:{port}", target=ws_path)))
        deadline = time.monotonic() + timeout
        while True:
            for event in self._events(deadline):
                if isinstance(event, AcceptConnection):
                    return
                if isinstance(event, RejectConnection):
                    raise BrowserError(f"DevTools refused the WebSocket (HTTP {event.status_code})")

    def _events(self, deadline: float) -> list[Any]:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise BrowserError("DevTools did not answer in time")
        self._sock.settimeout(remaining)
        data = self._sock.recv(1 << 16)
        if not data:
            raise BrowserError("DevTools closed the connection")
        self._ws.receive_data(data)
        return list(self._ws.events())

    def call(self, method: str, timeout: float = 30.0, **params: Any) -> dict[str, Any]:
        """Send one DevTools command and return its ``result`` (events arriving meanwhile are dropped)."""
        self._next_id += 1
        wanted = self._next_id
        message = json.dumps({"id": wanted, "method": method, "params": params})
        self._sock.sendall(self._ws.send(TextMessage(data=message)))
        deadline = time.monotonic() + timeout
        while True:
            for event in self._events(deadline):
                if isinstance(event, Ping):
                    self._sock.sendall(self._ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    raise BrowserError("DevTools closed the page's WebSocket")
                elif isinstance(event, TextMessage):
                    self._buffer.append(event.data)
                    if not event.message_finished:
                        continue
                    reply = json.loads("".join(self._buffer))
                    self._buffer.clear()
                    if reply.get("id") != wanted:
                        continue
                    if "error" in reply:
                        raise BrowserError(f"{method}: {reply['error']}")
                    result: dict[str, Any] = reply.get("result", {})
                    return result

    def navigate(self, url: str, timeout: float = 30.0) -> None:
        """Load ``url`` and wait until its document has loaded."""
        self.call("Page.enable")
        self.call("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete' && location.href !== 'about:blank'", timeout)

    def evaluate(self, expression: str, timeout: float = 30.0) -> Any:
        """The JSON value of ``expression`` in the page (a promise is awaited); page errors raise."""
        result = self.call(
            "Runtime.evaluate", timeout=timeout, expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"the page threw: {text}")
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float, interval: float = 0.2) -> Any:
        """Evaluate ``expression`` until it is truthy; return its value, or raise after ``timeout``."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            last = self.evaluate(expression)
            if last:
                return last
            time.sleep(interval)
        raise BrowserError(f"not true after {timeout:.0f} s: {expression} (last value {last!r})")

    def screenshot(self, path: Path, width: int = 1400) -> Path:
        """Save a PNG of the whole page (its full height at ``width`` CSS pixels)."""
        height = int(self.evaluate("Math.ceil(document.documentElement.scrollHeight)") or 900)
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
        shot = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def close(self) -> None:
        """Close the WebSocket (the browser keeps running)."""
        # The browser may already have dropped the connection; a close that fails changes nothing.
        with contextlib.suppress(OSError, LocalProtocolError):
            self._sock.sendall(self._ws.send(CloseConnection(code=1000)))
        self._sock.close()


class Browser:
    """A headless Chromium with a temporary profile and a DevTools port on loopback."""

    def __init__(self, binary: str, *, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self._profile = tempfile.mkdtemp(prefix="tooti-chromium-")
        args = [
            binary,
            "--headless=new",
            "--no-sandbox",  # tests may run as root (CI containers), where the sandbox cannot start
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            f"--user-data-dir={self._profile}",
            "about:blank",
        ]
        # stderr to a file, not a pipe: a chatty browser must never block on a full pipe.
        self._log = Path(self._profile) / "chromium-stderr.log"
        with self._log.open("wb") as log:
            self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log)  # noqa: S603
        self.port = self._wait_port()

    def _wait_port(self) -> int:
        marker = Path(self._profile) / "DevToolsActivePort"
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self._log.read_text(errors="replace")[-2000:]
                raise BrowserError(f"chromium exited with {self.process.returncode}: {err}")
            if marker.exists():
                first = marker.read_text().splitlines()[:1]
                if first and first[0].strip().isdigit():
                    return int(first[0])
            time.sleep(0.05)
        self.close()
        raise BrowserError("chromium did not open its DevTools port in time")

    def new_page(self) -> Page:
        """Open a new tab and connect to it."""
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/json/new?about:blank", method="PUT")
        with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310 - loopback DevTools only
            target = json.loads(resp.read())
        ws_url: str = target["webSocketDebuggerUrl"]
        path = ws_url.split(f"127.0.0.1:{self.port}", 1)[1]
        return Page("127.0.0.1", self.port, path, self.timeout)

    def close(self) -> None:
        """Kill the browser (its own process group is not assumed) and remove the profile."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
