"""What the gateway measures and logs about a request: decode speed, and no request content in logs."""

from __future__ import annotations

import logging

import pytest
from litestar.testing import AsyncTestClient

from tooti.config.model import Config
from tooti.errors import BackendBadRequest, UpstreamError
from tooti.gateway import create_app
from tooti.node.local import LocalNetwork
from tooti.testing import FakeBackend, make_plugin_host

pytestmark = pytest.mark.anyio

SECRET = "SECRET-TOOL-SCHEMA-4711"  # noqa: S105 - a marker string, not a credential
CHAT = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def backend():
    return FakeBackend(chunks=10, chunk_delay_sec=0.02)


@pytest.fixture
async def client(backend):
    network = LocalNetwork()
    network.add_node("peerA", backend, ["fake-model"])
    async with AsyncTestClient(create_app(Config(), network, make_plugin_host())) as c:
        yield c


async def _speed(client) -> float | None:
    nodes = (await client.get("/v1/network/nodes")).json()["data"]
    return nodes[0]["gateway"]["tokens_per_s"]


async def test_tokens_per_s_is_the_decode_speed_of_streamed_answers_only(client):
    whole = await client.post("/v1/chat/completions", json=CHAT)
    assert whole.status_code == 200
    assert await _speed(client) is None, "a whole answer shows no decode phase"
    streamed = await client.post("/v1/chat/completions", json={**CHAT, "stream": True})
    assert streamed.status_code == 200
    speed = await _speed(client)
    # 10 tokens, 20 ms apart: 9 decoded after the first in ~0.18 s = ~50 tok/s (slower when busy).
    assert speed is not None
    assert 5 < speed < 80


@pytest.mark.parametrize("error", [UpstreamError, BackendBadRequest])
@pytest.mark.parametrize("stream", [False, True])
async def test_model_server_error_texts_stay_out_of_the_log(client, backend, caplog, error, stream):
    caplog.set_level(logging.INFO)
    backend.fail_with(error(f"llama.cpp answered 500: Failed to parse tools: {SECRET}"))
    response = await client.post("/v1/chat/completions", json={**CHAT, "stream": stream})
    assert response.status_code in (400, 502)
    assert not [r.getMessage() for r in caplog.records if SECRET in r.getMessage()]
