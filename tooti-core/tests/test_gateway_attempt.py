"""One owner per request attempt: failure classification, timeout messages, hooks, usage once.

These use the same in-process network as ``test_gateway_failover.py``; each test states the rule of
the failure table in docs/gateway.md that it checks.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
from litestar.testing import AsyncTestClient

from tooti.errors import BackendBadRequest, BackendOverloaded, BackendUnavailable, MalformedResponse, UpstreamError
from tooti.gateway import create_app
from tooti.testing import make_plugin_host
from tooti.wire.infer import ChunkFrame, ResponseFrame

from .test_gateway_failover import CHAT, STREAM, GhostNetwork, events, failovers, make_config

if TYPE_CHECKING:
    from tooti.gateway.request_hooks import Completion

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def backends():
    from tooti.testing import FakeBackend

    return {"peerA": FakeBackend(), "peerB": FakeBackend(), "peerC": FakeBackend()}


@pytest.fixture
def network(backends):
    net = GhostNetwork()
    for peer, backend in backends.items():
        net.add_node(peer, backend, ["fake-model"])
    return net


@pytest.fixture
def config():
    return make_config()


@pytest.fixture
async def app(network, config):
    return create_app(config, network, make_plugin_host())


@pytest.fixture
async def client(app):
    async with AsyncTestClient(app) as c:
        yield c


def gateway(app):
    return app.state.gateway


async def node_stats(client) -> dict[str, dict]:
    return {n["peer_id"]: n["gateway"] for n in (await client.get("/v1/network/nodes")).json()["data"]}


@pytest.mark.parametrize("stream", [False, True])
async def test_a_client_error_goes_back_as_400_and_does_not_count_against_the_node(client, backends, stream):
    backends["peerA"].fail_with(BackendBadRequest("model server answered 400: context length exceeded"))
    r = await client.post("/v1/chat/completions", json=STREAM if stream else CHAT)
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert not backends["peerB"].calls
    assert not backends["peerC"].calls
    stats = (await node_stats(client))["peerA"]
    assert stats["in_cooldown"] is False
    assert stats["recent_failures"] == 0


@pytest.mark.parametrize(("server_status", "client_status"), [(413, 413), (422, 422), (404, 400), (None, 400)])
async def test_the_model_servers_4xx_reaches_the_client_as_the_matching_4xx(
    client, backends, server_status, client_status
):
    backends["peerA"].fail_with(BackendBadRequest("model server answered: too large", status_code=server_status))
    r = await client.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == client_status
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert not backends["peerB"].calls
    assert (await node_stats(client))["peerA"]["in_cooldown"] is False


@pytest.mark.parametrize(("sent", "seen"), [(422, 422), (413, 413), (200, 400), (429, 400), (401, 400), (10**12, 400)])
def test_a_bad_request_status_crosses_the_wire_bounded(sent, seen):
    """Whatever status a peer puts in its error frame, the client only ever gets a client-facing 4xx."""
    from tooti.gateway.api_errors import from_backend_error
    from tooti.p2p.framing import decode_response, encode_frame
    from tooti.wire.error_codes import error_from_frame
    from tooti.wire.infer import ErrorFrame

    wire = encode_frame(ErrorFrame(code="bad_request", message="x", status=sent), limit=1 << 20)
    frame = decode_response(wire[4:])
    assert isinstance(frame, ErrorFrame)
    assert from_backend_error(error_from_frame(frame)).status == seen


async def test_overloaded_moves_on_without_cooling_the_node(client, backends):
    backends["peerA"].fail_with(BackendOverloaded("queue full"))
    r = await client.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 200
    assert r.headers["x-tooti-node"] == "peerB"
    assert failovers((await client.get("/metrics")).text) == 1
    stats = (await node_stats(client))["peerA"]
    assert stats["in_cooldown"] is False
    assert stats["recent_failures"] == 0


@pytest.mark.parametrize("error", [BackendUnavailable("down"), UpstreamError("500"), MalformedResponse("cut")])
async def test_the_nodes_own_failures_cool_it(client, backends, error):
    backends["peerA"].fail_with(error)
    r = await client.post("/v1/chat/completions", json=CHAT)
    assert r.headers["x-tooti-node"] == "peerB"
    stats = (await node_stats(client))["peerA"]
    assert stats["in_cooldown"] is True
    assert stats["recent_failures"] == 1


async def test_a_client_error_mid_stream_ends_the_stream_without_cooling_the_node(client, backends, network):
    network.remove_node("peerB")
    network.remove_node("peerC")
    backends["peerA"].fail_with(BackendBadRequest("bad tool arguments"), after_chunks=1)
    r = await client.post("/v1/chat/completions", json=STREAM)
    last = json.loads(events(r.text)[-1])
    assert last["error"]["type"] == "invalid_request_error"
    stats = (await node_stats(client))["peerA"]
    assert stats["in_cooldown"] is False
    assert stats["recent_failures"] == 0


@pytest.mark.parametrize(
    ("config", "body", "limit"),
    [
        (make_config(timeouts={"first_token_sec": 0.2}, routing={"max_attempts": 1}), STREAM, "first_token_sec"),
        (
            make_config(timeouts={"first_token_sec": 5, "total_request_sec": 0.3}, routing={"max_attempts": 1}),
            STREAM,
            "total_request_sec",
        ),
        (make_config(timeouts={"total_request_sec": 0.3}, routing={"max_attempts": 1}), CHAT, "total_request_sec"),
    ],
)
async def test_a_timeout_before_the_first_token_names_the_limit_that_fired(client, network, body, limit):
    network.ghosts["peer0-slow"] = "hang"  # sorts before peerA: tried first
    r = await client.post("/v1/chat/completions", json=body)
    assert r.status_code == 504
    message = r.json()["error"]["message"]
    assert f"timeouts.{limit}" in message
    other = {"first_token_sec", "total_request_sec"} - {limit}
    assert not any(o in message for o in other)


@pytest.mark.parametrize("config", [make_config(timeouts={"idle_sec": 0.2, "first_token_sec": 10})])
async def test_an_idle_gap_names_idle_sec(client, backends, network):
    network.remove_node("peerB")
    network.remove_node("peerC")
    backends["peerA"].chunk_delay_sec = 0.4
    r = await client.post("/v1/chat/completions", json=STREAM)
    assert "timeouts.idle_sec" in json.loads(events(r.text)[-1])["error"]["message"]


async def test_one_completion_per_request_with_usage_node_and_failovers(app, client, backends):
    seen: list[Completion] = []
    gateway(app).hooks.on_complete.append(seen.append)
    backends["peerA"].fail_with(BackendUnavailable("down"))
    r = await client.post("/v1/chat/completions", json=STREAM)
    assert events(r.text)[-1] == "[DONE]"
    r = await client.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 200
    assert len(seen) == 2
    first, second = seen
    assert (first.peer_id, first.status, first.failovers, first.error) == ("peerB", "ok", 1, None)
    assert first.usage is not None
    assert first.usage.completion_tokens > 0
    assert first.ttft_s is not None
    assert first.duration_s >= first.ttft_s
    assert second.status == "ok"
    assert second.usage is not None


async def test_a_request_every_node_failed_completes_once_as_failed(app, client, backends):
    seen: list[Completion] = []
    gateway(app).hooks.on_complete.append(seen.append)
    for b in backends.values():
        b.fail_with(UpstreamError("boom"))
    r = await client.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 502
    assert [(c.status, c.failovers, c.error, c.usage) for c in seen] == [("failed", 2, "UpstreamError", None)]


async def test_a_frame_check_rejecting_a_node_fails_over_and_cools_it(app, client):
    def check(request, peer_id):
        if peer_id != "peerA":
            return None

        def reject(frame: ResponseFrame) -> None:
            if isinstance(frame, ChunkFrame):
                raise MalformedResponse("chunk does not look like an OpenAI chunk")

        return reject

    gateway(app).hooks.frame_checks.append(check)
    r = await client.post("/v1/chat/completions", json=STREAM)
    assert r.headers["x-tooti-node"] == "peerB"
    assert events(r.text)[-1] == "[DONE]"
    assert (await node_stats(client))["peerA"]["in_cooldown"] is True


async def test_usage_reaches_the_client_once_and_only_when_asked(client):
    r = await client.post("/v1/chat/completions", json=STREAM)
    sent = [json.loads(e) for e in events(r.text)[:-1]]
    assert not any("usage" in e for e in sent)
    asked = {**STREAM, "stream_options": {"include_usage": True}}
    r = await client.post("/v1/chat/completions", json=asked)
    sent = [json.loads(e) for e in events(r.text)[:-1]]
    with_usage = [e for e in sent if "usage" in e]
    assert len(with_usage) == 1
    assert with_usage[0] is sent[-1]
    assert with_usage[0]["choices"] == []
    assert with_usage[0]["id"] == sent[0]["id"]
    r = await client.post("/v1/chat/completions", json=CHAT)
    assert r.json()["usage"]["completion_tokens"] > 0


class _InHand:
    """Node frames that have all arrived already (as after one batched bridge wakeup)."""

    def __init__(self, frames):
        self.frames = list(frames)

    def __aiter__(self):
        return self

    async def __anext__(self):
        if not self.frames:
            raise StopAsyncIteration
        return self.frames.pop(0)

    def ready_nowait(self):
        out, self.frames = self.frames, []
        return out

    async def aclose(self):
        self.frames = []


async def test_the_events_of_all_frames_in_hand_go_out_in_one_write(app, network):
    import time

    from tooti.gateway.attempt import NodeAttempt
    from tooti.gateway.body import parse_body
    from tooti.gateway.context import RequestContext
    from tooti.gateway.relay import StreamedAnswer
    from tooti.wire.infer import Done, UsageFrame
    from tooti.wire.request_body import upstream_request

    def chunk(delta, finish=None):
        return ChunkFrame(
            data={
                "id": "c1",
                "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
        )

    frames = [chunk({"role": "assistant", "content": ""})]
    frames += [chunk({"content": f"t{i}"}) for i in range(10)]
    frames += [chunk({}, "stop"), UsageFrame(prompt_tokens=1, completion_tokens=10, total_tokens=11), Done()]
    network.infer = lambda peer_id, request: _InHand(frames)
    gw = app.state.gateway
    parsed = parse_body(json.dumps({**STREAM, "stream_options": {"include_usage": True}}).encode(), "chat")
    request = upstream_request(parsed, request_id="r1", deadline_ms=0)
    ctx = RequestContext("r1", debug=False)
    writes: list[bytes] = []

    async def send(message):
        if message["type"] == "http.response.body":
            writes.append(message["body"])

    attempt = NodeAttempt(gw, "peerA", request, time.perf_counter() + 30, ctx, [])
    await attempt.answer(StreamedAnswer(parsed, send, "r1", gw.metrics))
    assert attempt.committed
    # held back role chunk + first token, then everything else with [DONE]: 2 writes for 14 events
    assert len(writes) == 2
    sent = events(b"".join(writes).decode())
    assert len(sent) == 14
    assert sent[-1] == "[DONE]"
    assert json.loads(sent[-2])["usage"]["completion_tokens"] == 10
