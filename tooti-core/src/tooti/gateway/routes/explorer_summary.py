"""What the explorer page shows, as one JSON document built from what the gateway already holds.

Everything here is read from memory the request path keeps anyway (the registry snapshot, the
gateway's observations, the trust standings, the Prometheus counters); building a summary does no
I/O and takes no lock the request path takes, so a page polling it cannot slow requests down. The
one exception is the admin's usage table, read from the accounting store in a worker thread.

Nothing sensitive goes in: no prompts or completions (the gateway never stores them), no keys (the
store keeps only hashes; the usage table shows a key's id, name and 8-character prefix).

Measured versus claimed: ``measured`` figures are this gateway's own (time to first token, decode
speed, requests served), ``self_reported`` ones are what the node's heartbeat says. Reachability is
derived from what the gateway observed: it got answers from the node, and which side opened the
live connection — the gateway dialled the node ("direct") or the node dialled the gateway ("via the
node's outbound connection", as a node behind NAT does), read from the transport through the
network's ``connection_direction`` extra. A network without that extra reports the direction as not
known rather than guessing. The node's listen addresses are its own claim and marked as such.
"""

from __future__ import annotations

import ipaddress
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from tooti import __version__
from tooti.gateway.network_catalog import model_list
from tooti.network_capabilities import capabilities_of

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from tooti.accounting.store import AccountingStore
    from tooti.gateway.metrics import GatewayMetrics
    from tooti.gateway.service import Gateway
    from tooti.network import NodeView
    from tooti.trust.gateway_trust import GatewayTrust

__all__ = ["INFERENCE_ROUTES", "MAX_NODE_ROWS", "ExplorerClock", "admin_usage", "summary"]

INFERENCE_ROUTES = frozenset({"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses"})
"""The routes counted as user requests (the explorer's own polling is not one)."""
MAX_NODE_ROWS = 1000
"""Rows of the node table sent to the page; a larger network is summarised and the rest counted."""
MAX_USAGE_KEYS = 200
"""Keys in the admin's usage table (most recently used first)."""
_RATE_WINDOW_S = 60.0
_MIN_RATE_SPAN_S = 5.0


class ExplorerClock:
    """Samples of the request counters, for a per-minute rate without a timer on the request path.

    Each summary adds one sample; the rate is taken between now and the oldest sample within the
    last minute. Until a sample at least 5 s old exists, the rate is the average since start.
    """

    def __init__(self) -> None:
        self.started = time.monotonic()
        self._samples: deque[tuple[float, float]] = deque(maxlen=256)

    def per_minute(self, total: float) -> tuple[float, float]:
        """``(requests per minute, window in seconds)`` given the current ``total``."""
        now = time.monotonic()
        while self._samples and now - self._samples[0][0] > _RATE_WINDOW_S:
            self._samples.popleft()
        self._samples.append((now, total))
        first_t, first_total = self._samples[0]
        span = now - first_t
        if span < _MIN_RATE_SPAN_S:
            span = max(now - self.started, 1e-9)
            return round(total * 60.0 / span, 2), round(span, 1)
        return round((total - first_total) * 60.0 / span, 2), round(span, 1)


def _request_counts(metrics: GatewayMetrics) -> dict[str, float]:
    """User requests, server errors and refusals since start, from the Prometheus counter."""
    total = errors = refused = 0.0
    for family in metrics.requests.collect():
        for sample in family.samples:
            if not sample.name.endswith("_total") or sample.labels.get("route") not in INFERENCE_ROUTES:
                continue
            status = int(sample.labels.get("status", "0") or 0)
            total += sample.value
            if status >= 500:
                errors += sample.value
            elif status >= 400:
                refused += sample.value
    return {"total": total, "errors": errors, "refused": refused}


def _counter_total(counter: Any) -> float:
    return float(sum(s.value for family in counter.collect() for s in family.samples if s.name.endswith("_total")))


def _addr_scope(addr: str) -> str:
    """``public``, ``private``, ``loopback`` or ``other`` for a claimed multiaddr like ``/ip4/1.2.3.4/tcp/1``."""
    parts = addr.split("/")
    if len(parts) < 3 or parts[1] not in ("ip4", "ip6"):
        return "other"
    try:
        ip = ipaddress.ip_address(parts[2])
    except ValueError:
        return "other"
    if ip.is_loopback:
        return "loopback"
    if ip.is_private or ip.is_link_local:
        return "private"
    return "public" if ip.is_global else "other"


_VIA = {"outbound": "direct", "inbound": "via the node's outbound connection"}
"""The gateway's view of a connection's direction, in the page's words."""


def _reachability(
    node: NodeView, served: int, checks: int, direction_of: Callable[[str], str | None] | None
) -> dict[str, Any]:
    scopes = sorted({_addr_scope(a) for a in node.addrs})
    answered = served > 0 or checks > 0
    direction = direction_of(node.peer_id) if direction_of is not None else None
    return {
        "answered_gateway": answered,
        "observed": "answers this gateway" if answered else "no answer seen yet",
        "claimed_addrs": len(node.addrs),
        "claimed_scopes": scopes,
        "direction_known": direction in _VIA,
        "connection_opened_by": {"outbound": "gateway", "inbound": "node"}.get(direction or ""),
        "connection": _VIA.get(direction or ""),
    }


def _node_row(
    node: NodeView, gw: Gateway, trust: GatewayTrust, direction_of: Callable[[str], str | None] | None
) -> dict[str, Any]:
    obs = gw.observations
    stats = obs.peek(node.peer_id)
    described = trust.describe(node.peer_id)
    served = stats.served if stats else 0
    checks = int(described.get("checks", 0) or 0)
    verdicts = described.get("verdicts") or []
    return {
        "peer_id": node.peer_id,
        "peer_id_short": node.peer_id[:6] + "…" + node.peer_id[-6:] if len(node.peer_id) > 14 else node.peer_id,
        "name": node.name,
        "models": sorted(node.serves()),
        "load": {"in_flight": node.in_flight, "queued": node.queued, "capacity": node.capacity},
        "measured": {
            "ttft_ms": round(stats.ttft_ms, 1) if stats and stats.ttft_ms is not None else None,
            "tokens_per_s": round(stats.tokens_per_s, 1) if stats and stats.tokens_per_s is not None else None,
            "served": served,
            "in_flight": stats.in_flight if stats else 0,
            "recent_failures": obs.recent_failures(node.peer_id),
            "in_cooldown": obs.in_cooldown(node.peer_id),
        },
        "self_reported": {"ttft_ms": node.ttft_ms, "tokens_per_s": node.tokens_per_s},
        "standing": described.get("standing", "unverified"),
        "standing_reason": described.get("standing_reason", ""),
        "checks": checks,
        "failed_checks": int(described.get("failed_checks", 0) or 0),
        "reputation": described.get("reputation"),
        "last_verdict": verdicts[0] if verdicts else None,
        "reachability": _reachability(node, served, checks, direction_of),
        "age_s": round(node.age_s, 1),
        "last_seen": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - node.age_s)),
        "region": node.region,
        "version": node.version,
    }


def _model_rows(nodes: Sequence[NodeView], standing_of: dict[str, str]) -> list[dict[str, Any]]:
    serving: dict[str, list[str]] = {}
    for n in nodes:
        for name in n.serves():
            serving.setdefault(name, []).append(n.peer_id)
    rows = []
    for entry in model_list(nodes):
        if entry["root"] != entry["id"]:
            continue  # aliases are shown on their model's row
        peers = serving.get(entry["id"], [])
        states = [standing_of.get(p, "unverified") for p in peers]
        rows.append(
            {
                "id": entry["id"],
                "aliases": entry["aliases"],
                "nodes": len(peers),
                "verified": states.count("trusted"),
                "quarantined": states.count("quarantined"),
                "probation": states.count("probation"),
                "context_length": entry["context_length"],
                "pricing": entry["pricing"],
            }
        )
    return rows


def _own_peer_id(gw: Gateway) -> str | None:
    try:
        return str(gw.network.peer_id)
    except (RuntimeError, AttributeError):
        return None


def summary(gw: Gateway, trust: GatewayTrust, clock: ExplorerClock) -> dict[str, Any]:
    """The page's data: gateway counters, models, nodes (no usage; see :func:`admin_usage`)."""
    nodes = gw.network.nodes()
    direction_of = capabilities_of(gw.network).connection_direction
    rows = [_node_row(n, gw, trust, direction_of) for n in nodes[:MAX_NODE_ROWS]]
    standing_of = {r["peer_id"]: r["standing"] for r in rows}
    if len(nodes) > MAX_NODE_ROWS:
        for n in nodes[MAX_NODE_ROWS:]:
            standing_of[n.peer_id] = trust.describe(n.peer_id).get("standing", "unverified")
    counts = _request_counts(gw.metrics)
    per_minute, window_s = clock.per_minute(counts["total"])
    return {
        "object": "tooti.explorer.summary",
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "gateway": {
            "peer_id": _own_peer_id(gw),
            "version": __version__,
            "uptime_s": round(time.monotonic() - clock.started, 1),
            "requests_total": int(counts["total"]),
            "requests_per_minute": per_minute,
            "rate_window_s": window_s,
            "errors_total": int(counts["errors"]),
            "refused_total": int(counts["refused"]),
            "failovers_total": int(_counter_total(gw.metrics.failovers)),
            "audits": dict(trust.outcomes),
            "verification": trust.verification.enabled,
            "nodes_live": len(nodes),
        },
        "models": _model_rows(nodes, standing_of),
        "nodes": rows,
        "nodes_total": len(nodes),
    }


def admin_usage(store: AccountingStore) -> list[dict[str, Any]]:
    """Usage per API key for the admin (blocking: run in a worker thread): totals, budget, last use."""
    keys = sorted(store.list_keys(), key=lambda k: k.last_used_at or 0.0, reverse=True)[:MAX_USAGE_KEYS]
    out = []
    for k in keys:
        days = store.usage_summary(key_id=k.id)
        out.append(
            {
                "id": k.id,
                "name": k.name,
                "prefix": k.prefix,
                "revoked": k.revoked_at is not None,
                "requests": sum(d["requests"] for d in days),
                "failed": sum(d["failed"] for d in days),
                "prompt_tokens": sum(d["prompt_tokens"] for d in days),
                "completion_tokens": sum(d["completion_tokens"] for d in days),
                "cost": round(sum(d["cost"] for d in days), 6),
                "budget": k.budget,
                "budget_kind": k.budget_kind,
                "spent": round(k.spent, 6),
                "last_used_at": k.last_used_at,
            }
        )
    return out
