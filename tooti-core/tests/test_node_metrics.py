"""The node's Prometheus endpoint, scraped over loopback."""

from __future__ import annotations

from contextlib import aclosing

import httpx
import pytest
import trio

from tooti.config.model import Config, ListenSection, MetricsSection, NodeSection
from tooti.node.agent import run_node
from tooti.p2p.identity import generate_identity
from tooti.p2p.runtime import P2PRuntime, RuntimeSettings
from tooti.testing import FakeBackend, eventually_trio
from tooti.wire.infer import Done, InferRequest


@pytest.fixture
def anyio_backend():
    return "trio"


@pytest.mark.anyio
async def test_metrics_endpoint_counts_served_requests(tmp_path):
    config = Config(
        node=NodeSection(identity_key_file=str(tmp_path / "k")),
        listen=ListenSection(host="127.0.0.1", tcp_port=0),
        metrics=MetricsSection(enabled=True, listen="127.0.0.1:0"),
    )
    client = P2PRuntime(generate_identity(), RuntimeSettings())
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            node = await nursery.start(run_node, config, FakeBackend())
            await nursery.start(client.run)
            await client.connect(node.addrs[0])
            request = InferRequest(request_id="m", model="fake-model", stream=True, body={"messages": []})
            async with aclosing(client.request(node.peer_id, request)) as frames:
                assert isinstance([f async for f in frames][-1], Done)
            await eventually_trio(lambda: node.service.served >= 1, interval=0.01)  # counted after its last write
            async with httpx.AsyncClient() as http:
                text = (await http.get(f"http://127.0.0.1:{node.metrics_port}/metrics")).text
            assert 'tooti_node_requests_total{outcome="served"} 1.0' in text
            assert "tooti_node_in_flight 0.0" in text
            assert "tooti_node_ttft_ms" in text
            nursery.cancel_scope.cancel()
