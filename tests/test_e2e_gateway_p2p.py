"""openai SDK -> gateway (uvicorn + libp2p) -> node process -> real llama.cpp server with SmolLM2.

Everything is real and on 127.0.0.1: the gateway's p2p runtime runs in its app lifespan, the node is
``python -m tooti node start`` with a generated config fronting the session's llama.cpp server.
"""

from __future__ import annotations

import re

import httpx
import openai
import pytest

from tooti.gateway.launcher import LocalUp, NodeProcess, node_config
from tooti.testing import eventually

pytestmark = pytest.mark.live

MESSAGES = [{"role": "user", "content": "Name one colour."}]
JOIN_TIMEOUT = 60.0


def wait_for_nodes(base_url: str, count: int, nodes: list[NodeProcess]) -> list[str]:
    """Poll the gateway's registry until ``count`` nodes are live; return their peer ids."""
    with httpx.Client(base_url=base_url, timeout=5) as http:

        def joined() -> list[str] | None:
            for n in nodes:
                assert n.alive(), n.log_tail()
            peers = [p["peer_id"] for p in http.get("/v1/network/nodes").json()["data"]]
            return peers if len(peers) >= count else None

        return eventually(
            joined,
            timeout=JOIN_TIMEOUT,
            interval=0.2,
            what=lambda: "nodes did not join:\n" + "\n".join(n.log_tail() for n in nodes),
        )


@pytest.fixture(scope="module")
def network(llama_server, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("e2e-p2p")
    stack = LocalUp(llama_server.model_path, port=0, workdir=workdir, node_names=("node-1",))
    bootstrap = stack.start_gateway()
    config = node_config(bootstrap, workdir, name="node-1", base_url=llama_server.base_url, heartbeat_sec=0.5)
    node = NodeProcess.spawn(config, workdir, "node-1")
    try:
        wait_for_nodes(stack.base_url, 1, [node])
        yield stack.base_url
    finally:
        node.stop()
        stack.stop()


@pytest.fixture
def client(network):
    with openai.OpenAI(base_url=f"{network}/v1", api_key="unused", max_retries=0, timeout=120) as c:
        yield c


def test_models_list(client):
    assert "smollm2" in [m.id for m in client.models.list()]


def test_chat(client):
    raw = client.chat.completions.with_raw_response.create(model="smollm2", messages=MESSAGES, max_tokens=8)
    r = raw.parse()
    assert r.choices[0].message.role == "assistant"
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert raw.headers["x-tooti-node"]
    assert float(raw.headers["x-tooti-overhead-ms"]) >= 0


def test_stream_with_usage(client):
    chunks = list(
        client.chat.completions.create(
            model="smollm2", messages=MESSAGES, max_tokens=8, stream=True, stream_options={"include_usage": True}
        )
    )
    usage = [c.usage for c in chunks if c.usage is not None]
    assert len(usage) == 1
    assert 0 < usage[0].completion_tokens <= 8
    assert any(c.choices and c.choices[0].delta.content for c in chunks)


def test_errors(client):
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=MESSAGES)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="smollm2", messages="not a list")


def test_network_view_lists_the_node(network):
    data = httpx.get(f"{network}/v1/network/nodes", timeout=5).json()["data"]
    assert len(data) == 1
    assert "smollm2" in data[0]["models"]
    assert data[0]["age_s"] < 5


def test_metrics_count_received_heartbeats(network):
    text = httpx.get(f"{network}/metrics", timeout=5).text
    found = re.search(r'^tooti_gateway_heartbeats_total\{result="accepted"\} (\S+)$', text, re.M)
    assert found is not None
    assert float(found.group(1)) >= 1
    assert 'tooti_gateway_heartbeats_total{result="invalid"} 0.0' in text
