"""The asyncio/trio bridge hands items over in batches: one wakeup of the asyncio loop per batch."""

from __future__ import annotations

import asyncio
import threading

import pytest
import trio

from tooti.p2p.bridge import TrioThread

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


async def _idle(*, task_status=trio.TASK_STATUS_IGNORED) -> None:
    task_status.started()
    await trio.sleep_forever()  # the thread's main task only keeps the trio loop alive


@pytest.fixture
async def thread():
    t: TrioThread[None] = TrioThread("test-bridge")
    await asyncio.to_thread(t.start, _idle)
    yield t
    await asyncio.to_thread(t.stop)


async def test_items_produced_while_asyncio_is_busy_arrive_with_one_wakeup(thread):
    produced = threading.Event()
    release = trio.Event()

    async def fifty():
        for i in range(50):
            yield i
        produced.set()
        await release.wait()

    stream = thread.stream(fifty)
    # Keep the asyncio loop busy (blocked) while the trio side produces everything.
    assert produced.wait(10)
    assert stream.wakeups == 1
    first = await stream.__anext__()
    rest = stream.ready_nowait()
    assert [first, *rest] == list(range(50))
    assert stream.wakeups == 1  # one call_soon_threadsafe for fifty items (before: fifty)
    await stream.aclose()


async def test_order_end_and_errors_cross_over():
    t: TrioThread[None] = TrioThread("test-bridge-2")
    await asyncio.to_thread(t.start, _idle)
    try:

        async def numbers():
            for i in range(5):
                await trio.sleep(0.001)  # items produced over time, each crossing the bridge on its own
                yield i

        assert [i async for i in t.stream(numbers)] == [0, 1, 2, 3, 4]

        async def broken():
            yield 1
            raise ValueError("boom")

        got: list[int] = []

        async def drain():
            async for i in t.stream(broken):
                got.append(i)

        with pytest.raises(ValueError, match="boom"):
            await drain()
        assert got == [1]
    finally:
        await asyncio.to_thread(t.stop)


async def test_closing_the_asyncio_side_cancels_the_trio_task(thread):
    closed = threading.Event()

    async def endless():
        try:
            i = 0
            while True:
                await trio.sleep(0.001)  # a producer that never ends, paced so the reader can close it
                yield i
                i += 1
        finally:
            closed.set()

    stream = thread.stream(endless)
    assert await stream.__anext__() == 0
    await stream.aclose()
    assert await asyncio.to_thread(closed.wait, 10)


async def test_a_producer_faster_than_its_reader_is_held_at_the_buffer_limit(thread):
    from tooti.p2p.bridge import BUFFER_LIMIT

    produced = 0

    async def flood():
        nonlocal produced
        for i in range(BUFFER_LIMIT * 4):
            produced += 1
            yield i

    stream = thread.stream(flood)
    await asyncio.sleep(0.3)  # the reader does not read; the trio side runs freely meanwhile
    assert produced <= BUFFER_LIMIT + 1  # held, not buffering all 1,024 items
    got = [i async for i in stream]
    assert got == list(range(BUFFER_LIMIT * 4))  # nothing lost or reordered across the waits
