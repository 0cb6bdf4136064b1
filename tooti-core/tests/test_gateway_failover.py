"""Routing, failover before the first token, error events after it, timeouts and cooldowns."""

from __future__ import annotations

import json

import anyio
import msgspec
import pytest
from litestar.testing import AsyncTestClient

from tooti.config.model import Config, GatewaySection, RoutingSection, TimeoutsSection, VerificationSection
from tooti.errors import BackendBadRequest, BackendOverloaded, BackendUnavailable, ModelNotFound, UpstreamError
from tooti.gateway import create_app
from tooti.network import AdvertisedModel, NodeView
from tooti.node.local import LocalNetwork
from tooti.testing import FakeBackend, make_plugin_host
from tooti.wire.infer import ChunkFrame

pytestmark = pytest.mark.anyio

CHAT = {"model": "fake-model", "messages": [{"role": "user", "content": "hello"}]}
STREAM = {**CHAT, "stream": True}
ROLE = {"role": "assistant", "content": ""}


@pytest.fixture
def anyio_backend():
    return "asyncio"


class GhostNetwork(LocalNetwork):
    """A LocalNetwork whose registry also lists peers that are gone or hang forever."""

    def __init__(self) -> None:
        super().__init__()
        self.ghosts: dict[str, str] = {}  # peer id -> "gone" | "hang"

    def nodes(self) -> list[NodeView]:
        ghosts = [NodeView(peer_id=p, models=(AdvertisedModel(name="fake-model"),)) for p in self.ghosts]
        return ghosts + super().nodes()

    async def infer(self, peer_id, request):
        kind = self.ghosts.get(peer_id)
        if kind == "gone":
            raise BackendUnavailable(f"peer {peer_id} is not reachable")
        if kind == "hang":
            await anyio.sleep(3600)
        if kind == "role-then-die":  # the node sends the role-only delta, then its connection drops
            yield ChunkFrame(data={"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": ROLE}]})
            raise BackendUnavailable("stream reset")
        async for frame in super().infer(peer_id, request):
            yield frame


def make_config(**kw) -> Config:
    timeouts = TimeoutsSection(**kw.pop("timeouts", {}))
    routing = RoutingSection(**{"cooldown_sec": 30.0, **kw.pop("routing", {})})
    # Failover mechanics among nodes, without canaries: while no node is verified the trust filter
    # routes each request to one unverified node at random (docs/security.md), not in strategy order.
    gateway = kw.pop("gateway", GatewaySection(verification=VerificationSection(enabled=False)))
    return Config(timeouts=timeouts, routing=routing, gateway=gateway, **kw)


@pytest.fixture
def backends():
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
async def client(network, config):
    app = create_app(config, network, make_plugin_host())
    async with AsyncTestClient(app) as c:
        c.app_state = app.state
        yield c


def events(text: str) -> list[str]:
    return [e[len("data: ") :] for e in text.split("\n\n") if e]


def failovers(metrics_text: str) -> float:
    total = 0.0
    for line in metrics_text.splitlines():
        if line.startswith("tooti_gateway_failovers_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    "error", [BackendUnavailable("down"), UpstreamError("500"), BackendOverloaded("busy"), ModelNotFound("gone")]
)
async def test_retryable_failure_before_first_token_fails_over(client, backends, stream, error):
    backends["peerA"].fail_with(error)
    r = await client.post("/v1/chat/completions", json=STREAM if stream else CHAT)
    assert r.status_code == 200
    assert r.headers["x-tooti-node"] == "peerB"
    if stream:
        assert events(r.text)[-1] == "[DONE]"
    assert failovers((await client.get("/metrics")).text) == 1


async def test_failed_node_cools_down_and_is_skipped(client, backends):
    backends["peerA"].fail_with(BackendUnavailable("down"))
    await client.post("/v1/chat/completions", json=CHAT)
    backends["peerA"].fail_with(None)
    for _ in range(3):
        r = await client.post("/v1/chat/completions", json=CHAT)
        assert r.headers["x-tooti-node"] != "peerA"
    nodes = {n["peer_id"]: n for n in (await client.get("/v1/network/nodes")).json()["data"]}
    assert nodes["peerA"]["gateway"]["in_cooldown"] is True
    assert nodes["peerA"]["gateway"]["recent_failures"] == 1


async def test_a_cooling_node_is_still_tried_after_the_others(client, backends, network):
    """Issue 11: cool n1 with one failure; when n2, the only other node, fails too, n1 is tried."""
    network.remove_node("peerC")
    backends["peerA"].fail_with(BackendUnavailable("down"))
    first = await client.post("/v1/chat/completions", json=CHAT)
    assert first.headers["x-tooti-node"] == "peerB"  # peerA failed and is cooling now
    backends["peerA"].fail_with(None)
    backends["peerB"].fail_with(BackendUnavailable("killed"))
    calls_before = len(backends["peerA"].calls)
    r = await client.post("/v1/chat/completions", json=CHAT, headers={"x-tooti-debug": "1"})
    assert r.status_code == 200
    assert r.headers["x-tooti-node"] == "peerA"  # tried last, after peerB failed
    assert len(backends["peerA"].calls) == calls_before + 1
    assert "cooling node(s) tried last: peerA" in r.headers["x-tooti-route"]


async def test_model_not_found_does_not_cool_a_node_down(client, backends):
    backends["peerA"].fail_with(ModelNotFound("not here"))
    await client.post("/v1/chat/completions", json=CHAT)
    nodes = {n["peer_id"]: n for n in (await client.get("/v1/network/nodes")).json()["data"]}
    assert nodes["peerA"]["gateway"]["in_cooldown"] is False


async def test_when_every_node_cools_down_they_are_tried_anyway(client, backends, network):
    network.remove_node("peerB")
    network.remove_node("peerC")
    backends["peerA"].fail_with(BackendUnavailable("down"))
    assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 503
    backends["peerA"].fail_with(None)
    r = await client.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 200
    assert r.headers["x-tooti-node"] == "peerA"


@pytest.mark.parametrize(
    ("error", "status", "etype"),
    [
        (BackendUnavailable("down"), 503, "service_unavailable"),
        (BackendOverloaded("slow down"), 429, "rate_limit_exceeded"),
        (UpstreamError("boom"), 502, "upstream_error"),
        (ModelNotFound("no such model"), 404, "model_not_found"),
    ],
)
async def test_all_attempts_failing_answers_the_last_error(client, backends, error, status, etype):
    for b in backends.values():
        b.fail_with(error)
    r = await client.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == status
    assert r.json()["error"]["type"] == etype


@pytest.mark.parametrize("config", [make_config(routing={"max_attempts": 2})])
async def test_attempts_are_bounded(client, backends):
    for b in backends.values():
        b.fail_with(BackendUnavailable("down"))
    await client.post("/v1/chat/completions", json=CHAT)
    tried = [p for p, b in backends.items() if b.calls]
    assert len(tried) == 2


async def test_bad_request_from_a_node_is_not_retried(client, backends):
    backends["peerA"].fail_with(BackendBadRequest("prompt too long"))
    r = await client.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 400
    assert not backends["peerB"].calls
    nodes = {n["peer_id"]: n for n in (await client.get("/v1/network/nodes")).json()["data"]}
    assert nodes["peerA"]["gateway"]["in_cooldown"] is False


async def test_unreachable_peer_in_the_registry_fails_over(client, network):
    network.ghosts["ghost"] = "gone"
    r = await client.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 200
    assert r.headers["x-tooti-node"] == "peerA"


async def test_failure_after_first_token_ends_with_error_event(client, backends):
    backends["peerA"].fail_with(UpstreamError("died"), after_chunks=2)
    r = await client.post("/v1/chat/completions", json=STREAM)
    assert r.status_code == 200
    evs = events(r.text)
    assert "[DONE]" not in evs
    last = json.loads(evs[-1])
    assert set(last) == {"error"}
    assert last["error"]["type"] == "upstream_error"
    assert "mid-stream" in last["error"]["message"]
    content = [json.loads(e) for e in evs[:-1]]
    assert len(content) == 2
    text = (await client.get("/metrics")).text
    assert 'tooti_gateway_stream_errors_total{model="fake-model"} 1.0' in text


@pytest.mark.parametrize("config", [make_config(timeouts={"first_token_sec": 0.2})])
async def test_first_token_timeout_fails_over(client, network):
    network.ghosts["peer0-slow"] = "hang"  # sorts before peerA: tried first
    r = await client.post("/v1/chat/completions", json=STREAM)
    assert r.status_code == 200
    assert r.headers["x-tooti-node"] == "peerA"
    assert events(r.text)[-1] == "[DONE]"


@pytest.mark.parametrize("config", [make_config(timeouts={"first_token_sec": 0.2}, routing={"max_attempts": 1})])
async def test_first_token_timeout_on_last_attempt_is_504(client, network):
    network.ghosts["peer0-slow"] = "hang"  # sorts before peerA: tried first
    r = await client.post("/v1/chat/completions", json=STREAM)
    assert r.status_code == 504
    assert r.json()["error"]["type"] == "timeout"


@pytest.mark.parametrize("config", [make_config(timeouts={"total_request_sec": 0.3}, routing={"max_attempts": 1})])
async def test_total_timeout_non_stream_is_504(client, network):
    network.ghosts["peer0-slow"] = "hang"  # sorts before peerA: tried first
    r = await client.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 504


@pytest.mark.parametrize("config", [make_config(timeouts={"idle_sec": 0.2, "first_token_sec": 10})])
async def test_idle_gap_mid_stream_ends_with_timeout_event(client, backends, network):
    network.remove_node("peerB")
    network.remove_node("peerC")
    backends["peerA"].chunk_delay_sec = 0.4  # every chunk waits longer than idle_sec allows
    r = await client.post("/v1/chat/completions", json=STREAM)
    assert r.status_code == 200
    evs = events(r.text)
    assert json.loads(evs[-1])["error"]["type"] == "timeout"
    assert backends["peerA"].closed_early == 1


async def test_client_sees_strategy_choice_respecting_load(client, network, backends):
    network.update_node("peerA", in_flight=5)
    r = await client.post("/v1/chat/completions", json=CHAT)
    assert r.headers["x-tooti-node"] == "peerB"


async def test_only_preference_pins_a_node(client):
    r = await client.post("/v1/chat/completions", json={**CHAT, "tooti": {"only": ["peerC"]}})
    assert r.headers["x-tooti-node"] == "peerC"


async def test_observations_record_ttft_and_in_flight_returns_to_zero(client):
    for body in (CHAT, STREAM):
        await client.post("/v1/chat/completions", json=body)
    data = (await client.get("/v1/network/nodes")).json()["data"]
    gw = {n["peer_id"]: n["gateway"] for n in data}
    assert gw["peerA"]["ttft_ms"] is not None
    assert all(v["in_flight"] == 0 for v in gw.values())


def test_config_strategy_that_does_not_exist_fails_at_startup(network):
    from tooti.errors import ConfigError

    bad = msgspec.structs.replace(make_config(), routing=RoutingSection(strategy="nope"))
    with pytest.raises(ConfigError, match=r"routing\.strategy"):
        create_app(bad, network, make_plugin_host())


async def test_node_dying_after_only_the_role_chunk_still_fails_over(client, network):
    network.ghosts["peer0"] = "role-then-die"  # listed first, so tried first
    r = await client.post("/v1/chat/completions", json=STREAM, headers={"x-tooti-debug": "1"})
    assert r.status_code == 200
    assert r.headers["x-tooti-node"] != "peer0"
    sent = events(r.text)
    assert sent[-1] == "[DONE]"
    assert not any('"error"' in e for e in sent)
    roles = [e for e in sent[:-1] if json.loads(e)["choices"] and "role" in json.loads(e)["choices"][0]["delta"]]
    assert len(roles) == 1, "the failed node's role chunk must not reach the client"
    assert failovers((await client.get("/metrics")).text) == 1


async def test_a_node_at_capacity_is_waited_for_instead_of_answering_429(client, backends, network):
    """#13: one node, briefly full (c=32 against max_concurrent_requests 16): the request waits for room."""
    import threading

    network.remove_node("peerB")
    network.remove_node("peerC")
    backends["peerA"].fail_with(BackendOverloaded("node at max concurrent requests"))
    # A thread, not a task: the test client runs the app in a way that holds this loop until it answers.
    room = threading.Timer(0.3, backends["peerA"].fail_with, args=(None,))
    room.start()
    try:
        r = await client.post("/v1/chat/completions", json=CHAT)
    finally:
        room.cancel()
    assert r.status_code == 200
    assert r.headers["x-tooti-node"] == "peerA"
    assert backends["peerA"].methods().count("chat") >= 3  # tried again with pauses while it was full
    nodes = {n["peer_id"]: n for n in (await client.get("/v1/network/nodes")).json()["data"]}
    assert nodes["peerA"]["gateway"]["in_cooldown"] is False  # being full is not a failure


@pytest.mark.parametrize("config", [make_config(routing={"overload_wait_sec": 0.0})])
async def test_without_an_overload_wait_a_full_node_answers_429_at_once(client, backends, network):
    network.remove_node("peerB")
    network.remove_node("peerC")
    backends["peerA"].fail_with(BackendOverloaded("node at max concurrent requests"))
    r = await client.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 429
    assert len(backends["peerA"].calls) == 1


async def test_a_full_node_answers_429_once_the_overload_wait_is_over(client, backends, network):
    network.remove_node("peerB")
    network.remove_node("peerC")
    backends["peerA"].fail_with(BackendOverloaded("node at max concurrent requests"))
    started = anyio.current_time()
    r = await client.post("/v1/chat/completions", json=CHAT)
    waited = anyio.current_time() - started
    assert r.status_code == 429
    assert 1.9 <= waited < 5.0  # routing.overload_wait_sec (2 s), not the whole request budget
