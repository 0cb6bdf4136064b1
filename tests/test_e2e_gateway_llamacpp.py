"""openai SDK -> gateway (uvicorn) -> in-process node -> real llama.cpp server with SmolLM2.

The p2p hop is replaced by LocalNetwork here (the libp2p path is in test_e2e_gateway_p2p.py); this
checks the gateway against a real model server's shapes: SSE framing, usage, embeddings, errors.
Assertions are on shapes and counts, never on the generated text.
"""

from __future__ import annotations

from contextlib import asynccontextmanager

import openai
import pytest

from tooti.backends.protocol import BackendSettings
from tooti.config.model import Config
from tooti.gateway import create_app
from tooti.gateway.server import ServerThread
from tooti.node.local import LocalNetwork
from tooti.testing import make_plugin_host

pytestmark = pytest.mark.live

MESSAGES = [{"role": "user", "content": "Name one colour."}]


@pytest.fixture(scope="module")
def gateway(llama_server):
    from tooti_backend_llamacpp.backend import LlamaCppBackend
    from tooti_backend_llamacpp.config import LlamaCppConfig

    network = LocalNetwork()
    backend = LlamaCppBackend(BackendSettings(base_url=llama_server.base_url), LlamaCppConfig())

    @asynccontextmanager
    async def node_lifespan(_app):
        # The backend's HTTP client must live and die on the server thread's event loop.
        await backend.start()
        await network.add_backend("llama-node", backend)
        try:
            yield
        finally:
            await backend.aclose()

    app = create_app(Config(), network, make_plugin_host(), lifespan=[node_lifespan])
    server = ServerThread(app)
    url = server.start()
    yield url
    server.stop()


@pytest.fixture
def client(gateway):
    with openai.OpenAI(base_url=f"{gateway}/v1", api_key="unused", max_retries=0, timeout=120) as c:
        yield c


def test_models_list(client):
    ids = [m.id for m in client.models.list()]
    assert "smollm2" in ids


def test_chat_non_stream(client):
    r = client.chat.completions.create(model="smollm2", messages=MESSAGES, max_tokens=8, temperature=0)
    assert r.object == "chat.completion"
    assert r.choices[0].message.role == "assistant"
    assert 0 < r.usage.completion_tokens <= 8
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_chat_stream_with_usage(client):
    stream = client.chat.completions.create(
        model="smollm2",
        messages=MESSAGES,
        max_tokens=8,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    usage = [c.usage for c in chunks if c.usage is not None]
    assert len(usage) == 1
    assert 0 < usage[0].completion_tokens <= 8
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) >= 1


def test_chat_stream_without_usage_has_none(client):
    chunks = list(client.chat.completions.create(model="smollm2", messages=MESSAGES, max_tokens=4, stream=True))
    assert chunks
    assert all(c.usage is None for c in chunks)


def test_embeddings(client):
    r = client.embeddings.create(model="smollm2", input=["red", "blue"])
    assert [d.index for d in r.data] == [0, 1]
    assert len(r.data[0].embedding) > 8
    # llama.cpp's usage (no completion_tokens) becomes the node's usage frame and OpenAI's shape again
    assert r.usage.prompt_tokens > 0
    assert r.usage.model_dump(exclude_none=True) == {
        "prompt_tokens": r.usage.prompt_tokens,
        "total_tokens": r.usage.prompt_tokens,
    }


def test_errors(client):
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="not-a-model", messages=MESSAGES)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="smollm2", messages=[{"content": "no role"}])
