"""Tests an author would write: the plugin loads through its entry point and the backend behaves."""

from __future__ import annotations

import pytest

from tooti.config import backend_plugin_config, backend_settings, parse_config
from tooti.errors import BackendBadRequest, ModelNotFound
from tooti.plugins import PluginHost

CONFIG = """
backend:
  type: echo
backends:
  echo:
    model: echo-test
"""


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def backend():
    host = PluginHost()  # real entry points: the installed distribution must register itself
    config = parse_config(CONFIG, suffix=".yaml")
    cls = host.backend_class(config.backend.type)
    return cls.from_config(backend_settings(config), backend_plugin_config(config, host))


def test_entry_point_registers_echo():
    host = PluginHost()
    host.load_all()
    (row,) = [r for r in host.inventory() if r.name == "echo"]
    assert (row.kind, row.status, row.distribution) == ("backend", "ok", "tooti-backend-echo")


def test_unknown_config_key_is_named():
    from tooti.errors import ConfigError

    config = parse_config("backend: {type: echo}\nbackends: {echo: {modle: x}}\n", suffix=".yaml")
    with pytest.raises(ConfigError, match=r"backends\.echo\.modle: unknown key"):
        backend_plugin_config(config, PluginHost())


@pytest.mark.anyio
async def test_chat_echoes_and_counts(backend):
    body = {"model": "echo-test", "messages": [{"role": "user", "content": "hello there world"}], "max_tokens": 2}
    answer = await backend.chat(body)
    assert answer["choices"][0]["message"]["content"] == "hello there"
    assert answer["usage"] == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}


@pytest.mark.anyio
async def test_stream_yields_words_then_usage(backend):
    body = {"model": "echo-test", "messages": [{"role": "user", "content": "a b c"}]}
    chunks = [c async for c in backend.chat_stream(body)]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == "a b c"
    assert chunks[-1]["usage"]["completion_tokens"] == 3
    assert backend.in_flight == 0


@pytest.mark.anyio
async def test_errors_are_typed(backend):
    with pytest.raises(ModelNotFound):
        await backend.chat({"model": "other", "messages": [{"role": "user", "content": "x"}]})
    with pytest.raises(BackendBadRequest):
        await backend.chat({"model": "echo-test", "messages": []})
