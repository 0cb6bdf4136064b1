"""Heartbeat validation and the per-peer rate limit, attacked by a real libp2p peer.

The rogue is a full py-libp2p host (noise, yamux, gossipsub with strict signing) in its own trio
thread that removed tooti's topic validator, so it publishes whatever it likes on the heartbeat
topic. The gateway is the real ``P2PNetwork`` behind the real gateway app.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import time

import msgspec
import pytest
import trio
from libp2p.peer.id import ID
from litestar.testing import AsyncTestClient

from tooti.config.model import Config
from tooti.errors import BackendUnavailable
from tooti.gateway import create_app
from tooti.network import AdvertisedModel
from tooti.p2p.heartbeat import HEARTBEAT_TOPIC, Heartbeat, encode_heartbeat
from tooti.p2p.identity import generate_identity
from tooti.p2p.p2p_network import P2PNetwork
from tooti.p2p.runtime import P2PRuntime, RuntimeSettings
from tooti.testing import always_asyncio, eventually_asyncio, make_plugin_host

INTERVAL = 0.3


@pytest.fixture
def anyio_backend():
    return "asyncio"


class _Rogue:
    """A real libp2p peer without tooti's validator, publishing ``payloads`` in a loop at ``pace``."""

    def __init__(self, bootstrap: list[str], payloads: list[bytes] | None = None, pace: float = 0.25) -> None:
        self.runtime = P2PRuntime(
            generate_identity(), RuntimeSettings(bootstrap_peers=bootstrap, heartbeat_interval=INTERVAL)
        )
        self.peer_id = self.runtime.peer_id
        self.payloads = payloads or []
        self.pace = pace
        self.published = 0
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)

    def start(self) -> _Rogue:
        self._thread.start()
        return self

    def join(self) -> None:
        self.stop.set()
        self._thread.join(20)
        assert not self._thread.is_alive()
        if self.error is not None:
            raise self.error

    async def call(self, fn, *args):
        """Run ``fn(*args)`` on the rogue's trio loop from the test's asyncio loop."""
        return await asyncio.to_thread(trio.from_thread.run, fn, *args, trio_token=self._token)

    def _main(self) -> None:
        try:
            trio.run(self._run)
        except BaseException as exc:  # noqa: BLE001 - surfaced in join()
            self.error = exc

    async def _run(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        async with trio.open_nursery() as nursery:
            await nursery.start(self.runtime.run)
            await self.runtime.bootstrap_once()
            self.runtime.pubsub.remove_topic_validator(HEARTBEAT_TOPIC)
            self.ready.set()
            while not self.stop.is_set():
                for payload in self.payloads:
                    await self.runtime.publish(payload)
                    self.published += 1
                    if self.pace:
                        await trio.sleep(self.pace)  # the flooder's rate is what the test is about
                if not self.pace:
                    await trio.lowlevel.checkpoint()
            nursery.cancel_scope.cancel()


def _heartbeat(peer: str, **fields) -> dict:
    base = Heartbeat(node_id=peer, name="rogue", models=(AdvertisedModel(name="real-model"),))
    return {**msgspec.to_builtins(base), **fields}


def _bad_heartbeats(peer: str) -> dict[str, bytes]:
    model = {"name": "real-model"}
    bad = {
        "negative load": _heartbeat(peer, in_flight=-5, queued=-1),
        "absurd price": _heartbeat(peer, models=[{**model, "price_in_per_1k": 1e12}]),
        "256 made-up models": _heartbeat(
            peer, models=[{"name": n} for n in ("gpt-4o", "claude-3-opus", *(f"fake-{i}" for i in range(254)))]
        ),
        "markup node name": _heartbeat(peer, name="<script>alert(1)</script>"),
        "markup model name": _heartbeat(peer, models=[{"name": "<img src=x onerror=alert(1)>"}]),
        "too many aliases": _heartbeat(peer, models=[{**model, "aliases": [f"a{i}" for i in range(500)]}]),
        "too many addrs": _heartbeat(peer, addrs=[f"/ip4/10.0.0.{i}/tcp/1" for i in range(100)]),
        "control character": _heartbeat(peer, region="eu\n"),
        "negative capacity": _heartbeat(peer, capacity=-3),
    }
    out = {why: json.dumps(hb).encode() for why, hb in bad.items()}
    infinite = json.dumps(_heartbeat(peer, ttft_ms=12345.0)).encode().replace(b"12345.0", b"1e999")
    out["infinite ttft"] = infinite
    return out


def _settings() -> RuntimeSettings:
    return RuntimeSettings(heartbeat_interval=INTERVAL, bootstrap_interval=1.0)


def _app(net: P2PNetwork):
    return create_app(Config(), net, make_plugin_host())


@pytest.mark.anyio
async def test_bad_heartbeats_from_a_real_peer_are_refused_and_never_shown():
    async with asyncio.timeout(90), P2PNetwork(_settings()) as net:
        registry = net._require()[1].registry
        rogue = _Rogue(net.listen_addrs())
        bad = _bad_heartbeats(rogue.peer_id)
        good = json.dumps(_heartbeat(rogue.peer_id, name="honest-rogue")).encode()
        rogue.payloads = [*bad.values(), good]
        rogue.start()
        try:
            async with AsyncTestClient(_app(net)) as client:
                # Sample the public views all through the rogue's loop: bad data must never show.
                rounds = 0

                async def sampled_enough() -> bool:
                    nonlocal rounds
                    rounds += 1
                    models = await client.get("/v1/models")
                    nodes = await client.get("/v1/network/nodes")
                    assert models.status_code == 200
                    assert nodes.status_code == 200
                    assert {m["id"] for m in models.json()["data"]} <= {"real-model"}
                    for node in nodes.json()["data"]:
                        assert node["name"] == "honest-rogue"
                        assert node["in_flight"] >= 0
                        assert node["models"] == ["real-model"]
                    text = models.text + nodes.text
                    assert "<" not in text
                    assert "gpt-4o" not in text
                    chat = await client.post(
                        "/v1/chat/completions",
                        json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
                    )
                    assert chat.status_code < 500 or chat.json()["error"]["code"] != "internal_error"
                    return registry.invalid >= len(bad) * 2 and rounds >= 20

                await eventually_asyncio(
                    sampled_enough,
                    timeout=120,  # was 600 rounds of at least 0.1 s
                    interval=0.1,
                    what=lambda: f"only {registry.invalid} invalid heartbeats seen",
                )
                await eventually_asyncio(lambda: any(n.peer_id == rogue.peer_id for n in net.nodes()), timeout=30)
            # Paced below the rate limit, but a loaded machine can deliver a paced run in a burst: the
            # validation refusals are counted on their own, whatever the limiter also dropped.
            assert registry.invalid >= len(bad)
        finally:
            rogue.join()


@pytest.mark.anyio
async def test_a_heartbeat_flood_is_rate_limited_and_honest_nodes_stay():
    async with asyncio.timeout(90), P2PNetwork(_settings()) as net:
        registry = net._require()[1].registry
        honest = _Rogue(net.listen_addrs(), pace=INTERVAL)
        honest.payloads = [encode_heartbeat(Heartbeat(node_id=honest.peer_id, name="honest", models=()))]
        honest.start()
        flooder = _Rogue(net.listen_addrs(), pace=0.0)
        flooder.payloads = [encode_heartbeat(Heartbeat(node_id=flooder.peer_id, name="flood"))]
        try:
            await eventually_asyncio(lambda: any(n.peer_id == honest.peer_id for n in net.nodes()), timeout=30)
            flooder.start()
            await asyncio.to_thread(flooder.ready.wait, 20)
            before = registry.accepted
            started = time.monotonic()
            async with AsyncTestClient(_app(net)) as client:

                async def nodes_listed() -> bool:  # all through the 4 s flood window
                    nodes = await client.get("/v1/network/nodes")
                    assert nodes.status_code == 200
                    return True

                await always_asyncio(nodes_listed, duration=4.0, interval=0.2)
                metrics = (await client.get("/metrics")).text
            elapsed = time.monotonic() - started
            accepted = registry.accepted - before
            limit = registry.rate_limit
            # The honest node (about 3/s) plus at most the flooder's bucket and steady rate got through.
            ceiling = (limit.burst + limit.rate * elapsed) + (elapsed / INTERVAL + 2)
            logging.getLogger(__name__).warning(
                "flood: published %d in %.1f s, accepted %d, rate_limited %d",
                flooder.published,
                elapsed,
                accepted,
                registry.rate_limited,
            )
            assert flooder.published > 4 * ceiling, "the flood was too slow to test anything"
            assert accepted <= ceiling
            assert registry.rate_limited > 0
            shown = re.search(r'^tooti_gateway_heartbeats_total\{result="rate_limited"\} (\S+)$', metrics, re.M)
            assert shown is not None
            assert 0 < float(shown.group(1)) <= registry.rate_limited  # read while the flood went on
            assert any(n.peer_id == honest.peer_id for n in net.nodes())
            # The flooder is banned: disconnected, its messages no longer read, the honest node kept.
            runtime = net._require()[1]
            assert runtime.bans.total == 1
            assert runtime.bans.banned(ID.from_base58(flooder.peer_id).to_bytes())
            banned = re.search(r"^tooti_gateway_peers_banned_total (\S+)$", metrics, re.M)
            assert banned is not None
            assert float(banned.group(1)) == 1
            await eventually_asyncio(lambda: flooder.peer_id not in runtime.connected_peers(), timeout=10)
            assert honest.peer_id in runtime.connected_peers()
            rate_limited = registry.rate_limited
            # It dials back (a real attacker would): refused right after the handshake names it.
            with pytest.raises(BackendUnavailable):
                await flooder.call(flooder.runtime.connect, net.listen_addrs()[0])
            await always_asyncio(
                lambda: flooder.peer_id not in runtime.connected_peers(), duration=1.0
            )  # no way back in
            assert flooder.peer_id not in runtime.connected_peers()
            assert registry.rate_limited == rate_limited  # nothing of it was read since the ban
        finally:
            flooder.join()
            honest.join()
