"""The gateway and node tune the collector once serving, not before (a full collection takes a moment)."""

from __future__ import annotations

import asyncio
import gc

import pytest

from tooti import serving_gc
from tooti.testing import always_asyncio, eventually_asyncio


@pytest.fixture
def restore_gc():
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)
    gc.unfreeze()


def test_the_lifespan_tunes_the_collector_after_start_up_not_during_it(monkeypatch, restore_gc):
    monkeypatch.setattr(serving_gc, "STARTED_AFTER_S", 0.05)
    gc.set_threshold(700, 10, 10)

    async def serve() -> tuple[tuple[int, ...], tuple[int, ...]]:
        async with serving_gc.serving_gc_lifespan(None):
            at_start = gc.get_threshold()
            await eventually_asyncio(lambda: gc.get_threshold() != at_start, timeout=10, interval=0.01)
            return at_start, gc.get_threshold()

    at_start, serving = asyncio.run(serve())
    assert at_start == (700, 10, 10)  # start-up (and the server's listen) is not delayed
    assert serving == serving_gc.THRESHOLDS
    assert gc.get_freeze_count() > 0  # what lived through start-up is out of the collector's reach


def test_a_gateway_stopped_before_then_leaves_the_collector_alone(monkeypatch, restore_gc):
    monkeypatch.setattr(serving_gc, "STARTED_AFTER_S", 0.2)
    gc.set_threshold(700, 10, 10)

    async def start_and_stop() -> None:
        async with serving_gc.serving_gc_lifespan(None):
            pass
        # past when the cancelled timer would have fired (0.2 s): the thresholds must stay as they were
        await always_asyncio(lambda: gc.get_threshold() == (700, 10, 10), duration=0.3, interval=0.01)

    asyncio.run(start_and_stop())
    assert gc.get_threshold() == (700, 10, 10)
