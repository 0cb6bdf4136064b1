"""Honest health with a real llama.cpp server: kill it, the network routes around the node; restart it, back.

Two ``tooti node start`` processes behind one gateway: node A fronts its own llama.cpp server (which
the test kills and restarts on the same port), node B the session's server. Checked: within two
heartbeat intervals of the kill, node A announces no models, the gateway sends every request to node
B and node A's ``/ready`` is 503; an error frame from node A names no internal address; after the
restart node A announces its model again and ``/ready`` is 200, with the node process never restarted.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time

import httpx
import pytest

from tooti.gateway.launcher import LocalUp, NodeProcess, node_config
from tooti.testing import eventually, eventually_asyncio
from tooti.wire.infer import ErrorFrame, InferRequest

pytestmark = pytest.mark.live

INTERVAL = 1.0
JOIN_TIMEOUT = 60.0
CHAT = {"model": "smollm2", "max_tokens": 4, "messages": [{"role": "user", "content": "Hi"}]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def peer_id_of(key_file) -> str:
    from tooti.p2p.identity import load_or_create_identity, peer_id_of

    return peer_id_of(load_or_create_identity(key_file))


def wait(predicate, timeout: float, what: str) -> float:
    """Seconds until ``predicate`` held: the test bounds how long the gateway takes to notice."""
    started = time.monotonic()
    eventually(predicate, timeout=timeout, what=f"timed out waiting for {what}")
    return time.monotonic() - started


@pytest.fixture
def own_llama_server(llama_server):
    from tooti_backend_llamacpp.managed import ManagedLlamaServer

    server = ManagedLlamaServer(llama_server.model_path, alias="smollm2", threads=1, parallel=1, ctx=512)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_a_dead_model_server_is_routed_around_within_two_intervals_and_comes_back(
    llama_server, own_llama_server, tmp_path
):
    stack = LocalUp(llama_server.model_path, port=0, workdir=tmp_path, node_names=("node-a", "node-b"))
    bootstrap = stack.start_gateway()
    metrics_port = free_port()
    nodes: dict[str, NodeProcess] = {}
    gateway = httpx.Client(base_url=stack.base_url, timeout=30)
    try:
        for name, url in (("node-a", own_llama_server.base_url), ("node-b", llama_server.base_url)):
            cfg = node_config(bootstrap, tmp_path, name=name, base_url=url, heartbeat_sec=INTERVAL)
            if name == "node-a":
                cfg["metrics"] = {"enabled": True, "listen": f"127.0.0.1:{metrics_port}"}
            proc = NodeProcess.spawn(cfg, tmp_path, name)
            wait(lambda n=name, p=proc: (tmp_path / f"{n}.key").exists() or not p.alive(), JOIN_TIMEOUT, f"{name} key")
            nodes[name] = proc
        peer_a, peer_b = peer_id_of(tmp_path / "node-a.key"), peer_id_of(tmp_path / "node-b.key")
        ready_url = f"http://127.0.0.1:{metrics_port}/ready"

        def serving() -> set[str]:
            for proc in nodes.values():
                assert proc.alive(), proc.log_tail()
            data = gateway.get("/v1/network/nodes").json()["data"]
            return {n["peer_id"] for n in data if n["models"]}

        def ready_status() -> int:
            try:
                return httpx.get(ready_url, timeout=2).status_code
            except httpx.HTTPError:
                return 0

        wait(lambda: serving() == {peer_a, peer_b}, JOIN_TIMEOUT, "both nodes to announce smollm2")
        assert ready_status() == 200

        # Kill node A's server: no traffic, so only the periodic probe can notice.
        node_a_pid = nodes["node-a"].pid
        own_llama_server.stop()
        took = wait(lambda: serving() == {peer_b}, 2 * INTERVAL + 1.0, "the gateway to stop routing to node A")
        assert took <= 2 * INTERVAL + 0.5, f"node A still announced its model {took:.2f} s after its server died"
        assert ready_status() == 503
        body = httpx.get(ready_url, timeout=2).json()
        assert body["ready"] is False
        assert "127.0.0.1" not in body["detail"]
        status = subprocess.run(
            [sys.executable, "-m", "tooti", "node", "status", "-f", str(tmp_path / "node-a.yaml")],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert "running node" in status.stdout, status.stdout + status.stderr
        assert "not ready" in status.stdout, status.stdout
        for _ in range(6):
            r = gateway.post("/v1/chat/completions", json=CHAT)
            assert r.status_code == 200, r.text
            assert r.headers["x-tooti-node"] == peer_b

        # A request that reaches node A anyway gets an error without node A's internal address.
        frames = asyncio.run(_frames_from(bootstrap, peer_a))
        assert isinstance(frames[-1], ErrorFrame), frames
        assert "127.0.0.1" not in frames[-1].message
        assert f":{own_llama_server.port}" not in frames[-1].message

        # Restart the server on the same port: node A comes back by itself.
        own_llama_server.start()
        wait(lambda: serving() == {peer_a, peer_b}, 3 * INTERVAL + 5, "node A to announce its model again")
        assert ready_status() == 200
        assert nodes["node-a"].pid == node_a_pid
        assert nodes["node-a"].alive()
    finally:
        gateway.close()
        for proc in nodes.values():
            proc.stop()
        stack.stop()


async def _frames_from(bootstrap: str, peer: str) -> list[object]:
    """Send one request straight to ``peer`` over libp2p, as any gateway would, and collect the frames."""
    from tooti.p2p.p2p_network import P2PNetwork
    from tooti.p2p.runtime import RuntimeSettings

    settings = RuntimeSettings(tcp_port=0, bootstrap_peers=[bootstrap], heartbeat_interval=INTERVAL)
    request = InferRequest(request_id="health-test", kind="chat", model="smollm2", body=dict(CHAT))
    async with asyncio.timeout(30), P2PNetwork(settings) as network:
        await eventually_asyncio(lambda: peer in {n.peer_id for n in network.nodes()}, timeout=30)
        return [frame async for frame in network.infer(peer, request)]
