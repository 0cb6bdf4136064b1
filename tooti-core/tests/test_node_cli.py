"""``tooti node id|start|status`` through typer's runner (no network beyond 127.0.0.1)."""

from __future__ import annotations

import socket
import subprocess
import sys

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


def test_node_id_is_stable_and_uses_the_configured_key(tmp_path, monkeypatch):
    monkeypatch.setenv("TOOTI_HOME", str(tmp_path / "home"))
    runner = CliRunner()
    first = runner.invoke(app, ["node", "id"])
    assert first.exit_code == 0, first.output
    assert first.output.strip().startswith("12D3KooW")
    assert runner.invoke(app, ["node", "id"]).output == first.output
    assert (tmp_path / "home" / "identity.key").exists()
    config = _config(tmp_path)
    own = runner.invoke(app, ["node", "id", "--file", str(config)])
    assert own.exit_code == 0
    assert own.output != first.output
    assert (tmp_path / "id" / "node.key").exists()
    by_key = runner.invoke(app, ["node", "id", "--key-file", str(tmp_path / "id" / "node.key")])
    assert by_key.output == own.output


def test_help_does_not_import_libp2p():
    code = "import sys; from tooti.cli.root import app; print('libp2p' in sys.modules, 'trio' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split()[0] == "False"
