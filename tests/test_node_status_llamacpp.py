"""``tooti node status`` against the session's real llama.cpp server."""

from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from tooti.cli.root import app

pytestmark = pytest.mark.live


def test_node_status_shows_health_models_identity_and_hardware(tmp_path, monkeypatch, llama_server):
    monkeypatch.setenv("TOOTI_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "200")
    config = tmp_path / "node.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "node": {"name": "status-node", "identity_key_file": str(tmp_path / "node.key")},
                "backend": {"type": "llamacpp", "base_url": llama_server.base_url},
                "models": {"advertised": ["smollm2", "not-served"]},
            }
        )
    )
    runner = CliRunner()
    peer = runner.invoke(app, ["node", "id", "-f", str(config)]).output.strip()
    result = runner.invoke(app, ["node", "status", "-f", str(config)])
    assert result.exit_code == 0, result.output
    assert "healthy" in result.output
    assert "unhealthy" not in result.output
    assert peer in result.output
    assert "smollm2" in result.output
    assert "not-served" not in result.output  # warned about, never advertised
    assert " cpu" in result.output
