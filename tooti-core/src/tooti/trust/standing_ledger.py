"""Node standings kept in the gateway's store: they survive restarts, and gateways sharing a store share them.

Without it, a gateway forgets every verdict when it restarts, and a quarantined liar is welcomed
back as a new node; two gateways of one operator each have to catch it. With a store
(``gateway.store``, SQLite or PostgreSQL), :class:`StandingLedger`:

* **loads** every stored standing before the gateway serves its first request, so a quarantine
  still running applies from the first second after a restart;
* **writes** each changed standing (with the node's reputation evidence) and every verdict with its
  reason, in batches every :data:`FLUSH_S`, off the event loop;
* **reads** the rows other gateways changed every :data:`POLL_S` and applies them (the newest
  change of a node wins), so a node quarantined by one gateway is quarantined on all of them
  within seconds.

The store is never on the request path: a slow or failing database delays persistence, not
routing, and the gateway keeps its in-memory standings either way.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import anyio

if TYPE_CHECKING:
    from tooti.accounting.store import AccountingStore
    from tooti.trust.reputation import Reputation
    from tooti.trust.standing import Standings

__all__ = ["AUDIT_RETENTION_S", "FLUSH_S", "POLL_S", "StandingLedger"]

log = logging.getLogger(__name__)

FLUSH_S = 0.5
POLL_S = 2.0
AUDIT_RETENTION_S = 3 * 86400.0
_POLL_OVERLAP_S = 10.0
"""Rows are re-read this far back: a row committed late with an older ``updated_at`` is not missed."""
_PRUNE_EVERY_S = 3600.0


class StandingLedger:
    """Loads, writes and shares node standings through an :class:`AccountingStore`.

    Args:
        store: the gateway's store.
        standings: this gateway's standings.
        reputation: this gateway's reputation book (its evidence is kept with the standing).
        gateway_id: who writes (this gateway's peer id, or any stable name).
    """

    def __init__(self, store: AccountingStore, standings: Standings, reputation: Reputation, gateway_id: str) -> None:
        self.store = store
        self.standings = standings
        self.reputation = reputation
        self.gateway_id = gateway_id
        self._seen: dict[str, float] = {}
        """peer -> ``updated_at`` of the newest row this gateway wrote or applied."""
        self._polled_at = 0.0
        self._pruned_at = 0.0
        self.loaded = 0
        self.written = 0
        self.failures = 0

    def load(self) -> int:
        """Apply every stored standing (blocking; before serving). Returns how many rows were applied."""
        rows = self.store.standings()
        for row in rows:
            self._apply(row)
        self._polled_at = max((r["updated_at"] for r in rows), default=0.0)
        self.loaded = len(rows)
        return self.loaded

    def _apply(self, row: dict[str, Any]) -> None:
        peer = str(row["peer_id"])
        if row["updated_at"] <= self._seen.get(peer, -1.0):
            return
        self._seen[peer] = float(row["updated_at"])
        self.standings.restore(row)
        age = max(0.0, time.time() - float(row["updated_at"]))
        self.reputation.restore(peer, float(row["reputation_good"]), float(row["reputation_bad"]), age)

    def _collect(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        now = time.time()
        rows = []
        for peer in self.standings.take_dirty():
            record = self.standings.export(peer)
            if record is None:
                continue
            good, bad = self.reputation.evidence(peer)
            record.pop("last_outcome", None)
            record.update(reputation_good=good, reputation_bad=bad, updated_at=now, updated_by=self.gateway_id)
            self._seen[peer] = now
            rows.append(record)
        notes = self.standings.notes
        audits = []
        while notes:
            peer, note = notes.popleft()
            audits.append(
                {
                    "peer_id": peer,
                    "at": note.at,
                    "outcome": note.outcome,
                    "kind": note.kind,
                    "reason": note.reason[:500],
                    "gateway": self.gateway_id,
                }
            )
        return rows, audits

    def flush(self) -> None:
        """Write what changed since the last flush (blocking; tests and shutdown)."""
        rows, audits = self._collect()
        if rows or audits:
            self.store.save_standings(rows, audits)
            self.written += len(rows)

    def poll(self) -> int:
        """Apply rows other gateways changed since the last poll (blocking); returns how many were applied."""
        return self._apply_polled(self.store.standings(updated_since=self._polled_at - _POLL_OVERLAP_S))

    def _apply_polled(self, rows: list[dict[str, Any]]) -> int:
        applied = 0
        for row in rows:
            self._polled_at = max(self._polled_at, float(row["updated_at"]))
            if row["updated_by"] == self.gateway_id:
                continue
            peer = str(row["peer_id"])
            before = self._seen.get(peer)
            self._apply(row)
            applied += before != self._seen.get(peer)
        return applied

    async def run(self) -> None:
        """Flush every :data:`FLUSH_S` and poll every :data:`POLL_S` until cancelled (then a last flush).

        Standings are read and changed on the event loop only; the database calls run in a worker thread.
        """
        next_poll = time.monotonic() + POLL_S
        try:
            while True:
                await anyio.sleep(FLUSH_S)
                await self._flush_async()
                if time.monotonic() >= next_poll:
                    next_poll = time.monotonic() + POLL_S
                    await self._poll_async()
        finally:
            with anyio.CancelScope(shield=True):
                await self._flush_async()

    async def _flush_async(self) -> None:
        rows, audits = self._collect()
        if not rows and not audits:
            return
        try:
            await anyio.to_thread.run_sync(self.store.save_standings, rows, audits)
            self.written += len(rows)
        except Exception as exc:  # noqa: BLE001 - a database hiccup must not end persistence for good
            self.failures += 1
            for row in rows:  # written again at the next flush
                self.standings.dirty.add(row["peer_id"])
            log.warning("node standings: writing to the store failed: %s", type(exc).__name__)

    async def _poll_async(self) -> None:
        since = self._polled_at - _POLL_OVERLAP_S
        try:
            rows = await anyio.to_thread.run_sync(lambda: self.store.standings(updated_since=since))
            if time.time() - self._pruned_at > _PRUNE_EVERY_S:
                self._pruned_at = time.time()
                await anyio.to_thread.run_sync(self.store.prune_audits, AUDIT_RETENTION_S)
        except Exception as exc:  # noqa: BLE001 - as above
            self.failures += 1
            log.warning("node standings: reading the store failed: %s", type(exc).__name__)
            return
        self._apply_polled(rows)
