"""The issue's done-when, with real processes: two ``tooti node start`` and a registry on loopback.

Both nodes front the session's llama.cpp server and know only the registry's address, so each one's
heartbeats reach the other through it. Node B is SIGKILLed and must leave the registry within three
heartbeat intervals; node A is SIGTERMed and must exit 0.
"""

from __future__ import annotations

import asyncio
import os
import queue
import signal
import subprocess
import sys
import threading
import time

import pytest
import yaml

from tooti.p2p.p2p_network import P2PNetwork
from tooti.p2p.runtime import RuntimeSettings
from tooti.testing import eventually_asyncio

pytestmark = pytest.mark.live

INTERVAL = 0.5
START_TIMEOUT = 60.0


class NodeProcess:
    """A ``tooti node start`` child; stdout lines are collected by a thread."""

    def __init__(self, config_path, env):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tooti", "node", "start", "-f", str(config_path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_started(self):
        """Return (peer id, listen addrs) once the node printed them."""
        deadline = time.monotonic() + START_TIMEOUT
        peer, addrs = None, []
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            self.log.append(line)
            if line.startswith("peer id: "):
                peer = line.removeprefix("peer id: ").strip()
            elif line.startswith("listen: "):
                addrs.append(line.removeprefix("listen: ").strip())
            elif line.startswith("models: ") and peer and addrs:
                return peer, addrs
        raise AssertionError("node did not start:\n" + "\n".join(self.log))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        self.proc.stdout.close()


@pytest.fixture
def spawn(tmp_path, llama_server):
    env = {**os.environ, "TOOTI_HOME": str(tmp_path / "home"), "PYTHONUNBUFFERED": "1"}
    procs = []

    def make(name, bootstrap):
        config = {
            "node": {"name": name, "identity_key_file": str(tmp_path / f"{name}.key")},
            "listen": {"host": "127.0.0.1", "tcp_port": 0},
            "network": {"bootstrap_peers": bootstrap},
            "heartbeat": {"interval_sec": INTERVAL},
            "backend": {"type": "llamacpp", "base_url": llama_server.base_url},
        }
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config))
        procs.append(NodeProcess(path, env))
        return procs[-1]

    yield make
    for proc in procs:
        proc.stop()


@pytest.mark.anyio
async def test_two_node_processes_discover_each_other_and_a_killed_one_goes_stale(spawn):
    settings = RuntimeSettings(heartbeat_interval=INTERVAL, bootstrap_interval=1.0)
    async with asyncio.timeout(90), P2PNetwork(settings) as registry:
        # The registry's address is the only bootstrap address; both nodes start at once.
        bootstrap = registry.listen_addrs()[:1]
        node_a, node_b = spawn("node-a", bootstrap), spawn("node-b", bootstrap)
        (peer_a, _), (peer_b, _) = await asyncio.gather(
            asyncio.to_thread(node_a.wait_started), asyncio.to_thread(node_b.wait_started)
        )
        await eventually_asyncio(lambda: {n.peer_id for n in registry.nodes()} == {peer_a, peer_b}, timeout=60)
        views = {n.peer_id: n for n in registry.nodes()}
        assert views[peer_b].name == "node-b"
        assert views[peer_b].models
        assert views[peer_b].models[0].backend == "llamacpp"

        node_b.proc.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        await eventually_asyncio(lambda: peer_b not in {n.peer_id for n in registry.nodes()}, timeout=60)
        gone_after = time.monotonic() - killed
        assert gone_after <= 3 * INTERVAL + 0.5, f"stale after {gone_after:.2f}s"
        assert [n.peer_id for n in registry.nodes()] == [peer_a]

        node_a.proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(node_a.proc.wait, 20) == 0
