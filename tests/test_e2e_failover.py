"""Failover under load: two nodes serve SmolLM2, one is SIGKILLed while streams are running.

Invariants checked with the official SDK:
- no request fails before its first token: requests queued on the killed node, and requests sent
  right after the kill (while the registry still lists it), are served by the survivor;
- a stream cut mid-way ends with the gateway's SSE error event, which the SDK raises as APIError,
  never as a silently short answer.
"""

from __future__ import annotations

import threading

import httpx
import openai
import pytest

from tooti.gateway.launcher import LocalUp, NodeProcess, node_config
from tooti.testing import eventually

pytestmark = pytest.mark.live

JOIN_TIMEOUT = 60.0
RUN_TIMEOUT = 120.0
MESSAGES = [{"role": "user", "content": "Count from one to one hundred in words."}]


def peer_id_of(key_file) -> str:
    from libp2p.peer.id import ID

    from tooti.p2p.identity import load_or_create_identity

    return str(ID.from_pubkey(load_or_create_identity(key_file).public_key).to_base58())


class Run:
    """One streamed request in a thread: which node served it, how many tokens arrived, how it ended."""

    def __init__(self, client: openai.OpenAI, max_tokens: int) -> None:
        self.client, self.max_tokens = client, max_tokens
        self.node: str | None = None
        self.tokens = 0
        self.done = False
        self.error: Exception | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            with self.client.chat.completions.with_streaming_response.create(
                model="smollm2",
                messages=MESSAGES,
                max_tokens=self.max_tokens,
                stream=True,
                extra_body={"ignore_eos": True},
            ) as response:
                self.node = response.headers.get("x-tooti-node")
                for chunk in response.parse():
                    if chunk.choices and chunk.choices[0].delta.content:
                        self.tokens += 1
            self.done = True
        except Exception as exc:  # noqa: BLE001 - recorded and asserted on below
            self.error = exc

    def __repr__(self) -> str:
        return f"Run(node={self.node}, tokens={self.tokens}, done={self.done}, error={self.error!r})"


def wait(predicate, timeout: float, what: str) -> None:
    eventually(predicate, timeout=timeout, what=f"timed out waiting for {what}")


_STACKS: dict[str, LocalUp] = {}
"""The running stack of each ``two_nodes`` base URL (a test that needs the gateway object finds it here)."""


@pytest.fixture
def two_nodes(llama_server, tmp_path):
    stack = LocalUp(llama_server.model_path, port=0, workdir=tmp_path, node_names=("node-a", "node-b"))
    bootstrap = stack.start_gateway()
    _STACKS[stack.base_url] = stack
    nodes: dict[str, NodeProcess] = {}
    try:
        for name in ("node-a", "node-b"):
            cfg = node_config(bootstrap, tmp_path, name=name, base_url=llama_server.base_url, heartbeat_sec=0.5)
            proc = NodeProcess.spawn(cfg, tmp_path, name)
            wait(lambda n=name, p=proc: (tmp_path / f"{n}.key").exists() or not p.alive(), JOIN_TIMEOUT, f"{name} key")
            nodes[peer_id_of(tmp_path / f"{name}.key")] = proc

        def joined() -> bool:
            for proc in nodes.values():
                assert proc.alive(), proc.log_tail()
            data = httpx.get(f"{stack.base_url}/v1/network/nodes", timeout=5).json()["data"]
            return {n["peer_id"] for n in data} == set(nodes)

        wait(joined, JOIN_TIMEOUT, "both nodes to join")
        yield stack.base_url, nodes
    finally:
        for proc in nodes.values():
            proc.stop()
        _STACKS.pop(stack.base_url, None)
        stack.stop()


def test_sigkill_one_node_under_streaming_load(two_nodes):
    base_url, nodes = two_nodes
    with openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0, timeout=RUN_TIMEOUT) as client:
        first_wave = [Run(client, max_tokens=100) for _ in range(4)]
        wait(lambda: any(r.tokens for r in first_wave), RUN_TIMEOUT, "a first token")
        victim = next(r.node for r in first_wave if r.tokens)
        nodes[victim].proc.kill()  # SIGKILL: no goodbye, the TCP connections just die
        second_wave = [Run(client, max_tokens=16) for _ in range(3)]
        for r in first_wave + second_wave:
            r.thread.join(RUN_TIMEOUT)
            assert not r.thread.is_alive(), r

    runs = first_wave + second_wave
    # 1. Nothing failed before its first token.
    assert all(r.done or r.tokens > 0 for r in runs), runs
    # 2. Every failure is the mid-stream error event, raised by the SDK.
    for r in runs:
        if not r.done:
            assert isinstance(r.error, openai.APIError), r
            assert "mid-stream" in str(r.error), r
            assert r.node == victim, r
    # 3. Requests after the kill all went to the survivor and completed.
    survivor = next(p for p in nodes if p != victim)
    assert all(r.done and r.node == survivor and r.tokens > 0 for r in second_wave), second_wave
    # 4. The kill really cut at least one stream (the test exercised the mid-stream path).
    cut = sum(1 for r in first_wave if not r.done)
    assert cut >= 1, first_wave
    # 5. The gateway counted what it did: error events sent, and the victim is resting.
    metrics = httpx.get(f"{base_url}/metrics", timeout=5).text
    assert f'tooti_gateway_stream_errors_total{{model="smollm2"}} {float(cut)}' in metrics
    view = {n["peer_id"]: n for n in httpx.get(f"{base_url}/v1/network/nodes", timeout=5).json()["data"]}
    assert victim not in view or view[victim]["gateway"]["in_cooldown"]


def test_a_cooling_node_still_takes_the_requests_of_a_killed_one(two_nodes):
    """#11: cooldown ranks a node last instead of removing it from failover.

    One node is cooled (as one failed request would cool it), 12 streams go to the other, which is
    then SIGKILLed, and 4 more follow: every request that had no token yet must be served by the
    cooling node; before the fix they all got 503 with no second attempt. 12 + 4 = 16 is the survivor's
    ``node.max_concurrent_requests``: beyond it the survivor rightly answers ``overloaded`` (429).
    """
    base_url, nodes = two_nodes
    gateway = _STACKS[base_url].server.server.config.app.state.gateway  # the in-process gateway
    resting, victim = sorted(nodes)
    gateway.observations.failed(resting, "test: one failed request", cooldown=True)
    view = {n["peer_id"]: n for n in httpx.get(f"{base_url}/v1/network/nodes", timeout=5).json()["data"]}
    assert view[resting]["gateway"]["in_cooldown"]
    with openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0, timeout=RUN_TIMEOUT) as client:
        runs = [Run(client, max_tokens=40) for _ in range(12)]
        wait(lambda: any(r.tokens for r in runs), RUN_TIMEOUT, "a first token")
        # (a request the victim refused as overloaded may already have moved on to the cooling node)
        nodes[victim].proc.kill()
        # Sent while the registry still lists the dead node: tried there first, then on the cooling one.
        after = [Run(client, max_tokens=8) for _ in range(4)]
        for r in runs + after:
            r.thread.join(RUN_TIMEOUT)
            assert not r.thread.is_alive(), r
    # Nothing failed before its first token: cut streams end with the mid-stream error event, and
    # every request that had not started was served by the cooling node.
    assert all(r.done or r.tokens > 0 for r in runs), [r for r in runs if not (r.done or r.tokens > 0)]
    assert all(r.done and r.node == resting for r in after), [r for r in after if not (r.done and r.node == resting)]
    for r in runs:
        if not r.done:
            assert isinstance(r.error, openai.APIError), r
            assert r.node == victim, r
