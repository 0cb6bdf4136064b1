"""No single point of failure in discovery, with real node processes on loopback.

Node 1 is the bootstrap peer of node 2 and of the gateway; nothing else is configured. Once the
mesh formed, node 1 is SIGKILLed on an idle network (no requests, which would make the gateway dial
node 2 by itself): node 2 must stay listed the whole time and answer right after (its heartbeats now
reach the gateway over a connection a peer keeper opened, not through node 1). Then node 2 restarts
with the same config — its only bootstrap peer is dead — and must find the gateway again from the
peers it saved.
"""

from __future__ import annotations

import re
import signal

import httpx
import pytest
import yaml

from tooti.config.model import Config, GatewaySection, HeartbeatSection, ListenSection, NetworkSection
from tooti.gateway.app import create_app
from tooti.gateway.launcher import NodeProcess
from tooti.gateway.p2p import p2p_network
from tooti.gateway.server import ServerThread
from tooti.testing import always, eventually

pytestmark = pytest.mark.live

INTERVAL = 0.5
JOIN_TIMEOUT = 60.0
WATCH_SEC = 3 * 3 * INTERVAL  # three times the staleness window
CHAT = {"model": "smollm2", "max_tokens": 2, "messages": [{"role": "user", "content": "Hi"}]}


def node_yaml(tmp_path, name: str, bootstrap: list[str], base_url: str):
    config = {
        "node": {"name": name, "identity_key_file": str(tmp_path / f"{name}.key")},
        "listen": {"host": "127.0.0.1", "tcp_port": 0},
        "network": {"bootstrap_peers": bootstrap},
        "backend": {"type": "llamacpp", "base_url": base_url},
        "heartbeat": {"interval_sec": INTERVAL},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def started(proc: NodeProcess) -> tuple[str, str]:
    """(peer id, first listen address) once the node printed them."""
    found: dict[str, str] = {}

    def printed() -> bool:
        assert proc.alive(), proc.log_tail()
        text = proc.log_tail(20000)
        peer, listen = re.search(r"peer id: (\S+)", text), re.search(r"listen: (\S+)", text)
        if peer and listen and "models:" in text:
            found.update(peer=peer.group(1), listen=listen.group(1))
            return True
        return False

    eventually(printed, timeout=JOIN_TIMEOUT, what="the node to start")
    return found["peer"], found["listen"]


def test_killing_the_bootstrap_peer_of_an_idle_network_leaves_no_gap(llama_server, tmp_path):
    procs: list[NodeProcess] = []
    server = None
    try:
        n1 = NodeProcess(node_yaml(tmp_path, "n1", [], llama_server.base_url), tmp_path / "n1.log")
        procs.append(n1)
        peer1, addr1 = started(n1)
        n2_config = node_yaml(tmp_path, "n2", [addr1], llama_server.base_url)
        n2 = NodeProcess(n2_config, tmp_path / "n2.log")
        procs.append(n2)
        peer2, _ = started(n2)

        config = Config(
            listen=ListenSection(host="127.0.0.1", tcp_port=0),
            network=NetworkSection(bootstrap_peers=[addr1]),
            heartbeat=HeartbeatSection(interval_sec=INTERVAL),
            gateway=GatewaySection(listen="127.0.0.1:0"),
        )
        network, lifespan = p2p_network(config, identity_file=tmp_path / "gateway.key")
        server = ServerThread(create_app(config, network, lifespan=[lifespan]))
        base = server.start()
        gateway = httpx.Client(base_url=base, timeout=30)

        def listed() -> set[str]:
            return {n["peer_id"] for n in gateway.get("/v1/network/nodes").json()["data"] if n["models"]}

        eventually(lambda: listed() == {peer1, peer2}, timeout=JOIN_TIMEOUT, what="both nodes at the gateway")
        # The peer keeper connects the gateway to node 2 directly within a few rounds (1 s each).
        eventually(
            lambda: peer2 in network._require()[1].connected_peers(),
            timeout=JOIN_TIMEOUT,
            what="the gateway's peer keeper to connect to node 2 directly",
        )

        # Idle network: no requests (a request would make the gateway dial node 2 by itself).
        n1.proc.send_signal(signal.SIGKILL)
        gaps, checks = 0, 0

        def sample() -> bool:  # all through the staleness window: node 2 must never be missing in it
            nonlocal gaps, checks
            checks += 1
            if peer2 not in listed():
                gaps += 1
            return True

        always(sample, duration=WATCH_SEC, interval=0.05)
        assert gaps == 0, f"node 2 missing from the gateway's list in {gaps} of {checks} checks"
        assert listed() == {peer2}  # node 1 went stale, node 2 stayed
        answers = [gateway.post("/v1/chat/completions", json=CHAT) for _ in range(4)]
        assert [r.status_code for r in answers] == [200] * 4, [r.text[:200] for r in answers]
        assert {r.headers["x-tooti-node"] for r in answers} == {peer2}

        # Restart node 2: its only bootstrap peer is dead, the saved peers lead it back.
        saved = (tmp_path / "n2.peers.json").read_text()
        assert network.peer_id in saved
        assert n2.stop() == 0
        n2 = NodeProcess(n2_config, tmp_path / "n2-restarted.log")
        procs.append(n2)
        started(n2)
        eventually(lambda: peer2 in listed(), timeout=30, what="node 2 back at the gateway after its restart")
        assert gateway.post("/v1/chat/completions", json=CHAT).status_code == 200
        gateway.close()
    finally:
        for proc in procs:
            proc.stop()
        if server is not None:
            server.stop()
