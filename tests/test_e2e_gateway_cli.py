"""``tooti gateway start`` as an operator runs it: a subprocess, its p2p address in the log, SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import httpx

from tooti.testing import eventually


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_gateway_start_serves_and_stops_on_sigterm(tmp_path):
    port = _free_port()
    config = tmp_path / "gateway.yaml"
    config.write_text(f'listen: {{host: 127.0.0.1, tcp_port: 0}}\ngateway: {{listen: "127.0.0.1:{port}"}}\n')
    log = (tmp_path / "gateway.log").open("wb")
    env = {**os.environ, "TOOTI_HOME": str(tmp_path / "home")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tooti", "gateway", "start", "-f", str(config)], stdout=log, stderr=log, env=env
    )
    try:

        def answers() -> httpx.Response:
            assert proc.poll() is None, (tmp_path / "gateway.log").read_text()
            return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)

        health = eventually(
            answers, timeout=60, interval=0.2, ignoring=(httpx.HTTPError,), what=(tmp_path / "gateway.log").read_text
        )
        assert health.status_code == 200
        ready = httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2)
        assert ready.status_code == 503  # no node yet
        assert (tmp_path / "home" / "gateway.key").exists()
        proc.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal with its default action.
        assert proc.wait(30) in (0, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        log.close()
    output = (tmp_path / "gateway.log").read_text()
    assert "/p2p/12D3KooW" in output
    assert "Application shutdown complete" in output  # the lifespan stopped the p2p runtime
