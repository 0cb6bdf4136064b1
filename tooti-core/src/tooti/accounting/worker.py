"""The gateway's accounting thread: batched writes, key refresh and the stale-reservation sweep.

The request path only appends to in-memory buffers (:meth:`AccountingWorker.submit`, no I/O, no
thread hop); this thread writes them every ``flush_interval_sec`` in one transaction. Usage rows
are bounded by ``buffer_rows``: past it a row is dropped, counted
(``tooti_gateway_usage_rows_dropped``) and logged — the request itself was already served.
Settlements (a key's spend and the closing of its reservation) are never dropped: losing one would
leave budget reserved until the stale sweep, or spend unrecorded. When the database is down,
batches are kept and retried.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    from collections.abc import Callable

    from tooti.accounting.keycache import KeyCache
    from tooti.accounting.records import Settlement, UsageRow
    from tooti.accounting.store import AccountingStore

    Finisher: TypeAlias = Callable[[UsageRow], None]
    """Completes a row on the accounting thread before it is written."""

__all__ = ["AccountingWorker"]

log = logging.getLogger(__name__)

_SWEEP_EVERY_S = 30.0
_LOG_EVERY_S = 10.0


class AccountingWorker:
    """A daemon thread that owns every write of one gateway's accounting.

    Args:
        store: where to write.
        keys: the key cache to refresh.
        flush_interval_s: seconds between batch writes.
        key_refresh_s: seconds between key-version polls.
        buffer_rows: usage rows held before new ones are dropped.
        stale_after_s: a reservation older than this belongs to a request that cannot still run.
        on_dropped: called (from the request path) for each dropped usage row.
        on_written: called (from this thread) with the number of rows each successful flush wrote.
    """

    def __init__(
        self,
        store: AccountingStore,
        keys: KeyCache,
        *,
        flush_interval_s: float,
        key_refresh_s: float,
        buffer_rows: int,
        stale_after_s: float,
        on_dropped: Callable[[], None] = lambda: None,
        on_written: Callable[[int], None] = lambda _n: None,
    ) -> None:
        self.store = store
        self.keys = keys
        self.flush_interval_s = flush_interval_s
        self.key_refresh_s = key_refresh_s
        self.buffer_rows = buffer_rows
        self.stale_after_s = stale_after_s
        self._on_dropped = on_dropped
        self._on_written = on_written
        self._rows: deque[tuple[UsageRow, Finisher | None]] = deque()
        self._settlements: list[Settlement] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tooti-accounting", daemon=True)
        self._last_drop_log = 0.0
        self._last_error_log = 0.0
        self.dropped = 0

    def start(self) -> None:
        """Load the keys once (so the first request already sees them), then start the thread."""
        self.keys.refresh(self.store)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Write what is buffered and end the thread."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def submit(self, row: UsageRow | None, settlement: Settlement | None, finish: Finisher | None = None) -> None:
        """Queue one finished request's row and settlement. Thread-safe, never blocks on I/O.

        ``finish`` runs on this thread just before the row is written (receipt verification and
        countersigning: CPU work kept off the event loop).
        """
        with self._lock:
            if settlement is not None:
                self._settlements.append(settlement)
            if row is not None:
                if len(self._rows) >= self.buffer_rows:
                    self.dropped += 1
                    self._on_dropped()
                    now = time.monotonic()
                    if now - self._last_drop_log >= _LOG_EVERY_S:
                        self._last_drop_log = now
                        log.warning(
                            "usage buffer full (%d rows; the database is slow or down): %d row(s) dropped so far",
                            self.buffer_rows,
                            self.dropped,
                        )
                else:
                    self._rows.append((row, finish))

    def write_pending(self) -> None:
        """Write what is buffered now, in the calling thread (blocking).

        A reader of usage (``GET /v1/usage``) calls it first, so a client sees every request it was
        already answered for instead of the last ``flush_interval_s`` going missing. Safe beside the
        worker thread: each flush takes its own batch out of the buffer under the lock.
        """
        self._flush()

    def pending(self) -> int:
        """Rows and settlements not yet written."""
        with self._lock:
            return len(self._rows) + len(self._settlements)

    def _flush(self) -> None:
        with self._lock:
            rows = list(self._rows)
            settlements = self._settlements
            self._rows.clear()
            self._settlements = []
        if not rows and not settlements:
            return
        for i, (row, finish) in enumerate(rows):
            if finish is not None:
                try:
                    finish(row)
                except Exception as exc:  # noqa: BLE001 - a bad receipt must not lose the usage row
                    self._log_error("countersigning a receipt", exc)
                rows[i] = (row, None)
        try:
            self.store.record(settlements, [row for row, _ in rows])
        except Exception as exc:  # noqa: BLE001 - the database is down or slow: keep the batch, retry
            with self._lock:
                self._settlements = settlements + self._settlements
                room = max(0, self.buffer_rows - len(self._rows))
                self._rows.extendleft(reversed(rows[:room]))
            self._log_error("writing usage", exc)
            return
        self._on_written(len(rows))

    def _log_error(self, what: str, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._last_error_log >= _LOG_EVERY_S:
            self._last_error_log = now
            log.warning("accounting store error while %s: %s: %s", what, type(exc).__name__, exc)

    def _run(self) -> None:
        next_refresh = time.monotonic() + self.key_refresh_s
        next_sweep = time.monotonic()
        while not self._stop.is_set():
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            self._flush()
            now = time.monotonic()
            if now >= next_refresh:
                next_refresh = now + self.key_refresh_s
                try:
                    if self.keys.refresh(self.store):
                        log.info("API keys reloaded: %d usable", len(self.keys))
                except Exception as exc:  # noqa: BLE001 - keep serving with the keys already loaded
                    self._log_error("refreshing keys", exc)
            if now >= next_sweep:
                next_sweep = now + _SWEEP_EVERY_S
                try:
                    released = self.store.release_stale(self.stale_after_s)
                    if released:
                        log.info("released %d reservation(s) left by requests that cannot still run", released)
                except Exception as exc:  # noqa: BLE001 - retried at the next sweep
                    self._log_error("releasing stale reservations", exc)
        self._flush()
