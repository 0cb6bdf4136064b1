"""What the network offers, from the registry snapshot: the model list and the node table."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

    from tooti.gateway.observations import Observations
    from tooti.network import NodeView
    from tooti.trust.gateway_trust import GatewayTrust

__all__ = ["model_list", "node_table"]


def model_list(nodes: Sequence[NodeView]) -> list[dict[str, Any]]:
    """OpenAI ``model`` objects for every name and alias a live node serves, sorted by id.

    Aliases are listed as their own entries with ``root`` naming the canonical model, so clients
    that pick a model from the list can use either name. ``pricing`` is the range of prices per
    1K tokens the serving nodes announce (``None`` when no node announces one): each node sets its
    own, so a client sees what a request may cost before sending it.
    """
    entries: dict[str, dict[str, Any]] = {}
    prices: dict[str, dict[str, list[float]]] = {}
    for node in nodes:
        for m in node.models:
            for name in (m.name, *m.aliases):
                entry = entries.get(name)
                if entry is None:
                    entry = entries[name] = {
                        "id": name,
                        "object": "model",
                        "created": 0,
                        "owned_by": m.backend or "tooti",
                        "root": m.name,
                        "context_length": m.context_length,
                        "aliases": sorted(a for a in (m.name, *m.aliases) if a != name),
                        "nodes": 0,
                    }
                entry["nodes"] += 1
                seen = prices.setdefault(name, {"input_per_1k": [], "output_per_1k": []})
                if m.price_in_per_1k is not None:
                    seen["input_per_1k"].append(m.price_in_per_1k)
                if m.price_out_per_1k is not None:
                    seen["output_per_1k"].append(m.price_out_per_1k)
                if m.context_length and (entry["context_length"] or 0) < m.context_length:
                    entry["context_length"] = m.context_length
    for name, entry in entries.items():
        entry["pricing"] = _price_range(prices[name])
    return [entries[k] for k in sorted(entries)]


def _price_range(seen: dict[str, list[float]]) -> dict[str, dict[str, float]] | None:
    """``{"input_per_1k": {"min", "max"}, ...}`` over the announced prices; ``None`` if nobody announced one."""
    out = {kind: {"min": min(values), "max": max(values)} for kind, values in seen.items() if values}
    return out or None


def _gateway_view(obs: Observations, peer_id: str) -> dict[str, Any]:
    s = obs.peek(peer_id)
    return {
        "in_flight": s.in_flight if s else 0,
        "ttft_ms": s.ttft_ms if s else None,
        "tokens_per_s": s.tokens_per_s if s else None,
        "served": s.served if s else 0,
        "recent_failures": obs.recent_failures(peer_id),
        "in_cooldown": obs.in_cooldown(peer_id),
    }


def node_table(nodes: Sequence[NodeView], obs: Observations, trust: GatewayTrust | None = None) -> list[dict[str, Any]]:
    """The registry as the gateway sees it: the node's own heartbeat plus this gateway's measurements.

    With ``trust``, ``gateway`` also holds the node's standing (probation, trusted, quarantined and
    why) and reputation.
    """
    now = time.time()
    return [
        {
            "peer_id": n.peer_id,
            "name": n.name,
            "models": sorted(n.serves()),
            "in_flight": n.in_flight,
            "queued": n.queued,
            "capacity": n.capacity,
            "ttft_ms": n.ttft_ms,
            "tokens_per_s": n.tokens_per_s,
            "region": n.region,
            "version": n.version,
            "hardware": n.hardware,
            "age_s": round(n.age_s, 3),
            "last_seen": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - n.age_s)),
            "gateway": _gateway_view(obs, n.peer_id) | (trust.describe(n.peer_id) if trust else {}),
        }
        for n in sorted(nodes, key=lambda n: n.peer_id)
    ]
