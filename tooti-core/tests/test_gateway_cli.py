"""CLI: ``tooti gateway hash-key``, ``tooti gateway start`` errors, ``tooti network peers|models``."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tooti.cli.root import app
from tooti.config.model import Config, GatewaySection, VerificationSection
from tooti.gateway import create_app
from tooti.gateway.api_keys import hash_key
from tooti.gateway.server import ServerThread
from tooti.network import AdvertisedModel
from tooti.node.local import LocalNetwork
from tooti.testing import FakeBackend, make_plugin_host

runner = CliRunner()

# FakeBackend answers every prompt alike, which the gateway's canaries rightly quarantine as a fixed
# reply after a few seconds; this module-long gateway tests other things.
_NO_CANARIES = Config(gateway=GatewaySection(verification=VerificationSection(enabled=False)))


def test_hash_key_from_stdin():
    result = runner.invoke(app, ["gateway", "hash-key"], input="my-key\n")
    assert result.exit_code == 0
    assert result.stdout.strip() == hash_key("my-key")


def test_hash_key_generate():
    result = runner.invoke(app, ["gateway", "hash-key", "--generate"])
    assert result.exit_code == 0
    lines = dict(line.split(":", 1) for line in result.stdout.strip().splitlines() if ":" in line)
    assert hash_key(lines["key"].strip()) == lines["hash"].strip()


def test_hash_key_rejects_empty_stdin():
    result = runner.invoke(app, ["gateway", "hash-key"], input="\n")
    assert result.exit_code == 1


def test_gateway_start_with_a_bad_config_fails_cleanly(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("gateway:\n  listen: nowhere\n")
    result = runner.invoke(app, ["gateway", "start", "-f", str(bad)])
    assert result.exit_code == 1
    assert "gateway.listen" in result.stderr


@pytest.fixture(scope="module")
def gateway_url():
    network = LocalNetwork()
    network.add_node("peerA", FakeBackend(), [AdvertisedModel(name="fake-model", aliases=("fk",), context_length=512)])
    server = ServerThread(create_app(_NO_CANARIES, network, make_plugin_host()))
    url = server.start()
    yield url
    server.stop()


def test_network_peers_table_and_json(gateway_url):
    result = runner.invoke(app, ["network", "peers", "--gateway", gateway_url])
    assert result.exit_code == 0
    assert "peerA" in result.stdout
    result = runner.invoke(app, ["network", "peers", "-g", gateway_url, "--json"])
    assert [n["peer_id"] for n in json.loads(result.stdout)["data"]] == ["peerA"]


def test_network_models(gateway_url):
    result = runner.invoke(app, ["network", "models", "-g", gateway_url])
    assert result.exit_code == 0
    assert "fake-model" in result.stdout
    assert "fk" in result.stdout
    result = runner.invoke(app, ["network", "models", "-g", gateway_url, "--json"])
    assert {m["id"] for m in json.loads(result.stdout)["data"]} == {"fake-model", "fk"}


def test_network_unreachable_gateway_fails_cleanly():
    result = runner.invoke(app, ["network", "peers", "-g", "http://127.0.0.1:9"])
    assert result.exit_code == 1
    assert "cannot reach" in result.stderr
