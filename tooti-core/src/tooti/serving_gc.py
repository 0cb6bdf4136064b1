"""Garbage-collector settings for the long-running serving processes (gateway and node).

With CPython's default thresholds (700, 10, 10) the full collections, which walk every object the
process holds (libp2p, Litestar, the config, the route table), came often enough under load to
stall the event loops: measured under 16 concurrent streams, they were most of tooti's added p99
latency (+105 ms p99 with the defaults, +38 ms with these settings; p50 20 → 17 ms). Once
start-up is over, the objects that live for the whole run are frozen (moved out of the collector's
reach) and young collections run every 20,000 allocations instead of every 700. Cyclic garbage is
still collected; it only waits a little longer.
"""

from __future__ import annotations

import asyncio
import gc
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

__all__ = ["STARTED_AFTER_S", "THRESHOLDS", "serving_gc_lifespan", "tune_gc_for_serving"]

THRESHOLDS = (20_000, 50, 100)
"""Generation thresholds while serving: young collections every 20,000 allocations, old ones rarely."""


def tune_gc_for_serving() -> None:
    """Call once start-up is done: collect, freeze what survived, raise the thresholds."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)


STARTED_AFTER_S = 1.0
"""Seconds after the gateway's start-up before the collector is tuned (its full collection takes a
moment, which would otherwise delay the moment the server listens)."""


@asynccontextmanager
async def serving_gc_lifespan(_app: Any) -> AsyncIterator[None]:
    """A gateway lifespan that tunes the collector shortly after start-up, once the server listens."""
    handle = asyncio.get_running_loop().call_later(STARTED_AFTER_S, tune_gc_for_serving)
    try:
        yield
    finally:
        handle.cancel()
