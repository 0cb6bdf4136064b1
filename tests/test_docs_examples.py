"""Every example config in docs/ is what the code accepts, and the annotated example shows the code's defaults.

``docs/node.example.yaml`` promises "every key is optional; the values shown are the defaults unless
noted" and the README says it "documents every key": so it must list every key of the schema and,
outside the few noted places, hold exactly :class:`~tooti.config.model.Config`'s defaults. The
``yaml`` blocks in docs/*.md are config fragments a reader copies: each one loads through the same
loader. Plugin sections (``backends.<type>``, ``routing.params.<strategy>``) are validated by the
installed plugins, as a gateway or node does at start.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from tooti.backends.protocol import BackendSettings
from tooti.config.loader import backend_plugin_config, load_config, parse_config
from tooti.config.model import BackendSection, Config
from tooti.gateway.strategies import StrategyResolver
from tooti.plugins.host import PluginHost

DOCS = Path(__file__).parents[1] / "docs"
NODE_EXAMPLE = DOCS / "node.example.yaml"
EXAMPLE_FILES = sorted(p for p in DOCS.glob("*.example.*") if p.suffix in {".yaml", ".yml", ".json", ".toml"})

# Where the annotated example shows an illustration, not the default (the file's comments say so).
NOTED = {
    "models.pricing": "an example price list; the default is none",
    "backends": "the llama.cpp plugin's section, shown empty; the default has no plugin sections",
}


def _markdown_blocks() -> list[tuple[str, str]]:
    blocks = []
    for page in sorted(DOCS.glob("*.md")):
        for n, text in enumerate(re.findall(r"```ya?ml\n(.*?)```", page.read_text(), flags=re.DOTALL), 1):
            blocks.append((f"{page.name}#{n}", text))
    return blocks


def _validate_plugin_sections(config: Config) -> None:
    host = PluginHost()
    if config.backends or config.backend.base_url is None:
        backend_plugin_config(config, host)
    resolver = StrategyResolver(host, config.routing.strategy, config.routing.params)
    for name in config.routing.params:
        resolver.get(name)


def _schema_keys(struct: type[msgspec.Struct], prefix: str = "") -> set[str]:
    """Dotted paths of every field, descending into nested sections (dict-valued fields are leaves)."""
    keys = set()
    for field in msgspec.structs.fields(struct):
        path = f"{prefix}{field.encode_name}"
        keys.add(path)
        if isinstance(field.type, type) and issubclass(field.type, msgspec.Struct):
            keys |= _schema_keys(field.type, f"{path}.")
    return keys


def _document_keys(data: dict[str, Any], prefix: str = "", leaves: frozenset[str] = frozenset()) -> set[str]:
    keys = set()
    for key, value in data.items():
        path = f"{prefix}{key}"
        keys.add(path)
        if isinstance(value, dict) and path not in leaves:
            keys |= _document_keys(value, f"{path}.", leaves)
    return keys


def _differences(shown: Any, default: Any, path: str = "") -> list[str]:
    if isinstance(default, dict) and isinstance(shown, dict) and path not in NOTED:
        out = []
        for key in sorted(set(shown) | set(default)):
            out += _differences(shown.get(key), default.get(key), f"{path}.{key}" if path else key)
        return out
    if path in NOTED or shown == default:
        return []
    return [f"{path}: the example shows {shown!r}, the code's default is {default!r}"]


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_every_example_config_file_loads_and_its_plugin_sections_validate(path):
    _validate_plugin_sections(load_config(path))


@pytest.mark.parametrize(("where", "text"), _markdown_blocks(), ids=[w for w, _ in _markdown_blocks()])
def test_every_yaml_block_in_the_docs_loads_and_its_plugin_sections_validate(where, text):
    _validate_plugin_sections(parse_config(text, suffix=".yaml", source=where))


def test_the_node_example_is_among_the_examples_checked():
    assert NODE_EXAMPLE in EXAMPLE_FILES


def test_the_annotated_example_documents_every_key_of_the_schema():
    data = yaml.safe_load(NODE_EXAMPLE.read_text())
    plugin_owned = frozenset({"backends", "routing.params", "models.pricing"})  # keys inside belong to plugins/users
    documented = _document_keys(data, leaves=plugin_owned)
    schema = _schema_keys(Config)
    assert sorted(schema - documented) == [], "keys of the config schema missing from docs/node.example.yaml"
    assert sorted(documented - schema) == [], "keys in docs/node.example.yaml the schema does not have"


def test_the_annotated_example_shows_the_code_defaults():
    shown = msgspec.to_builtins(load_config(NODE_EXAMPLE))
    default = msgspec.to_builtins(Config())
    assert _differences(shown, default) == []


def test_a_backends_default_timeouts_are_one_value_in_config_and_in_the_backend_settings():
    """A backend built from settings without a config (a plugin's own tests) waits as long as a configured one."""
    settings = BackendSettings(base_url="http://127.0.0.1:1")
    section = BackendSection()
    assert (settings.connect_timeout_sec, settings.request_timeout_sec) == (
        section.connect_timeout_sec,
        section.request_timeout_sec,
    )
