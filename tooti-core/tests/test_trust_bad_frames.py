"""A real libp2p peer sending the bad frames of issue #10 to a real gateway, next to an honest node.

The rogue speaks ``/tooti/infer/1.0.0`` itself (a P2PRuntime with its own request handler, no node
agent in between to tidy anything up) and announces the model with an instant TTFT, so a fresh
gateway tries it first. Each case checks the client's side: no 5xx, nothing of the bad frame in the
answer (the request fails over to the honest node), and a node's error text never shown. Verification
is off so that the frame checks alone are tested.
"""

from __future__ import annotations

import functools

import httpx
import msgspec
import pytest
import trio

from tooti.config.model import (
    Config,
    GatewaySection,
    HeartbeatSection,
    ListenSection,
    NetworkSection,
    NodeSection,
    VerificationSection,
)
from tooti.gateway.app import create_app
from tooti.gateway.p2p import p2p_network
from tooti.gateway.server import ServerThread
from tooti.network import AdvertisedModel
from tooti.node.agent import run_node
from tooti.p2p.bridge import TrioThread
from tooti.p2p.heartbeat import Heartbeat, encode_heartbeat
from tooti.p2p.identity import generate_identity
from tooti.p2p.infer_server import InferService
from tooti.p2p.runtime import P2PRuntime, RuntimeSettings
from tooti.testing import FakeBackend, eventually
from tooti.trust.frame_check import gateway_error_text
from tooti.wire.infer import ChunkFrame, Done, ErrorFrame, ResultFrame, UsageFrame

INTERVAL = 0.3
MODEL = "fake-model"
HONEST_TEXT = "Hello from the fake backend, one chunk at a time."
PHISHING = "Your account is suspended. Log in at http://evil.example/login to restore it."


def _completion(**extra):
    return {
        "id": "chatcmpl-rogue",
        "object": "chat.completion",
        "created": 1,
        "model": MODEL,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "rogue"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
        **extra,
    }


def _chunk(content, **extra):
    choice = {"index": 0, "delta": {"content": content}, "finish_reason": None}
    return {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": MODEL, "choices": [choice], **extra}


ANSWERS = {
    "ext": [ResultFrame(data=_completion(x=msgspec.msgpack.Ext(7, b"boom"))), Done()],
    "choices_5": [ResultFrame(data=_completion(choices=5)), Done()],
    "usage_2^63": [
        ResultFrame(data=_completion(usage={"prompt_tokens": 2**63, "completion_tokens": 1, "total_tokens": 2**63})),
        UsageFrame(prompt_tokens=2**63, completion_tokens=1, total_tokens=2**63),
        Done(),
    ],
    "phishing_error": [ErrorFrame(code="bad_request", message=PHISHING)],
    "ext_mid_stream": [
        ChunkFrame(data=_chunk("rogue")),
        ChunkFrame(data=_chunk("more", x=msgspec.msgpack.Ext(7, b"boom"))),
        Done(),
    ],
}


class Rogue:
    """The rogue's request handler: answers every request with the frames of the current case."""

    def __init__(self):
        self.case = "ext"
        self.served = 0

    def __call__(self, request):
        self.served += 1
        return self._frames()

    async def _frames(self):
        for frame in ANSWERS[self.case]:
            yield frame


async def _run_rogue(rogue, *, task_status=trio.TASK_STATUS_IGNORED):
    runtime = P2PRuntime(generate_identity(), RuntimeSettings(heartbeat_interval=INTERVAL), service=InferService(rogue))
    beat = Heartbeat(
        node_id=runtime.peer_id, name="rogue", models=(AdvertisedModel(name=MODEL),), ttft_ms=1.0, capacity=64
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(runtime.run)
        task_status.started((runtime.peer_id, runtime.listen_addrs()))
        while True:
            await runtime.publish(encode_heartbeat(beat))
            await trio.sleep(INTERVAL)  # the rogue heartbeats on the network's interval, like any node


@pytest.fixture(scope="module")
def peers(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad-frames")
    rogue = Rogue()
    threads = [TrioThread("rogue"), TrioThread("honest")]
    rogue_id, rogue_addrs = threads[0].start(functools.partial(_run_rogue, rogue))
    config = Config(
        node=NodeSection(name="honest", identity_key_file=str(tmp / "honest.key")),
        listen=ListenSection(host="127.0.0.1", tcp_port=0),
        heartbeat=HeartbeatSection(interval_sec=INTERVAL),
    )
    honest = threads[1].start(functools.partial(run_node, config, FakeBackend(chunk_delay_sec=0.05)))
    yield rogue, rogue_id, [*rogue_addrs, *honest.addrs], tmp
    for thread in threads:
        thread.stop()


@pytest.fixture
def gateway(peers):
    _, _, addrs, _ = peers
    config = Config(
        listen=ListenSection(host="127.0.0.1", tcp_port=0),
        network=NetworkSection(bootstrap_peers=addrs),
        heartbeat=HeartbeatSection(interval_sec=INTERVAL),
        gateway=GatewaySection(listen="127.0.0.1:0", verification=VerificationSection(enabled=False)),
    )
    network, lifespan = p2p_network(config)
    server = ServerThread(create_app(config, network, lifespan=[lifespan]), "127.0.0.1", 0)
    server.start()
    eventually(
        lambda: len(httpx.get(f"{server.base_url}/v1/network/nodes", timeout=5).json()["data"]) >= 2,
        timeout=30,
        interval=0.1,
        what="nodes did not join",
    )
    yield server.base_url
    server.stop()


def _ask(base_url, stream=False):
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    return httpx.post(f"{base_url}/v1/chat/completions", json=body, timeout=30)


@pytest.mark.parametrize("case", ["ext", "choices_5", "usage_2^63"])
def test_bad_frame_before_any_output_fails_over_to_the_honest_node(peers, gateway, case):
    rogue, rogue_id, _, _ = peers
    rogue.case, before = case, rogue.served
    for _ in range(20):
        response = _ask(gateway)
        assert response.status_code == 200, response.text
        data = response.json()
        assert data["choices"][0]["message"]["content"] == HONEST_TEXT
        assert response.headers["x-tooti-node"] != rogue_id
        assert data["usage"]["prompt_tokens"] < 1000
        if rogue.served > before:
            break
    assert rogue.served > before, "the rogue was never tried"
    metrics = httpx.get(f"{gateway}/metrics", timeout=5).text
    assert "tooti_gateway_requests_total" in metrics
    assert str(2**63) not in metrics


def test_node_error_text_never_reaches_the_client(peers, gateway):
    rogue, _, _, _ = peers
    rogue.case, before = "phishing_error", rogue.served
    for _ in range(20):
        response = _ask(gateway)
        assert response.status_code < 500
        assert "evil.example" not in response.text
        if rogue.served > before:
            assert response.status_code == 400
            assert response.json()["error"]["message"] == gateway_error_text("bad_request")
            return
    raise AssertionError("the rogue was never tried")


def test_bad_frame_mid_stream_ends_with_the_gateways_error_event(peers, gateway):
    rogue, rogue_id, _, _ = peers
    rogue.case, before = "ext_mid_stream", rogue.served
    for _ in range(20):
        response = _ask(gateway, stream=True)
        assert response.status_code == 200
        if response.headers["x-tooti-node"] == rogue_id:
            events = [line for line in response.text.splitlines() if line.startswith("data: ")]
            assert '"error"' in events[-1]
            assert "data: [DONE]" not in events
            assert "boom" not in response.text  # nothing of the bad frame is relayed
            return
        assert rogue.served == before
    raise AssertionError("the rogue was never tried")
