"""Gateway endpoints over LocalNetwork + FakeBackend: shapes, status codes, SSE framing, usage, headers."""

from __future__ import annotations

import json

import pytest
from litestar.testing import AsyncTestClient

from tooti.config.model import Config
from tooti.gateway import create_app
from tooti.network import AdvertisedModel
from tooti.node.local import LocalNetwork
from tooti.testing import FakeBackend, make_plugin_host

pytestmark = pytest.mark.anyio

CHAT = {"model": "fake-model", "messages": [{"role": "user", "content": "hello there"}]}


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def backend():
    return FakeBackend(chunks=4)


@pytest.fixture
def network(backend):
    net = LocalNetwork()
    net.add_node(
        "peerA",
        backend,
        [AdvertisedModel(name="fake-model", aliases=("fake",), context_length=2048, backend="fake")],
    )
    return net


@pytest.fixture
async def client(network):
    app = create_app(Config(), network, make_plugin_host())
    async with AsyncTestClient(app) as c:
        yield c


def sse_data(text: str) -> list[str]:
    """The ``data:`` payloads of an SSE body, checking the framing on the way."""
    assert text.endswith("\n\n")
    out = []
    for event in text.split("\n\n")[:-1]:
        assert event.startswith("data: "), event
        out.append(event[len("data: ") :])
    return out


async def test_health_is_always_ok(client):
    r = await client.get("/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


async def test_ready_needs_a_live_node(client, network):
    assert (await client.get("/ready")).status_code == 200
    network.remove_node("peerA")
    r = await client.get("/ready")
    assert r.status_code == 503
    assert r.json()["nodes"] == 0


async def test_models_lists_names_and_aliases(client):
    r = await client.get("/v1/models")
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "list"
    ids = [m["id"] for m in body["data"]]
    assert ids == ["fake", "fake-model"]
    canonical = body["data"][1]
    assert canonical["owned_by"] == "fake"
    assert canonical["context_length"] == 2048
    assert canonical["aliases"] == ["fake"]
    assert body["data"][0]["root"] == "fake-model"


async def test_model_lookup(client):
    assert (await client.get("/v1/models/fake")).json()["root"] == "fake-model"
    r = await client.get("/v1/models/other")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "model_not_found"


async def test_network_nodes_view(client):
    await client.post("/v1/chat/completions", json=CHAT)
    r = await client.get("/v1/network/nodes")
    assert r.status_code == 200
    [node] = r.json()["data"]
    assert node["peer_id"] == "peerA"
    assert node["models"] == ["fake", "fake-model"]
    assert {"in_flight", "ttft_ms", "tokens_per_s", "last_seen", "age_s"} <= set(node)
    assert node["gateway"]["served"] == 1


async def test_chat_non_stream(client, backend):
    body = {**CHAT, "temperature": 0.3, "max_tokens": 7, "logit_bias": {"42": 1}, "some_future_param": [1, 2]}
    r = await client.post("/v1/chat/completions", json=body)
    assert r.status_code == 200
    data = r.json()
    assert data["object"] == "chat.completion"
    assert data["choices"][0]["message"]["role"] == "assistant"
    usage = data["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    sent = backend.calls[-1].body
    for key in ("temperature", "max_tokens", "logit_bias", "some_future_param"):
        assert sent[key] == body[key]


async def test_chat_by_alias_reaches_the_node(client, backend):
    r = await client.post("/v1/chat/completions", json={**CHAT, "model": "fake"})
    # The fake backend only knows its canonical name; the alias is routed and the node answers.
    assert r.status_code in (200, 404)
    assert backend.calls[-1].method == "chat"


async def test_tooti_preferences_are_not_forwarded(client, backend):
    r = await client.post("/v1/chat/completions", json={**CHAT, "tooti": {"strategy": "simple"}})
    assert r.status_code == 200
    assert "tooti" not in backend.calls[-1].body


async def test_chat_stream_framing_without_usage(client, backend):
    r = await client.post("/v1/chat/completions", json={**CHAT, "stream": True})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse_data(r.text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert all("usage" not in c for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert len(text) == len(backend.reply)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


async def test_chat_stream_include_usage(client):
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    r = await client.post("/v1/chat/completions", json=body)
    events = sse_data(r.text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    with_usage = [c for c in chunks if c.get("usage")]
    assert len(with_usage) == 1
    usage = with_usage[0]["usage"]
    assert usage["completion_tokens"] == 4
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


async def test_stream_asks_the_node_for_usage(client, backend):
    await client.post("/v1/chat/completions", json={**CHAT, "stream": True})
    assert backend.calls[-1].body["stream_options"] == {"include_usage": True}


async def test_completions_non_stream_and_stream(client):
    r = await client.post("/v1/completions", json={"model": "fake-model", "prompt": "Once upon"})
    assert r.status_code == 200
    assert r.json()["object"] == "text_completion"
    r = await client.post(
        "/v1/completions",
        json={"model": "fake-model", "prompt": "Once", "stream": True, "stream_options": {"include_usage": True}},
    )
    events = sse_data(r.text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["text"]
    assert chunks[-1]["usage"]["total_tokens"] > 0


async def test_embeddings(client):
    r = await client.post("/v1/embeddings", json={"model": "fake-model", "input": ["a b", "c"]})
    assert r.status_code == 200
    data = r.json()
    assert [d["index"] for d in data["data"]] == [0, 1]
    assert all(len(d["embedding"]) == 8 for d in data["data"])


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/chat/completions", b"{not json", None),
        ("/v1/chat/completions", b"[1, 2]", None),
        ("/v1/chat/completions", b"", None),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}]}, "model"),
        ("/v1/chat/completions", {"model": 3, "messages": [{"role": "user", "content": "x"}]}, "model"),
        ("/v1/chat/completions", {"model": "fake-model"}, "messages"),
        ("/v1/chat/completions", {"model": "fake-model", "messages": []}, "messages"),
        ("/v1/chat/completions", {"model": "fake-model", "messages": ["hi"]}, "messages[0]"),
        ("/v1/chat/completions", {"model": "fake-model", "messages": [{"content": "x"}]}, "messages[0].role"),
        ("/v1/chat/completions", {**CHAT, "stream": "yes"}, "stream"),
        ("/v1/chat/completions", {**CHAT, "stream": True, "stream_options": 1}, "stream_options"),
        ("/v1/chat/completions", {**CHAT, "tooti": "fast"}, "tooti"),
        ("/v1/completions", {"model": "fake-model"}, "prompt"),
        ("/v1/embeddings", {"model": "fake-model", "input": []}, "input"),
        ("/v1/embeddings", {"model": "fake-model", "input": "x", "stream": True}, "stream"),
    ],
)
async def test_bad_bodies_are_400_naming_the_field(client, path, body, param):
    if isinstance(body, bytes):
        r = await client.post(path, content=body, headers={"content-type": "application/json"})
    else:
        r = await client.post(path, json=body)
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error"
    assert err["param"] == param
    assert set(err) == {"message", "type", "param", "code"}


@pytest.mark.parametrize(
    ("prefs", "headers", "param"),
    [
        ({"strategy": "no-such-strategy"}, {}, "tooti.strategy"),
        ({"max_price": -1}, {}, "tooti.max_price"),
        ({"bogus": 1}, {}, "tooti.bogus"),
        (None, {"x-tooti-max-price": "cheap"}, "x-tooti-max-price"),
    ],
)
async def test_bad_preferences_are_400(client, prefs, headers, param):
    body = dict(CHAT) if prefs is None else {**CHAT, "tooti": prefs}
    r = await client.post("/v1/chat/completions", json=body, headers=headers)
    assert r.status_code == 400
    assert r.json()["error"]["param"] == param


async def test_preferences_that_exclude_every_node_are_503(client):
    r = await client.post("/v1/chat/completions", json={**CHAT, "tooti": {"ignore": ["peerA"]}})
    assert r.status_code == 503
    assert r.json()["error"]["type"] == "service_unavailable"


async def test_unknown_model_is_404(client):
    r = await client.post("/v1/chat/completions", json={**CHAT, "model": "gpt-17"})
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "model_not_found"


async def test_model_whose_nodes_left_is_503(client, network):
    assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200
    network.remove_node("peerA")
    r = await client.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "no_capacity"
    assert r.headers["retry-after"] == "5"
    model = await client.get("/v1/models/fake-model")  # known, no capacity: listed with 0 nodes, not 404
    assert model.status_code == 200
    assert model.json()["nodes"] == 0
    assert (await client.get("/v1/models/gpt-17")).status_code == 404


async def test_unknown_path_and_method_are_openai_shaped(client):
    r = await client.get("/v1/nothing")
    assert r.status_code == 404
    assert "error" in r.json()
    r = await client.get("/v1/chat/completions")
    assert r.status_code == 405
    assert "error" in r.json()


async def test_headers_request_id_node_overhead(client):
    r = await client.post("/v1/chat/completions", json=CHAT, headers={"x-request-id": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    assert r.headers["x-tooti-node"] == "peerA"
    assert float(r.headers["x-tooti-overhead-ms"]) >= 0
    assert "x-tooti-route" not in r.headers
    r = await client.post("/v1/chat/completions", json=CHAT, headers={"x-request-id": "bad id\twith junk"})
    assert r.headers["x-request-id"].startswith("req-")
    assert r.headers["x-request-id"] != "bad id\twith junk"


async def test_route_debug_header(client):
    r = await client.post("/v1/chat/completions", json=CHAT, headers={"x-tooti-debug": "1"})
    assert "strategy=simple" in r.headers["x-tooti-route"]
    assert "peerA" in r.headers["x-tooti-route"]


async def test_errors_carry_request_id(client):
    r = await client.post("/v1/chat/completions", json={**CHAT, "model": "nope"})
    assert r.headers["x-request-id"]


async def test_metrics_count_routes_statuses_and_ttft(client):
    await client.post("/v1/chat/completions", json=CHAT)
    await client.post("/v1/chat/completions", json={**CHAT, "model": "nope"})
    text = (await client.get("/metrics")).text
    assert 'tooti_gateway_requests_total{route="/v1/chat/completions",status="200"} 1.0' in text
    assert 'tooti_gateway_requests_total{route="/v1/chat/completions",status="404"} 1.0' in text
    assert 'tooti_gateway_ttft_seconds_count{model="fake-model"} 1.0' in text
    assert "tooti_gateway_request_seconds_bucket" in text
    assert "tooti_gateway_overhead_seconds_count" in text
    assert "tooti_gateway_failovers_total" in text or "tooti_gateway_failovers" in text


async def test_openapi_schema_documents_bodies(client):
    schema = (await client.get("/schema/openapi.json")).json()
    chat = schema["paths"]["/v1/chat/completions"]["post"]
    body = chat["requestBody"]["content"]["application/json"]["schema"]
    assert {"model", "messages"} <= set(body["required"])
