"""Node-side defences with a real llama.cpp server, which answers whatever model name it is asked for.

- A peer dialling the node directly for ``gpt-4-turbo`` got SmolLM2's answer under that name
  (issue #10); the node now refuses models it does not announce, before the backend is called.
- ``tooti node start`` in open mode with no gateway allow-listed says that it serves anyone.
"""

from __future__ import annotations

import time
from contextlib import aclosing

import pytest
import trio

from tooti.backends.protocol import BackendSettings
from tooti.config.model import Config, HeartbeatSection, ListenSection, NodeSection
from tooti.gateway.launcher import NodeProcess, node_config
from tooti.node.agent import run_node
from tooti.p2p.identity import generate_identity
from tooti.p2p.runtime import P2PRuntime, RuntimeSettings
from tooti.testing import eventually
from tooti.wire.infer import Done, ErrorFrame, InferRequest

pytestmark = [
    pytest.mark.live,
    pytest.mark.filterwarnings("ignore:Async generator 'http(x|core)[._]:ResourceWarning"),
]

WARNING = "serves ANYONE who dials it"


@pytest.fixture
def anyio_backend():
    return "trio"


@pytest.fixture
async def llama_backend(llama_server):
    from tooti_backend_llamacpp.backend import LlamaCppBackend
    from tooti_backend_llamacpp.config import LlamaCppConfig

    backend = LlamaCppBackend(BackendSettings(base_url=llama_server.base_url), LlamaCppConfig())
    await backend.start()
    try:
        yield backend
    finally:
        await backend.aclose()


def _request(model):
    return InferRequest(
        request_id="direct-1", model=model, body={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
    )


@pytest.mark.anyio
async def test_node_refuses_a_model_it_does_not_announce(tmp_path, llama_backend):
    config = Config(
        node=NodeSection(name="llama-node", identity_key_file=str(tmp_path / "n.key")),
        listen=ListenSection(host="127.0.0.1", tcp_port=0),
        heartbeat=HeartbeatSection(interval_sec=0.3),
    )
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            node = await nursery.start(run_node, config, llama_backend)
            client = P2PRuntime(generate_identity(), RuntimeSettings(heartbeat_interval=0.3))
            await nursery.start(client.run)
            await client.connect(node.addrs[0])
            async with aclosing(client.request(node.peer_id, _request("gpt-4-turbo"))) as frames:
                refused = [f async for f in frames]
            assert len(refused) == 1
            assert isinstance(refused[0], ErrorFrame)
            assert refused[0].code == "model_not_found"
            served = node.models[0].name
            async with aclosing(client.request(node.peer_id, _request(served))) as frames:
                answered = [f async for f in frames]
            assert isinstance(answered[-1], Done)
            nursery.cancel_scope.cancel()


def _start_and_read(tmp_path, name, llama_server, **node_extra):
    config = node_config("/ip4/127.0.0.1/tcp/9/p2p/12D3KooWRBy97UB99e3J6hiPesre1MZeuNQvfan4gBziswrRJsNK",
                         tmp_path, name=name, base_url=llama_server.base_url)  # fmt: skip
    config["node"].update(node_extra)
    proc = NodeProcess.spawn(config, tmp_path, name)
    try:

        def serving() -> bool:
            assert proc.alive(), proc.log_tail()
            return "serving" in proc.log_tail()

        eventually(serving, timeout=60, interval=0.1, what=proc.log_tail)
        time.sleep(0.3)  # grace for a warning that must not follow "serving" (no event marks its absence)
        return proc.log_tail()
    finally:
        proc.stop()


def test_open_node_says_it_serves_anyone(tmp_path, llama_server):
    text = _start_and_read(tmp_path, "open-node", llama_server)
    assert WARNING in " ".join(text.split())


def test_allow_listed_node_does_not_warn(tmp_path, llama_server):
    gateway = "12D3KooWRBy97UB99e3J6hiPesre1MZeuNQvfan4gBziswrRJsNK"
    text = _start_and_read(tmp_path, "closed-node", llama_server, admission={"mode": "allowlist", "allow": [gateway]})
    assert "serving" in text
    assert WARNING not in " ".join(text.split())
