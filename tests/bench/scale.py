"""Scale: real nodes on loopback with two gateways, and a simulated registry of 10,000 nodes."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

import httpx
from cluster import Cluster, Gateway, wait_nodes

from tooti.config.model import HeartbeatSection
from tooti.testing import eventually

MODEL = "fast-1"
DEFAULT_HEARTBEAT_S = HeartbeatSection().interval_sec


def _heartbeats_received(gateway: Gateway) -> float | None:
    text = httpx.get(f"{gateway.base_url}/metrics", timeout=5).text
    found = re.findall(r'^tooti_gateway_heartbeats_total{result="accepted"} (\S+)$', text, re.M)
    return float(found[0]) if found else None


def _routable_after(gateway: Gateway, peer_id: str, timeout_s: float = 60.0) -> float:
    """Seconds until a request pinned to ``peer_id`` (``x-tooti-only``) succeeds."""
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    t0 = time.monotonic()
    last = "no answer"
    with httpx.Client(timeout=30) as client:

        def routed_there() -> bool:
            nonlocal last
            try:
                r = client.post(f"{gateway.base_url}/v1/chat/completions", json=body, headers={"x-tooti-only": peer_id})
            except httpx.HTTPError as exc:
                last = type(exc).__name__
                return False  # a slow first attempt is part of what this measures
            last = f"{r.status_code} {r.text[:160]}"
            return r.status_code == 200 and r.headers.get("x-tooti-node") == peer_id

        try:
            eventually(routed_there, timeout=timeout_s, interval=0.05)
        except AssertionError as exc:
            raise TimeoutError(f"new node not routable within {timeout_s} s; last answer: {last}") from exc
        return time.monotonic() - t0  # before the client closes: the close is not part of the measure


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cluster_cpu(cluster: Cluster, window_s: float) -> dict[str, float]:
    """Percent of one core used over ``window_s`` by all the cluster's processes, and by a node on average."""
    procs = [p for p in cluster.procs if p.popen.poll() is None]
    before, t0 = {p.name: _cpu_seconds(p.popen.pid) for p in procs}, time.monotonic()
    time.sleep(window_s)  # the measurement window itself
    elapsed = time.monotonic() - t0
    used = {p.name: (_cpu_seconds(p.popen.pid) - before[p.name]) / elapsed * 100 for p in procs}
    nodes = [v for k, v in used.items() if k.startswith("node-")]
    return {"cluster_cpu_pct": round(sum(used.values())), "node_cpu_pct": round(sum(nodes) / max(1, len(nodes)), 1)}


def _real_network(workdir: Path, n: int, heartbeat_s: float) -> dict[str, Any]:
    """One network of ``n`` nodes; a figure that could not be taken leaves ``error`` and what came before it."""
    out: dict[str, Any] = {"nodes": n, "heartbeat_s": heartbeat_s}
    cluster = Cluster(workdir / f"n{n}-hb{heartbeat_s:g}", heartbeat_s=heartbeat_s)
    try:
        upstream = cluster.upstream(chunks=4)
        first = cluster.gateway()
        second = cluster.gateway(bootstrap=[first.p2p_addr])
        t0 = time.monotonic()
        nodes = [cluster.node("vllm", upstream, [first.p2p_addr]) for _ in range(n)]
        out["spawn_s"] = round(time.monotonic() - t0, 2)
        peers = {node.peer_id for node in nodes}
        wait_nodes(first, peers, timeout_s=60 + 3 * n)
        wait_nodes(second, peers, timeout_s=30)
        out["converged_both_gateways_s"] = round(time.monotonic() - t0, 2)
        before, t_rate = _heartbeats_received(first), time.monotonic()
        out.update(_cluster_cpu(cluster, max(5.0, 2 * heartbeat_s)))
        after = _heartbeats_received(first)
        if before is not None and after is not None:
            out["gateway_heartbeats_per_s"] = round((after - before) / (time.monotonic() - t_rate), 1)
        t1 = time.monotonic()
        late = cluster.node("vllm", upstream, [second.p2p_addr])
        out["new_node_listed_s"] = round(wait_nodes(first, {late.peer_id}, timeout_s=60), 2)
        routable = _routable_after(first, late.peer_id)
        out["new_node_routable_s"] = round(time.monotonic() - t1, 2)
        out["listed_to_routable_s"] = round(routable, 3)
    except (TimeoutError, httpx.HTTPError) as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
        if "cluster_cpu_pct" not in out:
            out.update(_cluster_cpu(cluster, 5.0))  # was the machine saturated?
    finally:
        cluster.close()
    return out


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _simulated(count: int) -> dict[str, Any]:
    """A 10,000-node registry fed through the real validator path, and decisions over it.

    Heartbeats go through ``Registry.receive`` (rate limit, decode, bounds, route table update) as
    the gossipsub validator calls it; libp2p's signature check is not included. Decisions go through
    the gateway's own ``decide()`` reading the registry's route table, each followed by the
    observations a real request makes (started, first token, finished), so prepared candidates are
    invalidated as in production. Figures are per call: p50 and p99 over many calls.
    """
    from tooti.config.model import Config
    from tooti.gateway.metrics import GatewayMetrics
    from tooti.gateway.service import Gateway as GatewayService
    from tooti.network import AdvertisedModel
    from tooti.p2p.heartbeat import Heartbeat, encode_heartbeat
    from tooti.p2p.heartbeat_rate import HeartbeatRateLimit
    from tooti.p2p.registry import Registry
    from tooti.plugins import PluginHost
    from tooti.routing import Preferences

    registry = Registry(interval_sec=3600.0)
    registry.rate_limit = HeartbeatRateLimit(interval_sec=0.001)  # the simulation replays faster than real nodes

    def peer(i: int) -> str:  # base58 characters only, as a real peer id
        return "12D3KooWsim" + "".join("123456789A"[int(d)] for d in f"{i:040d}")

    messages = [
        (
            peer(i),
            encode_heartbeat(
                Heartbeat(
                    node_id=peer(i),
                    name=f"node-{i}",
                    models=(
                        AdvertisedModel(
                            name=MODEL, aliases=(f"{MODEL}:latest",), backend="vllm", price_in_per_1k=0.001 * (i % 7)
                        ),
                    ),
                    in_flight=i % 5,
                    capacity=8,
                    ttft_ms=20.0 + i % 50,
                    tokens_per_s=50.0 + i % 30,
                    region="eu",
                    addrs=(f"/ip4/10.0.{i // 250}.{i % 250}/tcp/4001",),
                )
            ),
        )
        for i in range(count)
    ]
    timings: list[float] = []
    for _ in range(2):  # the first round creates the nodes, the second replaces them (the steady state)
        for signer, data in messages:
            t0 = time.perf_counter()
            registry.receive(data, signer, sender=signer)
            timings.append(time.perf_counter() - t0)
    steady = timings[count:]
    out: dict[str, Any] = {
        "nodes": count,
        "heartbeat_decode_and_update_us": round(sum(steady) / len(steady) * 1e6, 2),
        "heartbeat_receive_p50_us": round(_percentile(steady, 0.5) * 1e6, 2),
        "heartbeat_receive_p99_us": round(_percentile(steady, 0.99) * 1e6, 2),
    }

    class _Network:
        peer_id = "gateway"

        def nodes(self) -> list[Any]:
            return registry.snapshot()

        def route_table(self) -> Any:
            return registry.table

        def infer(self, peer_id: str, request: Any) -> Any:
            raise NotImplementedError

    t0 = time.perf_counter()
    for _ in range(5):
        registry.snapshot()
    out["registry_snapshot_us"] = round((time.perf_counter() - t0) / 5 * 1e6, 1)
    host = PluginHost()
    rounds = 3000
    for strategy in ("simple", "least-loaded", "latency", "cost", "balanced"):
        service = GatewayService(Config(), _Network(), host, GatewayMetrics())
        obs = service.observations
        prefs = Preferences(model=MODEL, strategy=strategy)
        service.decide(prefs)
        samples = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            decision = service.decide(prefs)
            samples.append(time.perf_counter() - t0)
            peer = decision.ordered[0].peer_id
            obs.started(peer)
            obs.first_token(peer, 30.0)
            obs.finished(peer)
        out[f"decide_{strategy}_us"] = round(_percentile(samples, 0.5) * 1e6, 1)
        out[f"decide_{strategy}_p99_us"] = round(_percentile(samples, 0.99) * 1e6, 1)
    return out


async def scale(workdir: Path, *, quick: bool) -> dict[str, Any]:
    """Real nodes (10, 25, 50 as the machine allows) and a simulated 10,000-node registry.

    10 nodes run at a 1 s heartbeat interval (fast convergence) and then every size at the default
    5 s; the first size that fails ends the series (a larger one would fail the same way).
    """
    out: dict[str, Any] = {"simulated": _simulated(1000 if quick else 10_000), "real": []}
    default = DEFAULT_HEARTBEAT_S
    runs = [(3, 1.0)] if quick else [(10, 1.0), (10, default), (25, default), (50, default)]
    for n, heartbeat_s in runs:
        run = _real_network(workdir, n, heartbeat_s)
        out["real"].append(run)
        if "error" in run:
            break
    return out
