"""Scale: real nodes on loopback with two gateways, and a simulated registry of 10,000 nodes."""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

import httpx
from cluster import Cluster, Gateway, wait_nodes

if TYPE_CHECKING:
    from pathlib import Path

MODEL = "fast-1"


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
        while time.monotonic() - t0 < timeout_s:
            try:
                r = client.post(f"{gateway.base_url}/v1/chat/completions", json=body, headers={"x-tooti-only": peer_id})
            except httpx.HTTPError as exc:
                last = type(exc).__name__
                continue  # a slow first attempt is part of what this measures
            if r.status_code == 200 and r.headers.get("x-tooti-node") == peer_id:
                return time.monotonic() - t0
            last = f"{r.status_code} {r.text[:160]}"
            time.sleep(0.05)
    raise TimeoutError(f"new node not routable within {timeout_s} s; last answer: {last}")


def _real_network(workdir: Path, n: int) -> dict[str, Any]:
    cluster = Cluster(workdir / f"n{n}", heartbeat_s=1.0)
    try:
        upstream = cluster.upstream(chunks=4)
        first = cluster.gateway()
        second = cluster.gateway(bootstrap=[first.p2p_addr])
        t0 = time.monotonic()
        nodes = [cluster.node("vllm", upstream, [first.p2p_addr]) for _ in range(n)]
        spawned = time.monotonic() - t0
        peers = {node.peer_id for node in nodes}
        wait_nodes(first, peers, timeout_s=60 + 3 * n)
        wait_nodes(second, peers, timeout_s=30)
        converged = time.monotonic() - t0
        before, t_rate = _heartbeats_received(first), time.monotonic()
        time.sleep(5.0)
        after = _heartbeats_received(first)
        rate = None if before is None or after is None else (after - before) / (time.monotonic() - t_rate)
        t1 = time.monotonic()
        late = cluster.node("vllm", upstream, [second.p2p_addr])
        listed = wait_nodes(first, {late.peer_id}, timeout_s=60)
        routable = _routable_after(first, late.peer_id)
        return {
            "nodes": n,
            "spawn_s": round(spawned, 2),
            "converged_both_gateways_s": round(converged, 2),
            "gateway_heartbeats_per_s": None if rate is None else round(rate, 1),
            "new_node_listed_s": round(listed, 2),
            "new_node_routable_s": round(time.monotonic() - t1, 2),
            "listed_to_routable_s": round(routable, 3),
        }
    finally:
        cluster.close()


def _simulated(count: int) -> dict[str, Any]:
    """Heartbeat processing and routing over a registry of ``count`` nodes, in process."""
    from tooti.config.model import Config
    from tooti.gateway.metrics import GatewayMetrics
    from tooti.gateway.service import Gateway as GatewayService
    from tooti.network import AdvertisedModel
    from tooti.p2p.heartbeat import Heartbeat, decode_heartbeat, encode_heartbeat
    from tooti.p2p.registry import Registry
    from tooti.plugins import PluginHost
    from tooti.routing import Preferences

    registry = Registry(interval_sec=3600.0)
    messages = [
        (
            f"12D3KooWsim{i:040d}",
            encode_heartbeat(
                Heartbeat(
                    node_id=f"12D3KooWsim{i:040d}",
                    models=(AdvertisedModel(name=MODEL, backend="vllm", price_in_per_1k=0.001 * (i % 7)),),
                    in_flight=i % 5,
                    ttft_ms=20.0 + i % 50,
                    tokens_per_s=50.0 + i % 30,
                )
            ),
        )
        for i in range(count)
    ]
    t0 = time.perf_counter()
    for signer, data in messages:
        registry.update(decode_heartbeat(data, signer))
    per_heartbeat_us = (time.perf_counter() - t0) / count * 1e6

    class _Network:
        peer_id = "gateway"

        def nodes(self) -> list[Any]:
            return registry.snapshot()

        def infer(self, peer_id: str, request: Any) -> Any:
            raise NotImplementedError

    out: dict[str, Any] = {"nodes": count, "heartbeat_decode_and_update_us": round(per_heartbeat_us, 2)}
    t0 = time.perf_counter()
    for _ in range(20):
        registry.snapshot()
    out["registry_snapshot_us"] = round((time.perf_counter() - t0) / 20 * 1e6, 1)
    host = PluginHost()
    for strategy in ("simple", "least-loaded", "latency", "balanced"):
        service = GatewayService(Config(), _Network(), host, GatewayMetrics())
        prefs = Preferences(model=MODEL, strategy=strategy)
        service.decide(prefs)
        t0 = time.perf_counter()
        for _ in range(20):
            service.decide(prefs)
        out[f"decide_{strategy}_us"] = round((time.perf_counter() - t0) / 20 * 1e6, 1)
    return out


async def scale(workdir: Path, *, quick: bool) -> dict[str, Any]:
    """Real nodes (10, 25, 50 as the machine allows) and a simulated 10,000-node registry."""
    out: dict[str, Any] = {"simulated": _simulated(1000 if quick else 10_000), "real": []}
    for n in (3,) if quick else (10, 25, 50):
        try:
            out["real"].append(_real_network(workdir, n))
        except (TimeoutError, httpx.HTTPError) as exc:
            out["real"].append({"nodes": n, "error": f"{type(exc).__name__}: {exc}"})
            break
    return out
