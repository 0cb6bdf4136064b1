"""The exchange settles every admitted request exactly once, and canaries take the user's node attempt.

Each exit of the inference route is driven for real (a real Litestar app, real ASGI messages): the
answer, a refusal by routing, every node failing, a failure mid-stream, and a client that leaves
before or during the answer. Then the canary path: the prober's sender is the gateway's
:class:`~tooti.gateway.attempt.NodeAttempt`, so a node sees a canary exactly as a user request.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from litestar.testing import AsyncTestClient

from tooti.errors import BackendBadRequest, BackendTimeout, UpstreamError
from tooti.gateway import create_app
from tooti.gateway.attempt import canary_sender
from tooti.testing import FakeBackend, make_plugin_host
from tooti.trust.answer_checks import CanaryAnswer
from tooti.trust.prober import _CanaryRecord
from tooti.wire.infer import ErrorFrame
from tooti.wire.request_body import read_body, upstream_request

from .test_gateway_failover import CHAT, STREAM, GhostNetwork, events, make_config

if TYPE_CHECKING:
    from tooti.gateway.request_hooks import Completion
    from tooti.wire.infer import InferRequest

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


class RecordingNetwork(GhostNetwork):
    """Keeps every request sent and counts node streams that were closed."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[InferRequest] = []
        self.closed = 0

    async def infer(self, peer_id, request):
        self.sent.append(request)
        try:
            async for frame in super().infer(peer_id, request):
                yield frame
        finally:
            self.closed += 1


def _in_a_minute() -> int:
    return int((time.time() + 60) * 1000)


@pytest.fixture
def backend():
    return FakeBackend()


@pytest.fixture
def network(backend):
    net = RecordingNetwork()
    net.add_node("peerA", backend, ["fake-model"])
    return net


@pytest.fixture
async def app(network):
    return create_app(make_config(routing={"max_attempts": 1}), network, make_plugin_host())


@pytest.fixture
def seen(app) -> list[Completion]:
    out: list[Completion] = []
    app.state.gateway.hooks.on_complete.append(out.append)
    return out


async def test_every_exit_settles_once(app, seen, backend):
    async with AsyncTestClient(app) as client:
        assert (await client.post("/v1/chat/completions", json=STREAM)).status_code == 200
        r = await client.post("/v1/chat/completions", json={**CHAT, "model": "nobody-serves-this"})
        assert r.status_code == 404
        backend.fail_with(UpstreamError("boom"))
        assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 502
        backend.fail_with(BackendBadRequest("bad tool arguments"), after_chunks=1)
        r = await client.post("/v1/chat/completions", json=STREAM)
        assert "error" in json.loads(events(r.text)[-1])
        assert (await client.post("/v1/chat/completions", json={"model": 1})).status_code == 400  # not admitted
    got = [(c.status, c.error, c.peer_id, c.node_fault) for c in seen]
    assert got == [
        ("ok", None, "peerA", False),
        ("failed", "NotRouted", None, False),
        ("failed", "UpstreamError", "peerA", True),
        ("failed", "BackendBadRequest", "peerA", False),
    ]
    assert seen[0].usage is not None
    assert seen[0].ttft_s is not None
    assert seen[3].ttft_s is not None  # it failed after its first token: it had one


async def _leave_after(app, body: dict[str, Any], after_s: float) -> tuple[list[dict[str, Any]], float]:
    """Send ``body`` over raw ASGI and disconnect after ``after_s``; the messages sent back and the time taken."""
    raw = json.dumps(body).encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    messages = [{"type": "http.request", "body": raw, "more_body": False}]
    started = time.monotonic()

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await anyio.sleep(max(0.0, started + after_s - time.monotonic()))
        return {"type": "http.disconnect"}

    out: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        out.append(message)

    with anyio.fail_after(10):
        await app(scope, receive, send)
    return out, time.monotonic() - started


@pytest.mark.parametrize("body", [CHAT, STREAM])
async def test_a_client_that_leaves_before_the_answer_gets_499_and_settles_cancelled(app, seen, network, body):
    network.remove_node("peerA")
    network.ghosts["peerH"] = "hang"  # never answers
    async with AsyncTestClient(app):  # lifespan: the gateway is started
        out, took = await _leave_after(app, body, 0.3)
    assert took < 5  # the disconnect ended it, not a timeout
    assert [m.get("status") for m in out if m["type"] == "http.response.start"] == [499]
    got = [(c.status, c.error, c.peer_id, c.usage) for c in seen]
    assert got == [("cancelled", "ClientDisconnected", "peerH", None)]
    assert network.closed == 1  # the node stream was closed
    assert app.state.gateway.observations.peek("peerH").in_flight == 0


async def test_a_client_that_leaves_mid_stream_stops_the_node_and_settles_cancelled(app, seen, network, backend):
    backend.chunks, backend.chunk_delay_sec = 50, 0.1  # a 5 s answer
    async with AsyncTestClient(app):
        out, took = await _leave_after(app, STREAM, 0.5)
    assert took < 5
    assert [m.get("status") for m in out if m["type"] == "http.response.start"] == [200]
    assert not any(b"[DONE]" in m.get("body", b"") for m in out)
    assert [(c.status, c.error, c.peer_id) for c in seen] == [("cancelled", "ClientDisconnected", "peerA")]
    assert network.closed == 1
    stats = app.state.gateway.observations.peek("peerA")
    assert stats.in_flight == 0
    assert stats.failures == type(stats.failures)()  # leaving is not the node's fault


async def test_a_canary_is_sent_and_read_like_a_user_request(app, network):
    gw = app.state.gateway
    async with AsyncTestClient(app) as client:
        assert (await client.post("/v1/chat/completions", json=STREAM)).status_code == 200
        served = gw.observations.peek("peerA").served
        body = {**STREAM, "temperature": 0, "seed": 7, "max_tokens": 16}
        canary = upstream_request(read_body(dict(body), "chat"), request_id="req-c", deadline_ms=_in_a_minute())
        answer = CanaryAnswer(peer_id="peerA")
        record = _CanaryRecord(answer)
        assert await canary_sender(gw)("peerA", canary, record, 10.0) is None
    user, sent = network.sent
    assert sent is canary
    # the same wire shape as a user request: streamed, usage asked for, nothing added or dropped
    assert sent.stream
    assert user.stream
    assert sent.body["stream_options"] == user.body["stream_options"] == {"include_usage": True}
    assert set(sent.body) - {"temperature", "seed", "max_tokens"} == set(user.body)
    assert "".join(record.texts)  # the answer reached the prober's record
    assert network.closed == 2  # both node streams released by the attempt
    stats = gw.observations.peek("peerA")
    assert stats.in_flight == 0
    assert stats.served == served  # counted as load while in flight, not as served traffic


async def test_a_canary_reads_a_nodes_error_frame_and_times_out_like_user_traffic(app, network, backend):
    gw = app.state.gateway
    canary = upstream_request(read_body(dict(STREAM), "chat"), request_id="req-c", deadline_ms=_in_a_minute())

    async def refuse(peer_id, request):
        yield ErrorFrame(code="overloaded", message="busy")

    original = network.infer
    network.infer = refuse
    record = _CanaryRecord(CanaryAnswer(peer_id="peerA"))
    assert await canary_sender(gw)("peerA", canary, record, 10.0) == "overloaded"
    network.infer = original
    network.remove_node("peerA")
    network.ghosts["peerA"] = "hang"
    with pytest.raises(BackendTimeout):
        await canary_sender(gw)("peerA", canary, _CanaryRecord(CanaryAnswer(peer_id="peerA")), 0.2)
    assert gw.observations.peek("peerA").in_flight == 0
