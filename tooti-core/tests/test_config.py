from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from tooti.config import default_config_file, default_identity_file, load_config, parse_config, tooti_home
from tooti.config.loader import convert_section
from tooti.errors import ConfigError

EXAMPLE = Path(__file__).parents[2] / "docs" / "node.example.yaml"


def test_documented_example_is_valid_and_matches_defaults():
    config = load_config(EXAMPLE)
    assert config.node.name == "tooti-node"
    assert config.backend.type == "llamacpp"
    assert config.heartbeat.interval_sec == 5.0
    assert config.models.pricing["smollm2-135m"].output_per_1k == 0.0


def test_empty_file_gives_defaults(tmp_path):
    f = tmp_path / "node.yaml"
    f.write_text("")
    config = load_config(f)
    assert config.gateway.listen == "127.0.0.1:8080"
    assert config.gateway.auth_mode == "off"


def test_toml_is_read_by_extension(tmp_path):
    f = tmp_path / "node.toml"
    f.write_text('[node]\nname = "t"\n[listen]\ntcp_port = 4100\n')
    config = load_config(f)
    assert (config.node.name, config.listen.tcp_port) == ("t", 4100)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("node:\n  nmae: x\n", r"node\.nmae: unknown key"),
        ("nodes: {}\n", r"nodes: unknown key"),
        ("listen:\n  tcp_port: 70000\n", r"listen\.tcp_port: Expected `int` <= 65535"),
        ("listen:\n  tcp_port: '4001'\n", r"listen\.tcp_port: Expected `int`, got `str`"),
        ("heartbeat:\n  interval_sec: 0\n", r"heartbeat\.interval_sec: Expected `float` > 0"),
        ("gateway:\n  auth_mode: maybe\n", r"gateway\.auth_mode: Invalid enum value 'maybe'"),
        ("gateway:\n  listen: nocolon\n", r"gateway: gateway\.listen must be HOST:PORT"),
        ("network:\n  bootstrap_peers: ['/ip4/1.2.3.4/tcp/1']\n", r"lacks /p2p/<peer id>"),
        ("network:\n  bootstrap_peers: ['example.org']\n", r"is not a multiaddr"),
        (
            "models:\n  pricing:\n    m: {input_per_1k: -1}\n",
            r"models\.pricing\.m\.input_per_1k: Expected `float` >= 0",
        ),
        ("- a\n- b\n", r"top level must be a mapping"),
        ("node: [\n", r"not valid YAML"),
    ],
)
def test_bad_values_name_the_key(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(text, suffix=".yaml", source="node.yaml")


def test_unsupported_extension_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"unsupported config format '\.json'"):
        parse_config("{}", suffix=".json")
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "absent.yaml")


def test_convert_section_prefixes_paths():
    class Section(msgspec.Struct, forbid_unknown_fields=True):
        port: int = 1

    with pytest.raises(ConfigError, match=r"backends\.x\.prot: unknown key"):
        convert_section({"prot": 2}, Section, prefix="backends.x")


def test_tooti_home_override(monkeypatch, tmp_path):
    monkeypatch.setenv("TOOTI_HOME", str(tmp_path))
    assert tooti_home() == tmp_path
    assert default_config_file() == tmp_path / "node.yaml"
    assert default_identity_file() == tmp_path / "identity.key"
    monkeypatch.delenv("TOOTI_HOME")
    assert tooti_home().name == "tooti"
