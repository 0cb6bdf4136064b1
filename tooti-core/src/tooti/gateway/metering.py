"""The gateway's side of accounting: who the key is, may it run, and what the request cost.

Per request:

1. The access guard finds the presented key in the config's hashes or in the store's key cache
   (memory, no I/O) and leaves it in the request scope (:data:`KEY_STATE`).
2. :meth:`Metering.admit`, before routing: a key restricted to some models is refused others (403);
   a key with a budget or an rpm/tpm limit takes its rate slot and reserves the request's maximum
   cost in the store, in one worker-thread call (429 ``insufficient_quota`` / ``rate_limit_exceeded``).
   Keys without either pay no hop at all.
3. :meth:`Metering.frame_check`, per attempt: notes the node's signed receipt, its usage frame and
   the token-carrying chunks the gateway relayed (a few attribute updates per frame).
4. :meth:`Metering.completed`, the gateway's per-request completion callback (called once per admitted
   request by the exchange, :mod:`tooti.gateway.exchange`, however it ended): builds the usage row
   (node, tokens, cost, TTFT, duration, status, failovers) and the key's settlement and hands both to
   the accounting thread, which also verifies and countersigns the receipt — no I/O and no crypto on
   the event loop.

The store is called only through ``anyio.to_thread.run_sync``, so this works on any event loop.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
from prometheus_client import Counter

from tooti.accounting.keycache import KeyCache
from tooti.accounting.pricing import Prices, completion_allowance, estimate_prompt_tokens, money
from tooti.accounting.receipts import GatewayCounts, check_node_receipt, countersign, encode
from tooti.accounting.records import KeyRecord, Settlement, UsageRow
from tooti.accounting.store import QuotaExceeded, RateLimited
from tooti.accounting.worker import AccountingWorker
from tooti.gateway.api_errors import ApiError
from tooti.wire.infer import ChunkFrame, UsageFrame, carries_token
from tooti.wire.receipt import ReceiptFrame

if TYPE_CHECKING:
    from collections.abc import Callable

    from libp2p.crypto.keys import KeyPair
    from prometheus_client import CollectorRegistry

    from tooti.accounting.store import AccountingStore
    from tooti.config.model import StoreSection
    from tooti.gateway.context import RequestContext
    from tooti.gateway.request_hooks import Completion
    from tooti.network import NodeView
    from tooti.wire.infer import InferRequest, ResponseFrame
    from tooti.wire.request_body import ParsedBody

__all__ = ["KEY_STATE", "Metering"]

log = logging.getLogger(__name__)

KEY_STATE = "tooti_key"
"""Scope-state entry the access guard fills: a :class:`KeyRecord`, a ``config:…`` id, or absent."""

_ANONYMOUS = "anonymous"
_MAX_TOKENS = 10_000_000
"""More tokens than any request can use: a node's count beyond it (or below 0) is not billed as such."""
_PENDING_SWEEP_EVERY = 256


def _bounded(tokens: int) -> int:
    """A node's token count clamped to [0, 10M]: a negative count must not refund a budget."""
    return max(0, min(tokens, _MAX_TOKENS))


@dataclass(slots=True)
class _Hold:
    """A request in flight with a key: what it reserved, to settle or release when it ends."""

    key_id: str
    record: KeyRecord | None
    reservation_id: str | None
    reserved: float
    since: float


@dataclass(slots=True)
class _Evidence:
    """What one attempt's node sent that a receipt is checked against."""

    peer_id: str
    streamed: bool
    since: float
    receipt: ReceiptFrame | None = None
    usage: UsageFrame | None = None
    token_chunks: int = 0

    def see(self, frame: ResponseFrame) -> None:
        if isinstance(frame, ChunkFrame):
            if self.streamed and carries_token(frame.data):
                self.token_chunks += 1
        elif isinstance(frame, UsageFrame):
            self.usage = frame
        elif isinstance(frame, ReceiptFrame) and self.receipt is None:
            self.receipt = frame


class _Counters:
    """Prometheus counters per key and per node (labels bounded by the key table and the live nodes)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.key_requests = Counter(
            "tooti_gateway_key_requests", "Requests by API key id and outcome", ["key_id", "status"], registry=r
        )
        self.key_tokens = Counter("tooti_gateway_key_tokens", "Tokens by API key id", ["key_id", "kind"], registry=r)
        self.key_spend = Counter(
            "tooti_gateway_key_spend", "Budget spent by API key id (tokens or money)", ["key_id"], registry=r
        )
        self.node_requests = Counter(
            "tooti_gateway_node_requests", "Requests by serving node and outcome", ["peer_id", "status"], registry=r
        )
        self.node_tokens = Counter(
            "tooti_gateway_node_tokens", "Tokens served by node", ["peer_id", "kind"], registry=r
        )
        self.refused = Counter(
            "tooti_gateway_key_refused", "Requests refused by a key's budget or limits", ["reason"], registry=r
        )
        self.rows_dropped = Counter(
            "tooti_gateway_usage_rows_dropped", "Usage rows dropped because the write buffer was full", registry=r
        )
        self.rows_written = Counter("tooti_gateway_usage_rows_written", "Usage rows written to the store", registry=r)


class Metering:
    """Keys, budgets, limits and usage rows for one gateway.

    Args:
        store: the accounting store (already migrated).
        section: ``gateway.store``.
        total_request_sec: ``timeouts.total_request_sec``; reservations older than twice this are stale.
        registry: the gateway's Prometheus registry.
        nodes: the registry snapshot (for advertised prices).
        signing_key: the gateway's libp2p key; with it, nodes are asked for signed receipts, which
            the gateway countersigns and stores with each usage row.
    """

    def __init__(
        self,
        store: AccountingStore,
        section: StoreSection,
        *,
        total_request_sec: float,
        registry: CollectorRegistry,
        nodes: Callable[[], list[NodeView]],
        signing_key: KeyPair | None = None,
    ) -> None:
        self.store = store
        self.signing_key = signing_key
        self.wants_receipts = signing_key is not None
        self._evidence: dict[str, _Evidence] = {}
        self.section = section
        self.keys = KeyCache()
        self.prices = Prices()
        self._nodes = nodes
        self._pending: dict[str, _Hold] = {}
        self._admitted = 0
        self._stale_after_s = 2 * total_request_sec + 60
        self.counters = _Counters(registry)
        self.worker = AccountingWorker(
            store,
            self.keys,
            flush_interval_s=section.flush_interval_sec,
            key_refresh_s=section.key_refresh_sec,
            buffer_rows=section.buffer_rows,
            stale_after_s=self._stale_after_s,
            on_dropped=self.counters.rows_dropped.inc,
            on_written=self.counters.rows_written.inc,
        )

    def start(self) -> None:
        """Load the keys and start the accounting thread."""
        self.worker.start()

    def stop(self) -> None:
        """Write what is buffered and stop the thread (the store stays open for the caller to close)."""
        self.worker.stop()

    # ---- before routing -------------------------------------------------------------------------

    def lookup(self, key: str) -> KeyRecord | None:
        """The store's record of ``key`` (memory only)."""
        return self.keys.lookup(key)

    def _amount(self, record: KeyRecord, parsed: ParsedBody, body_bytes: int) -> float:
        if record.budget is None:
            return 0.0
        prompt = estimate_prompt_tokens(body_bytes)
        completion = completion_allowance(parsed.body, parsed.kind, self.section.default_reserve_tokens)
        if record.budget_kind == "tokens":
            return float(prompt + completion)
        self.prices.refresh(self._nodes)
        return money(prompt, completion, self.prices.highest(parsed.model))

    def _unique_id(self, ctx: RequestContext) -> str:
        """The request id, made unique among requests in flight (a client may reuse its x-request-id)."""
        if ctx.request_id in self._pending:
            ctx.request_id = f"{ctx.request_id}.{uuid.uuid4().hex[:8]}"
        return ctx.request_id

    async def admit(
        self, who: KeyRecord | str | None, parsed: ParsedBody, body_bytes: int, ctx: RequestContext
    ) -> None:
        """Check the key's models, take its rate slot and reserve its budget; raise 403/429/503 when it may not run."""
        if who is None:
            return
        self._sweep_pending()
        rid = self._unique_id(ctx)
        if isinstance(who, str):
            self._pending[rid] = _Hold(who, None, None, 0.0, time.monotonic())
            return
        if who.models and parsed.model not in who.models:
            raise ApiError(
                403, f"this API key may not use model {parsed.model!r}", param="model", code="model_not_allowed"
            )
        hold = _Hold(who.id, who, None, 0.0, time.monotonic())
        self._pending[rid] = hold  # placed before the await: a concurrent duplicate id gets a new one
        if not who.metered:
            return
        hold.reserved = self._amount(who, parsed, body_bytes)
        try:
            hold.reservation_id = await anyio.to_thread.run_sync(self.store.admit, who, hold.reserved)
        except QuotaExceeded:
            self._pending.pop(rid, None)
            self.counters.refused.labels(reason="insufficient_quota").inc()
            raise ApiError(
                429,
                "this API key's budget is used up (tooti keys show <id> tells its spend)",
                code="insufficient_quota",
                error_type="insufficient_quota",
            ) from None
        except RateLimited as exc:
            self._pending.pop(rid, None)
            self.counters.refused.labels(reason="rate_limit").inc()
            raise ApiError(
                429, str(exc), code="rate_limit_exceeded", headers={"Retry-After": str(max(1, int(exc.retry_after_s)))}
            ) from None
        except Exception as exc:  # noqa: BLE001 - any driver error: refuse this request, keep serving others
            self._pending.pop(rid, None)
            log.warning("accounting store unavailable while admitting a request: %s", type(exc).__name__)
            raise ApiError(503, "the accounting store is unavailable", code="store_unavailable") from None

    def _sweep_pending(self) -> None:
        """Forget holds whose completion never came (their reservations expire in the store)."""
        self._admitted += 1
        if self._admitted % _PENDING_SWEEP_EVERY:
            return
        cutoff = time.monotonic() - self._stale_after_s
        for rid in [r for r, h in self._pending.items() if h.since < cutoff]:
            del self._pending[rid]
        for rid in [r for r, e in self._evidence.items() if e.since < cutoff]:
            del self._evidence[rid]

    def frame_check(self, request: InferRequest, peer_id: str) -> Callable[[ResponseFrame], None] | None:
        """Per attempt: a frame observer collecting the receipt evidence (never rejects a frame)."""
        if not request.want_receipt:
            return None
        evidence = _Evidence(peer_id, request.stream, time.monotonic())
        self._evidence[request.request_id] = evidence  # a later attempt replaces an earlier one
        return evidence.see

    # ---- after the request ----------------------------------------------------------------------

    def completed(self, done: Completion) -> None:
        """Record one finished client request (the gateway's completion callback; no I/O)."""
        hold = self._pending.pop(done.request_id, None)
        prompt = _bounded(done.usage.prompt_tokens) if done.usage is not None else 0
        completion = _bounded(done.usage.completion_tokens) if done.usage is not None else 0
        self.prices.refresh(self._nodes)
        cost = money(prompt, completion, self.prices.of(done.peer_id, done.model))
        now = time.time()
        row = UsageRow(
            request_id=done.request_id,
            at=now,
            key_id=hold.key_id if hold is not None else None,
            model=done.model,
            peer_id=done.peer_id,
            prompt_tokens=prompt,
            completion_tokens=completion,
            cost=cost,
            ttft_ms=done.ttft_s * 1000.0 if done.ttft_s is not None else None,
            duration_ms=done.duration_s * 1000.0,
            status=done.status,
            failovers=done.failovers,
        )
        settlement = self._settlement(hold, done, prompt + completion, cost, now)
        evidence = self._evidence.pop(done.request_id, None)
        finish = None
        if evidence is not None and evidence.peer_id == done.peer_id and evidence.receipt is not None:
            finish = self._receipt_finisher(evidence, evidence.receipt, done.model)
        self.worker.submit(row, settlement, finish)
        self._count(row, hold, settlement)

    def _receipt_finisher(self, evidence: _Evidence, frame: ReceiptFrame, model: str) -> Callable[[UsageRow], None]:
        """Check and countersign on the accounting thread (Ed25519 verify + sign, ~0.1 ms)."""
        key = self.signing_key
        counts = GatewayCounts(
            prompt_tokens=evidence.usage.prompt_tokens if evidence.usage is not None else None,
            completion_tokens=evidence.usage.completion_tokens if evidence.usage is not None else None,
            token_chunks=evidence.token_chunks if evidence.streamed else None,
        )

        def finish(row: UsageRow) -> None:
            if key is None:
                return
            flags = check_node_receipt(
                frame.receipt,
                frame.signature,
                peer_id=evidence.peer_id,
                request_id=row.request_id,
                model=model,
                counts=counts,
            )
            row.receipt = encode(countersign(frame.receipt, frame.signature, counts, flags, key)).decode()
            row.receipt_mismatch = bool(flags)
            if flags:
                log.warning("receipt of %s from %s disagrees: %s", row.request_id, evidence.peer_id, ", ".join(flags))

        return finish

    @staticmethod
    def _settlement(hold: _Hold | None, done: Completion, tokens: int, cost: float, now: float) -> Settlement | None:
        if hold is None or hold.record is None:
            return None
        record = hold.record
        if done.usage is not None:
            spent = float(tokens) if record.budget_kind == "tokens" else cost
        elif done.ttft_s is None:
            spent = 0.0  # nothing was generated: release
        else:
            spent = hold.reserved  # tokens flowed but no count came: charge what was reserved
        if record.budget is None:
            spent = float(tokens) if record.budget_kind != "money" else cost
        return Settlement(
            key_id=record.id,
            reservation_id=hold.reservation_id,
            reserved=hold.reserved,
            spent=spent,
            tokens=tokens,
            at=now,
            count_tokens=record.tpm is not None,
        )

    def _count(self, row: UsageRow, hold: _Hold | None, settlement: Settlement | None) -> None:
        c = self.counters
        key = hold.key_id if hold is not None else _ANONYMOUS
        c.key_requests.labels(key_id=key, status=row.status).inc()
        if row.prompt_tokens:
            c.key_tokens.labels(key_id=key, kind="prompt").inc(row.prompt_tokens)
        if row.completion_tokens:
            c.key_tokens.labels(key_id=key, kind="completion").inc(row.completion_tokens)
        if settlement is not None and settlement.spent:
            c.key_spend.labels(key_id=key).inc(settlement.spent)
        if row.peer_id is not None:
            c.node_requests.labels(peer_id=row.peer_id, status=row.status).inc()
            if row.prompt_tokens:
                c.node_tokens.labels(peer_id=row.peer_id, kind="prompt").inc(row.prompt_tokens)
            if row.completion_tokens:
                c.node_tokens.labels(peer_id=row.peer_id, kind="completion").inc(row.completion_tokens)

    # ---- reading ----------------------------------------------------------------------------------

    async def report(self, who: KeyRecord | str, since: float | None, limit: int) -> dict[str, Any]:
        """The caller's own usage: key, totals, per model and day, recent rows (one worker-thread call)."""
        return await anyio.to_thread.run_sync(self._report, who, since, limit)

    def _report(self, who: KeyRecord | str, since: float | None, limit: int) -> dict[str, Any]:
        import msgspec

        self.worker.write_pending()  # read-your-writes: the caller's answered requests are all counted
        key_id = who if isinstance(who, str) else who.id
        key: dict[str, Any] = {"id": key_id}
        if isinstance(who, KeyRecord):
            fresh = self.store.find_key(who.id)
            key.update(
                name=fresh.name,
                budget_kind=fresh.budget_kind,
                budget=fresh.budget,
                spent=fresh.spent,
                reserved=fresh.reserved,
                remaining=fresh.remaining(),
                rpm=fresh.rpm,
                tpm=fresh.tpm,
            )
        by_day = self.store.usage_summary(key_id=key_id, since=since)
        rows = self.store.usage_rows(key_id=key_id, since=since, limit=limit)
        totals = {
            f: sum(d[f] for d in by_day) for f in ("requests", "failed", "prompt_tokens", "completion_tokens", "cost")
        }
        recent = []
        for r in rows:
            item = msgspec.structs.asdict(r)
            item.pop("receipt", None)
            recent.append(item)
        return {"object": "usage", "key": key, "totals": totals, "by_model_day": by_day, "recent": recent}
