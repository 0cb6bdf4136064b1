"""Canaries against a real model: an honest llama.cpp node (SmolLM2) passes its checks and is trusted.

The single-node checks (well-formed answer, plausible usage, no fixed reply) must not mistake a small
real model for a rogue; a false quarantine of the only node would take the model offline. The setup
is ``tooti up``'s: the gateway allow-lists its own node, which serves only that gateway.
"""

from __future__ import annotations

import httpx
import pytest

from tooti.gateway.launcher import LocalUp, NodeProcess, node_config
from tooti.testing import eventually

pytestmark = pytest.mark.live

TRUSTED_WITHIN = 60.0


def test_real_model_node_passes_canaries_and_is_trusted(llama_server, tmp_path):
    stack = LocalUp(llama_server.model_path, port=0, workdir=tmp_path, node_names=("node-1",))
    bootstrap = stack.start_gateway()
    config = node_config(
        bootstrap, tmp_path, name="node-1", base_url=llama_server.base_url, heartbeat_sec=0.5,
        gateway_peer=stack.peer_id("gateway"),
    )  # fmt: skip
    node = NodeProcess.spawn(config, tmp_path, "node-1")
    try:
        seen: dict[str, object] = {}

        def trusted() -> bool:
            assert node.alive(), node.log_tail()
            data = httpx.get(f"{stack.base_url}/v1/network/nodes", timeout=5).json()["data"]
            if data:
                seen.clear()
                seen.update(data[0]["gateway"])
                assert seen["standing"] != "quarantined", seen
            return seen.get("standing") == "trusted"

        eventually(trusted, timeout=TRUSTED_WITHIN, interval=0.25, what=lambda: str(seen))
        assert seen.get("standing") == "trusted", seen
        assert seen["failed_checks"] == 0
        metrics = httpx.get(f"{stack.base_url}/metrics", timeout=5).text
        assert 'tooti_gateway_canaries_total{outcome="pass"}' in metrics
    finally:
        node.stop()
        stack.stop()
