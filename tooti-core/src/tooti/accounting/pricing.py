"""What a request may cost before it runs (its reservation) and what it cost after (its settlement).

A token budget counts prompt plus completion tokens. A money budget counts
``prompt/1000 * input price + completion/1000 * output price`` of the node that served, in the unit
nodes price in. Before routing the gateway does not know the node or the prompt's token count, so
the reservation takes the highest price any node advertises for the model and estimates the prompt
as one token per 4 bytes of the request body (generous for text: real tokenizers average more bytes
per token). The completion side is the request's ``max_completion_tokens`` / ``max_tokens``, or
``gateway.store.default_reserve_tokens`` when it sets neither.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from tooti.routing.prices import models_by_name

if TYPE_CHECKING:
    from collections.abc import Callable

    from tooti.network import NodeView

__all__ = ["Prices", "completion_allowance", "estimate_prompt_tokens", "money"]

_BYTES_PER_TOKEN = 4
_MAX_ALLOWANCE = 10_000_000
_REFRESH_S = 1.0


def estimate_prompt_tokens(body_bytes: int) -> int:
    """An upper-leaning estimate of the prompt's tokens from the body size."""
    return body_bytes // _BYTES_PER_TOKEN + 1


def completion_allowance(body: dict[str, Any], kind: str, default: int) -> int:
    """Completion tokens to reserve: what the request caps it at, else ``default`` (embeddings: none)."""
    if kind == "embeddings":
        return 0
    for field in ("max_completion_tokens", "max_tokens", "max_output_tokens"):
        value = body.get(field)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return min(value, _MAX_ALLOWANCE)
    return default


class Prices:
    """Advertised prices per (node, model) and the highest per model, rebuilt at most once a second.

    Built from the registry snapshot (no I/O). Names and aliases both map to the model's price, read
    with :func:`tooti.routing.prices.models_by_name` as routing reads it, so a node announcing one
    name twice is charged the price it was routed (and ``max_price``-checked) under.
    """

    def __init__(self) -> None:
        self._by_node: dict[tuple[str, str], tuple[float, float]] = {}
        self._highest: dict[str, tuple[float, float]] = {}
        self._built = 0.0

    def refresh(self, nodes: Callable[[], list[NodeView]], *, force: bool = False) -> None:
        """Rebuild from the registry snapshot ``nodes()`` if the last build is older than a second (or ``force``)."""
        now = time.monotonic()
        if not force and now - self._built < _REFRESH_S:
            return
        self._built = now
        by_node: dict[tuple[str, str], tuple[float, float]] = {}
        highest: dict[str, tuple[float, float]] = {}
        for node in nodes():
            for name, m in models_by_name(node).items():  # the owner of each name, as routing reads it
                if m.price_in_per_1k is None and m.price_out_per_1k is None:
                    continue
                price = (m.price_in_per_1k or 0.0, m.price_out_per_1k or 0.0)
                by_node[node.peer_id, name] = price
                top = highest.get(name, (0.0, 0.0))
                highest[name] = (max(top[0], price[0]), max(top[1], price[1]))
        self._by_node, self._highest = by_node, highest

    def of(self, peer_id: str | None, model: str) -> tuple[float, float]:
        """(input, output) price per 1K tokens of ``model`` on ``peer_id``; free when it set none."""
        if peer_id is None:
            return 0.0, 0.0
        return self._by_node.get((peer_id, model), (0.0, 0.0))

    def highest(self, model: str) -> tuple[float, float]:
        """The highest (input, output) price any node advertises for ``model``."""
        return self._highest.get(model, (0.0, 0.0))


def money(prompt_tokens: int, completion_tokens: int, price: tuple[float, float]) -> float:
    """Cost of a request at ``price`` (input, output per 1K tokens)."""
    return prompt_tokens / 1000.0 * price[0] + completion_tokens / 1000.0 * price[1]
