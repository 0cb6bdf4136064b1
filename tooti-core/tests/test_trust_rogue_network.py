"""Issue #10's done-when: a real rogue libp2p peer next to two honest nodes gets (almost) no users.

Everything runs on 127.0.0.1 over real libp2p: three node agents (each in its own trio thread) and a
gateway (uvicorn + its p2p runtime), driven by the official openai SDK. The honest nodes front a
deterministic backend whose answer depends on the prompt (a stand-in for a model at temperature 0);
the rogue is a fresh key running the same node agent in front of a backend that answers every
request instantly with one fixed text, announcing the same model with ordinary load figures. Its
instant answers give it the best measured latency, which without verification won it ~98 % of the
traffic (issue #10).
"""

from __future__ import annotations

import functools
import hashlib
import threading
import time
from dataclasses import dataclass

import httpx
import openai
import pytest
from typer.testing import CliRunner

from tooti.cli import app
from tooti.config.model import (
    AdmissionSection,
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
from tooti.node.agent import run_node
from tooti.p2p.bridge import TrioThread
from tooti.p2p.identity import load_or_create_identity, peer_id_of
from tooti.testing import FakeBackend, eventually
from tooti.trust.membership import Authority, issue_certificate

INTERVAL = 0.3
MODEL = "fake-model"
ROGUE_TEXT = "Sure! Here is the answer you asked for."
LOAD_SEC = 15.0
WARM_UP_SEC = 10.0
"""The test's bound on the warm-up; docs/security.md promises at most 60 s with default settings."""


@dataclass
class PromptBackend(FakeBackend):
    """An honest stand-in for a model at temperature 0: the answer is a function of the prompt."""

    def _pieces(self, body):  # type: ignore[override]
        prompt = str(body["messages"][-1]["content"]) if body.get("messages") else str(body.get("prompt"))
        digest = hashlib.sha256(prompt.encode()).hexdigest()
        reply = f"Answer {digest[:10]} for you, {digest[10:18]}."
        n = max(self.chunks, 1)
        size = -(-len(reply) // n)
        return [reply[i * size : (i + 1) * size] or " " for i in range(n)][: self._limit(body)]


def _node_config(tmp_path, name, certificate_file=None):
    return Config(
        node=NodeSection(
            name=name,
            identity_key_file=str(tmp_path / f"{name}.key"),
            admission=AdmissionSection(certificate_file=certificate_file),
        ),
        listen=ListenSection(host="127.0.0.1", tcp_port=0),
        heartbeat=HeartbeatSection(interval_sec=INTERVAL),
    )


def _peer_id(tmp_path, name):
    return peer_id_of(load_or_create_identity(tmp_path / f"{name}.key"))


class Cluster:
    """Two honest nodes and one rogue, each a node agent in its own trio thread."""

    def __init__(self, tmp_path):
        self.authority = Authority.generate()
        self.rogue_id = _peer_id(tmp_path, "rogue")
        self.honest_ids = [_peer_id(tmp_path, f"honest-{i}") for i in (1, 2)]
        certs = {}
        for name, peer in (("honest-1", self.honest_ids[0]), ("honest-2", self.honest_ids[1])):
            certs[name] = tmp_path / f"{name}.cert"
            certs[name].write_text(issue_certificate(self.authority, peer, "honest operator"))
        # The rogue holds a certificate too, from an authority of its own making.
        certs["rogue"] = tmp_path / "rogue.cert"
        certs["rogue"].write_text(issue_certificate(Authority.generate(), self.rogue_id, "honest operator"))
        self.threads: list[TrioThread[object]] = []
        self.addrs: list[str] = []
        self.honest = [PromptBackend(chunks=4, chunk_delay_sec=0.01, capacity=16) for _ in range(2)]
        self.rogue = FakeBackend(reply=ROGUE_TEXT, chunks=1, capacity=16)
        for name, backend in (("honest-1", self.honest[0]), ("honest-2", self.honest[1]), ("rogue", self.rogue)):
            thread = TrioThread(f"node-{name}")
            config = _node_config(tmp_path, name, str(certs[name]))
            started = thread.start(functools.partial(run_node, config, backend))
            self.threads.append(thread)
            self.addrs.extend(started.addrs)

    def stop(self):
        for thread in self.threads:
            thread.stop()


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path)
    yield c
    c.stop()


def _gateway(cluster, tmp_path, admission=None, verification=None):
    config = Config(
        listen=ListenSection(host="127.0.0.1", tcp_port=0),
        network=NetworkSection(bootstrap_peers=cluster.addrs),
        heartbeat=HeartbeatSection(interval_sec=INTERVAL),
        gateway=GatewaySection(
            listen="127.0.0.1:0",
            admission=admission or AdmissionSection(),
            verification=verification or VerificationSection(),
        ),
    )
    network, lifespan = p2p_network(config, identity_file=tmp_path / "gateway.key")
    server = ServerThread(create_app(config, network, lifespan=[lifespan]), "127.0.0.1", 0)
    server.start()
    return server


class Load:
    """Closed-loop users (openai SDK) recording who answered each request and when it was sent."""

    def __init__(self, base_url: str, users: int = 3) -> None:
        self.base_url = base_url
        self.records: list[tuple[float, str, str]] = []
        self.errors: list[int] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.t0 = time.monotonic()
        self._threads = [threading.Thread(target=self._user, args=(i,), daemon=True) for i in range(users)]

    def _user(self, i: int) -> None:
        client = openai.OpenAI(base_url=f"{self.base_url}/v1", api_key="unused", max_retries=0, timeout=30)
        n = 0
        while not self._stop.is_set():
            n += 1
            sent = time.monotonic() - self.t0
            try:
                raw = client.chat.completions.with_raw_response.create(
                    model=MODEL, messages=[{"role": "user", "content": f"user {i} question {n}"}], max_tokens=8
                )
            except openai.APIStatusError as exc:
                with self._lock:
                    self.errors.append(exc.status_code)
                self._stop.wait(0.05)  # a user backs off after an error, and stops at once when told
                continue
            text = raw.parse().choices[0].message.content or ""
            with self._lock:
                self.records.append((sent, raw.headers["x-tooti-node"], text))

    def run(self, seconds: float) -> None:
        for t in self._threads:
            t.start()
        time.sleep(seconds)  # the load window IS the measurement: users run for a fixed time
        self._stop.set()
        for t in self._threads:
            t.join(35)


def _wait_nodes(base_url, count, timeout=60.0):
    def joined():
        data = httpx.get(f"{base_url}/v1/network/nodes", timeout=5).json()["data"]
        return data if len(data) >= count else None

    return eventually(joined, timeout=timeout, interval=0.1, what=f"fewer than {count} nodes joined")


def test_rogue_peer_gets_no_users_after_warm_up_in_open_mode(cluster, tmp_path):
    server = _gateway(cluster, tmp_path)
    try:
        _wait_nodes(server.base_url, 1)
        load = Load(server.base_url)
        load.run(LOAD_SEC)
        total = len(load.records)
        by_rogue = [r for r in load.records if r[1] == cluster.rogue_id]
        after_warm_up = [r for r in by_rogue if r[0] >= WARM_UP_SEC]
        assert total > 100, (total, load.errors)
        assert all(r[2] == ROGUE_TEXT for r in by_rogue)
        assert all(r[2] != ROGUE_TEXT for r in load.records if r[1] != cluster.rogue_id)
        assert not after_warm_up, f"{len(after_warm_up)} user requests went to the rogue after the warm-up"
        assert len(by_rogue) < 0.02 * total, f"rogue answered {len(by_rogue)} of {total}"
        assert not [s for s in load.errors if s >= 500 and s != 503], load.errors
        nodes = {n["peer_id"]: n["gateway"] for n in _wait_nodes(server.base_url, 3)}
        rogue = nodes[cluster.rogue_id]
        assert rogue["standing"] == "quarantined"
        assert "fixed reply" in rogue["standing_reason"] or "majority" in rogue["standing_reason"]
        assert rogue["reputation"] < 0.3
        assert all(nodes[p]["standing"] == "trusted" for p in cluster.honest_ids)
        metrics = httpx.get(f"{server.base_url}/metrics", timeout=5).text
        kind = rogue["standing_kind"]
        assert kind in ("outvoted", "fixed_reply"), rogue
        line = f'tooti_gateway_node_standing{{peer_id="{cluster.rogue_id}",reason="{kind}",standing="quarantined"}} 1.0'
        assert line in metrics
        assert f'tooti_gateway_verdicts_total{{outcome="fail",reason="{kind}"}}' in metrics
        assert rogue["verdicts"][0]["outcome"] == "fail"
        assert rogue["verdicts"][0]["reason"] == rogue["standing_reason"]
        peers = CliRunner().invoke(app, ["network", "peers", "--gateway", server.base_url], env={"COLUMNS": "400"})
        assert peers.exit_code == 0, peers.output
        rogue_row = next(line for line in peers.output.splitlines() if cluster.rogue_id in line)
        assert "quarantined" in rogue_row
        share = f"{100 * len(by_rogue) / total:.2f} %"
        print(f"\nrogue answered {len(by_rogue)} of {total} user requests ({share})")  # noqa: T201 - in docs/security.md
    finally:
        server.stop()


@pytest.mark.parametrize("mode", ["allowlist", "membership"])
def test_non_admitted_rogue_gets_nothing_from_the_start(cluster, tmp_path, mode):
    if mode == "allowlist":
        admission = AdmissionSection(mode="allowlist", allow=cluster.honest_ids)
    else:
        admission = AdmissionSection(mode="membership", authorities=[cluster.authority.public_key])
    # Verification off: admission alone must keep the rogue out, from its first heartbeat on.
    server = _gateway(cluster, tmp_path, admission, VerificationSection(enabled=False))
    try:
        _wait_nodes(server.base_url, 1)
        load = Load(server.base_url, users=2)
        load.run(5.0)
        assert len(load.records) > 20
        assert not [r for r in load.records if r[1] == cluster.rogue_id or r[2] == ROGUE_TEXT]
        listed = {n["peer_id"] for n in httpx.get(f"{server.base_url}/v1/network/nodes", timeout=5).json()["data"]}
        assert cluster.rogue_id not in listed
        assert cluster.rogue.calls == [c for c in cluster.rogue.calls if c.method not in ("chat", "chat_stream")]
    finally:
        server.stop()
