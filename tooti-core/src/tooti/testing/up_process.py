"""``tooti up`` as a subprocess for live tests: started in its own session, ready once it lists a model.

Tests that need a whole local network (gateway, node, managed llama.cpp) the way a user starts it
run the real command rather than its pieces. The process gets its own session so that stopping it
reaches the node and llama.cpp too: Ctrl-C's SIGINT to the group, then SIGKILL if it lingers.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from contextlib import contextmanager
from typing import TYPE_CHECKING

import httpx

from tooti.testing.polling import eventually

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from pathlib import Path

__all__ = ["running_up"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_up(workdir: Path, args: Sequence[str] = (), *, start_timeout: float = 240.0) -> Iterator[str]:
    """Run ``tooti up --port FREE *args`` with ``TOOTI_HOME`` and its output (``up.log``) in ``workdir``.

    Yields the gateway's base URL (``http://127.0.0.1:PORT``) once ``/v1/models`` lists a model.
    Fails with the process's output if it exits before that.
    """
    port = _free_port()
    env = {**os.environ, "TOOTI_HOME": str(workdir / "home"), "COLUMNS": "200"}
    log_path = workdir / "up.log"
    base_url = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        cmd = [sys.executable, "-m", "tooti", "up", "--port", str(port), *args]
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        try:

            def lists_models() -> bool:
                if proc.poll() is not None:
                    output = log_path.read_text(errors="replace")
                    raise AssertionError(f"tooti up exited ({proc.returncode}):\n{output}")
                return bool(httpx.get(f"{base_url}/v1/models", timeout=5).json()["data"])

            eventually(
                lists_models,
                timeout=start_timeout,
                interval=1,
                ignoring=(httpx.HTTPError, ValueError, KeyError),
                what="tooti up did not become ready",
            )
            yield base_url
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(30)
