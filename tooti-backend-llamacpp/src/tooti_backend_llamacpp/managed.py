"""Start, watch and stop a real llama.cpp server in a child process.

The child runs :mod:`tooti_backend_llamacpp._server` (llama.cpp's native server via ``xllamacpp``).
Readiness is the child's ``LISTENING`` line, which ``xllamacpp.Server`` prints only after the model
is loaded and the port is bound, so no port race exists when ``port=0``. The child watches its
stdin and exits when the parent dies (the pipe closes), so a crashed agent leaves no orphan.

:class:`ManagedLlamaServer` is synchronous and thread-safe; async callers use :meth:`astart` and
:meth:`astop`, which run the blocking parts in a worker thread. With ``supervise=True`` a daemon
thread restarts the child if it dies, on the same port.
"""

from __future__ import annotations

import logging
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Self

__all__ = ["ManagedLlamaServer", "ManagedServerError"]

log = logging.getLogger(__name__)

_LISTENING = "LISTENING "
_WATCH_SEC = 0.5
_MAX_BACKOFF_SEC = 30.0


class ManagedServerError(RuntimeError):
    """The managed llama.cpp server could not be started."""


class ManagedLlamaServer:
    """A llama.cpp server child process serving one GGUF model.

    Args:
        model_path: the GGUF file.
        host: interface to bind; keep the loopback default unless peers must reach it directly.
        port: TCP port; 0 picks a free one at first start, reused on restarts.
        alias: the model name the server reports (default: llama.cpp's choice, the file name).
        ctx: total context tokens, shared by the slots (each gets ``ctx // parallel``).
        parallel: slots, i.e. requests generated concurrently.
        threads: CPU threads for generation and prompt processing.
        embedding: serve ``/v1/embeddings``.
        pooling: how token embeddings become one vector (``mean``, ``cls``, ``last``); OpenAI's
            embeddings route needs one when the GGUF does not name it (e.g. chat models).
        chat_template: a built-in llama.cpp template name overriding the GGUF's own.
        startup_timeout_sec: how long the model may take to load.
        log_file: where the child's stderr goes (default: an anonymous temporary file, whose tail
            is quoted when the start fails).
        supervise: restart the child when it dies, until :meth:`stop`.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        alias: str = "",
        ctx: int = 2048,
        parallel: int = 2,
        threads: int = 1,
        embedding: bool = False,
        pooling: str = "",
        chat_template: str = "",
        startup_timeout_sec: float = 120.0,
        log_file: str | os.PathLike[str] | None = None,
        supervise: bool = False,
    ) -> None:
        self.model_path = Path(model_path)
        self.host, self.port, self.alias = host, port, alias
        self.ctx, self.parallel, self.threads = ctx, parallel, threads
        self.embedding, self.pooling, self.chat_template = embedding, pooling, chat_template
        self.startup_timeout_sec = startup_timeout_sec
        self.log_file = None if log_file is None else Path(log_file)
        self.supervise = supervise
        self.restarts = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._base_url: str | None = None
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None

    # -- state -----------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://host:port`` of the running server."""
        if self._base_url is None:
            raise ManagedServerError("the managed llama.cpp server has not been started")
        return self._base_url

    @property
    def pid(self) -> int | None:
        """Process id of the current child, or ``None`` before start."""
        return None if self._proc is None else self._proc.pid

    @property
    def running(self) -> bool:
        """Whether the child process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def command(self) -> list[str]:
        """The command line of the child process."""
        cmd = [sys.executable, "-m", "tooti_backend_llamacpp._server", "--model", str(self.model_path)]
        cmd += ["--host", self.host, "--port", str(self.port), "--ctx", str(self.ctx)]
        cmd += ["--parallel", str(self.parallel), "--threads", str(self.threads), "--watch-stdin"]
        if self.alias:
            cmd += ["--alias", self.alias]
        if self.embedding:
            cmd.append("--embedding")
        if self.pooling:
            cmd += ["--pooling", self.pooling]
        if self.chat_template:
            cmd += ["--chat-template", self.chat_template]
        return cmd

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> str:
        """Start the child and wait until it listens; returns :attr:`base_url`. Idempotent."""
        if not self.model_path.is_file():
            raise ManagedServerError(f"model file not found: {self.model_path}")
        with self._lock:
            self._stopping.clear()
            if not self.running:
                self._spawn()
            if self.supervise and (self._watcher is None or not self._watcher.is_alive()):
                self._watcher = threading.Thread(target=self._watch, name="llamacpp-supervisor", daemon=True)
                self._watcher.start()
        return self.base_url

    def ensure_running(self) -> str:
        """Restart the child if it died; returns :attr:`base_url`."""
        with self._lock:
            if not self._stopping.is_set() and not self.running:
                log.warning("managed llama.cpp server (pid %s) died; restarting", self.pid)
                self.restarts += 1
                self._spawn()
        return self.base_url

    def stop(self, timeout_sec: float = 10.0) -> None:
        """SIGTERM the child, SIGKILL it after ``timeout_sec``, and reap it. Idempotent."""
        self._stopping.set()
        with self._lock:
            self._terminate(timeout_sec)
        watcher = self._watcher
        if watcher is not None and watcher is not threading.current_thread():
            watcher.join(timeout_sec)
        self._watcher = None

    async def astart(self) -> str:
        """:meth:`start` in a worker thread."""
        import anyio.to_thread

        return await anyio.to_thread.run_sync(self.start)

    async def astop(self) -> None:
        """:meth:`stop` in a worker thread."""
        import anyio.to_thread

        await anyio.to_thread.run_sync(self.stop)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- internals -------------------------------------------------------------------------

    def _spawn(self) -> None:
        self._close_pipes()
        self._log = self._open_log()
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module, no shell
            self.command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, start_new_session=True
        )
        self._proc = proc
        try:
            address = self._await_listening(proc)
        except BaseException:
            self._terminate(5.0)
            raise
        self._base_url = address
        self.port = int(address.rsplit(":", 1)[1])  # a restart reuses the port clients know
        log.info("managed llama.cpp server pid %d listening on %s", proc.pid, address)

    def _open_log(self) -> IO[bytes]:
        if self.log_file is None:
            return tempfile.TemporaryFile()
        return self.log_file.open("a+b")

    def _await_listening(self, proc: subprocess.Popen[bytes]) -> str:
        assert proc.stdout is not None  # noqa: S101 - Popen(stdout=PIPE) guarantees it
        deadline = time.monotonic() + self.startup_timeout_sec
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            while (remaining := deadline - time.monotonic()) > 0:
                if not sel.select(min(remaining, 0.5)):
                    continue
                line = proc.stdout.readline().decode(errors="replace").strip()
                if line.startswith(_LISTENING):
                    return line.removeprefix(_LISTENING)
                if not line and proc.poll() is not None:
                    break
        reason = "exited" if proc.poll() is not None else f"did not listen within {self.startup_timeout_sec}s"
        raise ManagedServerError(f"llama.cpp server {reason}; log tail:\n{self._log_tail()}")

    def _log_tail(self, limit: int = 2000) -> str:
        if self._log is None:
            return ""
        self._log.flush()
        self._log.seek(0, os.SEEK_END)
        size = self._log.tell()
        self._log.seek(max(size - limit, 0))
        return self._log.read().decode(errors="replace")

    def _terminate(self, timeout_sec: float) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout_sec)
            except subprocess.TimeoutExpired:
                log.warning("llama.cpp server pid %d ignored SIGTERM; killing it", proc.pid)
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout_sec)
        self._close_pipes()

    def _close_pipes(self) -> None:
        proc = self._proc
        if proc is not None:
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    stream.close()
        if self._log is not None:
            self._log.close()
            self._log = None

    def _watch(self) -> None:
        delay = _WATCH_SEC
        while not self._stopping.wait(delay):
            if self.running:
                continue
            try:
                self.ensure_running()
                delay = _WATCH_SEC
            except ManagedServerError:
                delay = min(delay * 2, _MAX_BACKOFF_SEC)  # e.g. the port was taken meanwhile
                log.exception("restarting the managed llama.cpp server failed; next try in %.0fs", delay)
