"""``tooti node start|status`` with the llama.cpp plugin pointed at a dead server (cross-package)."""

from __future__ import annotations

import socket

import yaml
from typer.testing import CliRunner

from tooti.cli.root import app


def _closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(tmp_path, **extra):
    data = {
        "node": {"name": "cli", "identity_key_file": str(tmp_path / "id" / "node.key")},
        "listen": {"host": "127.0.0.1", "tcp_port": 0},
        "backend": {"type": "llamacpp", "base_url": f"http://127.0.0.1:{_closed_port()}"},
        **extra,
    }
    path = tmp_path / "node.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_node_start_refuses_an_unhealthy_backend(tmp_path, monkeypatch):
    monkeypatch.setenv("TOOTI_HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(app, ["node", "start", "-f", str(_config(tmp_path))])
    assert result.exit_code == 1
    assert "unhealthy" in result.output


def test_node_status_reports_an_unhealthy_backend(tmp_path, monkeypatch):
    monkeypatch.setenv("TOOTI_HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(app, ["node", "status", "-f", str(_config(tmp_path))])
    assert result.exit_code == 0, result.output
    assert "unhealthy" in result.output
    assert "no identity yet" in result.output
