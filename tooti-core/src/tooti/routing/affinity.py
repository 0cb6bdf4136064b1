"""Conversation affinity: send a request to the node that already holds its prompt's prefix, load permitting.

Agents send long, growing prompts: turn after turn the same system prompt, tools and history, plus a
little more. A model server keeps the last prompts it processed (llama.cpp's prompt cache, vLLM's
automatic prefix caching) and skips recomputing a prefix it holds, so a turn that goes back to the
node that served the previous one starts sooner. Nodes are independent operators: no node reports
its cache, so the gateway keeps an *approximate* picture of its own (SGLang's cache-aware router,
in its simplest form): :class:`PrefixAffinity`, a bounded LRU table from prefix hashes to the node
that last served a request with that prefix.

* :func:`prefix_keys` renders the request's prefix (model name, tools, then each message as the
  client sent it, in order) and hashes its first ``chunk_bytes``, first ``2 * chunk_bytes``, …, up
  to ``max_prefix_bytes``. Turn n+1 of a conversation starts with turn n's bytes, so it shares turn
  n's keys; the longest key found in the table names the node holding the longest prefix. A prompt
  shorter than one chunk has no keys: it is too short for a cache to matter.
* :meth:`PrefixAffinity.prefer` moves that node to the front of the strategy's order unless its load
  (in-flight plus queued requests) exceeds ``max(ratio * least, least + margin)`` of the least
  loaded candidate, so one popular prefix does not stampede a node (SGLang's "1.5 times or +N" rule, with a
  margin fit for nodes that run a handful of requests at a time); a node with a free slot (load
  below its announced capacity) is preferred whatever the others' load, since the request waits
  for nothing there. A cooling node is never preferred.
* :meth:`PrefixAffinity.remember` records the node that started answering (the failover loop
  calls it once the attempt is committed).

It is a built-in preference, not a strategy plugin: it needs the gateway's memory of who served
what, which strategies (pure functions of one snapshot, hook API 3) do not have, and it applies on
top of whichever strategy orders the nodes. Every decision it takes, or declines, is named in the
decision's reasons (``x-tooti-route``).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import msgspec

from tooti.routing.load import outstanding

if TYPE_CHECKING:
    from tooti.routing.protocol import Decision, Preferences

__all__ = ["PrefixAffinity", "prefix_keys"]

_ENCODE = msgspec.json.Encoder().encode


def _rendered(kind: str, model: str, body: dict[str, Any], limit: int) -> bytes:
    """The request's prefix as bytes, in the order the model reads it, cut at ``limit``."""
    parts: list[bytes] = [kind.encode(), b"\0", model.encode(), b"\0"]
    size = sum(len(p) for p in parts)
    tools = body.get("tools")
    if tools:
        parts.append(_ENCODE(tools))
        size += len(parts[-1])
    if kind == "chat":
        items = body.get("messages")
    elif kind == "responses":
        instructions, items = body.get("instructions"), body.get("input")
        if instructions is not None:
            parts.append(_ENCODE(instructions))
            size += len(parts[-1])
        items = items if isinstance(items, list) else [items]
    else:
        items = [body.get("prompt")]
    for item in items if isinstance(items, list) else ():
        if size >= limit:
            break
        parts.append(_ENCODE(item))
        parts.append(b"\n")
        size += len(parts[-2]) + 1
    return b"".join(parts)[:limit]


def prefix_keys(
    kind: str, model: str, body: dict[str, Any], *, chunk_bytes: int, max_prefix_bytes: int
) -> tuple[int, ...]:
    """Hashes of the first 1, 2, … ``chunk_bytes`` of the rendered prefix (shortest first); none for embeddings."""
    if kind == "embeddings" or chunk_bytes <= 0:
        return ()
    try:
        data = _rendered(kind, model, body, max_prefix_bytes)
    except (TypeError, msgspec.EncodeError):
        return ()
    h = hashlib.blake2b(digest_size=8)
    keys: list[int] = []
    for start in range(0, len(data) - chunk_bytes + 1, chunk_bytes):
        h.update(data[start : start + chunk_bytes])
        keys.append(int.from_bytes(h.copy().digest(), "big"))
    return tuple(keys)


class PrefixAffinity:
    """The per-gateway table from prefix hashes to the node that last served that prefix (LRU, bounded).

    Args:
        table_size: most keys kept (each request adds up to ``max_prefix_bytes / chunk_bytes``); 0
            turns affinity off.
        chunk_bytes: prefix granularity: one key per this many rendered bytes.
        max_prefix_bytes: the longest prefix hashed.
        load_ratio: the cache node is preferred while its load is at most this many times the least
            loaded candidate's …
        load_margin: … or at most this many requests above it, whichever is more.
    """

    __slots__ = ("chunk_bytes", "load_margin", "load_ratio", "max_prefix_bytes", "table", "table_size")

    def __init__(
        self,
        *,
        table_size: int = 65_536,
        chunk_bytes: int = 1024,
        max_prefix_bytes: int = 64 * 1024,
        load_ratio: float = 1.5,
        load_margin: int = 1,
    ) -> None:
        self.table_size = table_size
        self.chunk_bytes = chunk_bytes
        self.max_prefix_bytes = max_prefix_bytes
        self.load_ratio = load_ratio
        self.load_margin = load_margin
        self.table: OrderedDict[int, str] = OrderedDict()

    @property
    def enabled(self) -> bool:
        """Whether requests get prefix keys at all."""
        return self.table_size > 0

    def keys(self, kind: str, model: str, body: dict[str, Any]) -> tuple[int, ...]:
        """The request's prefix keys (empty when affinity is off)."""
        if not self.enabled:
            return ()
        return prefix_keys(kind, model, body, chunk_bytes=self.chunk_bytes, max_prefix_bytes=self.max_prefix_bytes)

    def lookup(self, keys: tuple[int, ...]) -> tuple[str, int] | None:
        """The node that served the longest known prefix of ``keys``, and how many chunks it covers."""
        table = self.table
        for depth in range(len(keys), 0, -1):
            peer = table.get(keys[depth - 1])
            if peer is not None:
                return peer, depth
        return None

    def remember(self, keys: tuple[int, ...], peer_id: str) -> None:
        """``peer_id`` now holds the prefix ``keys`` describe (the newest entries survive eviction)."""
        if not keys or not self.enabled:
            return
        table = self.table
        for key in keys:
            table[key] = peer_id
            table.move_to_end(key)
        while len(table) > self.table_size:
            table.popitem(last=False)

    def forget(self, peer_id: str) -> None:
        """Drop every key of ``peer_id`` (O(table); for a node that left, not for the request path)."""
        for key in [k for k, p in self.table.items() if p == peer_id]:
            del self.table[key]

    def prefer(self, decision: Decision, prefs: Preferences) -> Decision:
        """``decision`` with the node holding the request's prefix first, when its load allows it."""
        keys = prefs.prefix_keys
        if not keys or not decision.ordered:
            return decision
        hit = self.lookup(keys)
        if hit is None:
            return decision
        peer, depth = hit
        ordered = decision.ordered
        at = next((i for i, c in enumerate(ordered) if c.peer_id == peer), None)
        kib = depth * self.chunk_bytes / 1024
        if at is None:
            return _noted(decision, f"affinity: {peer} held {kib:g} KiB of this prefix but is not eligible now")
        holder = ordered[at]
        least = min(outstanding(c) for c in ordered)
        bound = max(least * self.load_ratio, least + self.load_margin)
        if holder.cooling:
            return _noted(decision, f"affinity: {peer} holds {kib:g} KiB of this prefix but is cooling down")
        free_slot = holder.capacity is not None and outstanding(holder) < holder.capacity
        if outstanding(holder) > bound and not free_slot:
            why = f"load {outstanding(holder)} above the bound {bound:g} (least loaded {least})"
            return _noted(decision, f"affinity: {peer} holds {kib:g} KiB of this prefix, not preferred: {why}")
        note = f"affinity: {peer} holds {kib:g} KiB of this prefix (load {outstanding(holder)}, least loaded {least})"
        if at == 0:
            return _noted(decision, note + ", already first")
        reordered = (holder, *ordered[:at], *ordered[at + 1 :])
        return msgspec.structs.replace(decision, ordered=reordered, reasons=(note + ": chosen", *decision.reasons))


def _noted(decision: Decision, note: str) -> Decision:
    return msgspec.structs.replace(decision, reasons=(note, *decision.reasons))
