"""tooti on separate hosts: a node behind NAT, two gateways, a bootstrap peer — real processes in namespaces.

Topology (built per module by the ``lab_class`` fixture's :class:`Lab`)::

    public segment 203.0.113.0/24 (a bridge)
      boot .2   node + fast upstream; everyone's bootstrap peer
      gw1  .3   gateway
      gw2  .4   gateway; knows only the bootstrap peer
      rtr  .254 masquerading router ── home segment 192.168.77.0/24
                                          home .2  node + fast upstream; no inbound path

The home node is configured with gateway 1 only (``network.gateways``). Gateway 2 hears of it
through gossip, and the home node hears of gateway 2 through gateway 2's signed presence record, so
it connects out to gateway 2 too; both gateways then open inference streams back over the
connections the home node opened. Nothing ever dials the home node (it cannot be dialled).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from tooti.p2p.identity import load_or_create_identity, peer_id_of
from tooti.testing import eventually

pytestmark = pytest.mark.live

INTERVAL = 0.5
START_TIMEOUT = 60.0
UPSTREAM_PORT = 8199
GATEWAY_PORT = 8080
P2P_PORT = 4001
FAST_UPSTREAM = Path(__file__).resolve().parents[1] / "bench" / "fast_upstream.py"
MODEL = "fast-1"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}


def wait(predicate, timeout: float, what: str) -> float:
    """Seconds until ``predicate`` held (the lab reports how long joining and failover took)."""
    started = time.monotonic()
    eventually(predicate, timeout=timeout, ignoring=(httpx.HTTPError,), what=f"waiting for {what}")
    return time.monotonic() - started


class Mesh:
    """The running lab: peer ids, HTTP clients to both gateways (through Unix sockets), numbers."""

    def __init__(self, lab, workdir: Path) -> None:
        self.lab = lab
        self.workdir = workdir
        self.peers: dict[str, str] = {}
        self.http: dict[str, httpx.Client] = {}
        self.sockets: dict[str, Path] = {}
        self.numbers: dict[str, float] = {}

    def key(self, name: str) -> Path:
        path = self.workdir / f"{name}.key"
        self.peers[name] = peer_id_of(load_or_create_identity(path))
        return path

    def addr(self, name: str) -> str:
        return f"/ip4/{self.lab.hosts[name].ip}/tcp/{P2P_PORT}/p2p/{self.peers[name]}"

    def config(self, name: str, body: dict) -> Path:
        path = self.workdir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(body))
        return path

    def node(self, name: str, bootstrap: list[str], gateways: list[str]) -> None:
        key = self.key(name)
        self.lab.spawn(
            name,
            [
                sys.executable,
                str(FAST_UPSTREAM),
                "--port",
                str(UPSTREAM_PORT),
                "--chunks",
                "60",
                "--chunk-delay",
                "0.05",
            ],
            f"{name}-upstream",
        )
        config = self.config(
            name,
            {
                "node": {"name": name, "identity_key_file": str(key)},
                "listen": {"host": "0.0.0.0", "tcp_port": P2P_PORT},
                "network": {"bootstrap_peers": bootstrap, "gateways": gateways},
                "backend": {"type": "vllm", "base_url": f"http://127.0.0.1:{UPSTREAM_PORT}"},
                "heartbeat": {"interval_sec": INTERVAL},
            },
        )
        env = {"TOOTI_HOME": str(self.workdir / f"home-{name}")}
        self.lab.spawn(name, [sys.executable, "-m", "tooti", "node", "start", "-f", str(config)], name, env)

    def gateway(self, name: str, bootstrap: list[str]) -> None:
        key = self.key(name)
        config = self.config(
            name,
            {
                "listen": {"host": "0.0.0.0", "tcp_port": P2P_PORT},
                "network": {"bootstrap_peers": bootstrap},
                "heartbeat": {"interval_sec": INTERVAL},
                # fast_upstream answers every prompt with the same text: canaries rightly call that a
                # fixed reply and quarantine the node, so verification is off for this transport test.
                "gateway": {"listen": f"127.0.0.1:{GATEWAY_PORT}", "verification": {"enabled": False}},
                "timeouts": {"first_token_sec": 5.0, "idle_sec": 2.0},
            },
        )
        env = {"TOOTI_HOME": str(self.workdir / f"home-{name}")}
        cmd = [sys.executable, "-m", "tooti", "gateway", "start", "-f", str(config), "--identity", str(key)]
        self.lab.spawn(name, cmd, name, env)
        self.sockets[name] = self.lab.unix_forward(name, GATEWAY_PORT)
        self.http[name] = httpx.Client(
            transport=httpx.HTTPTransport(uds=str(self.sockets[name])), base_url="http://gateway", timeout=30
        )

    def serving(self, gateway: str) -> set[str]:
        """Peer ids the gateway lists with at least one model."""
        data = self.http[gateway].get("/v1/network/nodes").json()["data"]
        names = {v: k for k, v in self.peers.items()}
        return {names.get(n["peer_id"], n["peer_id"]) for n in data if n["models"]}

    def chat(self, gateway: str, *, only: str | None = None, **extra) -> httpx.Response:
        headers = {"x-tooti-only": self.peers[only]} if only else {}
        return self.http[gateway].post("/v1/chat/completions", json={**CHAT, **extra}, headers=headers)

    def close(self) -> None:
        for client in self.http.values():
            client.close()


@pytest.fixture(scope="module")
def mesh(lab_class, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("netns")
    lab = lab_class(workdir)
    mesh = Mesh(lab, workdir)
    try:
        for name, octet in (("boot", 2), ("gw1", 3), ("gw2", 4)):
            lab.public_host(name, octet)
        lab.home_host("home", 254)
        mesh.node("boot", [], [])
        mesh.key("gw1")
        mesh.key("gw2")
        boot = mesh.addr("boot")
        mesh.gateway("gw1", [boot])
        mesh.gateway("gw2", [boot])
        wait(lambda: mesh.serving("gw1") == {"boot"} and mesh.serving("gw2") == {"boot"}, START_TIMEOUT, "boot at both")
        mesh.node("home", [boot], [mesh.addr("gw1")])
        # Timed from the moment the node serves (its process start is mostly Python imports).
        wait(lambda: "models:" in lab.log("home"), START_TIMEOUT, "the home node to start")
        started = time.monotonic()
        wait(lambda: "home" in mesh.serving("gw1"), START_TIMEOUT, "the home node at gateway 1")
        mesh.numbers["nat_node_listed_at_gw1_s"] = round(time.monotonic() - started, 2)
        wait(
            lambda: mesh.chat("gw2", only="home").status_code == 200, START_TIMEOUT, "gateway 2 to serve the home node"
        )
        mesh.numbers["nat_node_routable_at_gw2_s"] = round(time.monotonic() - started, 2)
        yield mesh
    except BaseException:
        for name in ("boot", "gw1", "gw2", "home"):
            sys.stderr.write(f"\n--- {name} log ---\n{lab.log(name)}\n")
        raise
    finally:
        (workdir / "numbers.json").write_text(json.dumps(mesh.numbers, indent=1))
        sys.stderr.write(f"\nnetns numbers: {json.dumps(mesh.numbers)}\n")
        mesh.close()
        lab.close()


def _probe_tcp(lab, host: str, ip: str, port: int) -> int:
    """Exit status of a TCP connect from ``host`` to ``ip:port`` (0 = connected)."""
    code = f"import socket; socket.create_connection(('{ip}', {port}), timeout=2)"
    return lab.spawn(host, [sys.executable, "-c", code], f"probe-{host}").wait(15)


def test_a_node_behind_nat_serves_through_both_gateways(mesh):
    lab = mesh.lab
    # The home node cannot be dialled from the public segment, but can dial out.
    assert _probe_tcp(lab, "gw2", lab.hosts["home"].ip, P2P_PORT) != 0
    assert _probe_tcp(lab, "home", lab.hosts["gw2"].ip, P2P_PORT) == 0

    for gateway in ("gw1", "gw2"):
        r = mesh.chat(gateway, only="home")
        assert r.status_code == 200, r.text
        assert r.headers["x-tooti-node"] == mesh.peers["home"]
        assert r.json()["choices"][0]["message"]["content"]

    # Streamed, through gateway 2 (which learned of the node by gossip only), with the official SDK.
    http = httpx.Client(transport=httpx.HTTPTransport(uds=str(mesh.sockets["gw2"])))
    with openai.OpenAI(base_url="http://localhost/v1", api_key="unused", http_client=http, max_retries=0) as client:
        stream = client.chat.completions.create(
            model=MODEL, messages=CHAT["messages"], stream=True, extra_headers={"x-tooti-only": mesh.peers["home"]}
        )
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text.strip().startswith("tok")
    # Gateway 2's config names neither the home node nor the home node's config gateway 2.
    assert mesh.peers["home"] not in (mesh.workdir / "gw2.yaml").read_text()
    assert mesh.peers["gw2"] not in (mesh.workdir / "home.yaml").read_text()


def test_link_cut_mid_stream_then_a_dead_bootstrap_host(mesh):
    """One ordered story of faults (order matters, so it is one test)."""
    lab = mesh.lab
    events: list[str] = []
    cut_at = None
    try:
        with mesh.http["gw1"].stream(
            "POST",
            "/v1/chat/completions",
            json={**CHAT, "stream": True},
            headers={"x-tooti-only": mesh.peers["home"]},
        ) as response:
            assert response.status_code == 200
            assert response.headers["x-tooti-node"] == mesh.peers["home"]
            for line in response.iter_lines():
                if not line:
                    continue
                events.append(line)
                if cut_at is None and len(events) >= 5:
                    lab.cut("home")
                    cut_at = time.monotonic()
        assert cut_at is not None
        mesh.numbers["cut_to_stream_error_event_s"] = round(time.monotonic() - cut_at, 2)
        # The cut stream ends with the gateway's SSE error event, never a silent [DONE].
        last = json.loads(events[-1].removeprefix("data: "))
        assert last["error"]["code"] == "timeout", events[-1]
        assert "mid-stream" in last["error"]["message"]
        assert "data: [DONE]" not in events

        # The next request, with no preference, goes to the other node and succeeds.
        sent = time.monotonic()
        r = mesh.chat("gw1")
        mesh.numbers["first_request_after_cut_s"] = round(time.monotonic() - sent, 3)
        assert r.status_code == 200, r.text
        assert r.headers["x-tooti-node"] == mesh.peers["boot"]
        wait(lambda: "home" not in mesh.serving("gw1"), 10, "gateway 1 to drop the cut-off node")
        mesh.numbers["cut_to_unlisted_s"] = round(time.monotonic() - cut_at, 2)
    finally:
        lab.mend("home")
    took = wait(
        lambda: mesh.chat("gw1", only="home").status_code == 200, 30, "the home node back after the link returned"
    )
    mesh.numbers["link_back_to_routable_s"] = round(took, 2)

    # Kill the bootstrap host: everyone's only configured peer. The home node stays served by
    # gateway 2 over its own connection, and requests stop going to the dead host.
    wait(lambda: mesh.chat("gw2", only="home").status_code == 200, 30, "the home node at gateway 2 again")
    lab.kill_host("boot")
    killed = time.monotonic()
    wait(lambda: "boot" not in mesh.serving("gw2"), 10, "gateway 2 to drop the dead host")
    mesh.numbers["dead_host_unlisted_s"] = round(time.monotonic() - killed, 2)
    assert "home" in mesh.serving("gw2")
    for _ in range(3):
        r = mesh.chat("gw2")
        assert r.status_code == 200, r.text
        assert r.headers["x-tooti-node"] == mesh.peers["home"]
