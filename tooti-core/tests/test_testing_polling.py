from __future__ import annotations

import asyncio
import itertools
import time

import pytest
import trio

from tooti.testing import always, always_asyncio, always_trio, eventually, eventually_asyncio, eventually_trio


def _ready_after(calls: int):
    """A condition that is falsy for ``calls - 1`` calls, then returns the number of calls made."""
    counter = itertools.count(1)
    return lambda: (n := next(counter)) >= calls and n


def test_returns_the_first_truthy_value_without_waiting_the_timeout():
    t0 = time.monotonic()
    assert eventually(_ready_after(3), timeout=30, interval=0.01) == 3
    assert time.monotonic() - t0 < 5


def test_a_condition_that_already_holds_passes_with_zero_timeout():
    assert eventually(lambda: "yes", timeout=0) == "yes"


def test_timeout_is_an_assertion_error_with_the_lazy_message():
    asked = []

    def message() -> str:
        asked.append(1)
        return "log tail"

    with pytest.raises(AssertionError, match=r"not true within 0.1 s: log tail"):
        eventually(lambda: False, timeout=0.1, interval=0.02, what=message)
    assert asked == [1]


def test_the_condition_is_tried_once_more_at_the_deadline():
    calls = []
    with pytest.raises(AssertionError):
        eventually(lambda: calls.append(time.monotonic()), timeout=0.1, interval=1.0)
    assert len(calls) == 2  # at the start, and at the deadline (the pause is cut to what is left)


def test_an_unlisted_exception_ends_the_wait_at_once():
    t0 = time.monotonic()
    with pytest.raises(ZeroDivisionError):
        eventually(lambda: 1 / 0, timeout=30)
    assert time.monotonic() - t0 < 5


def test_ignored_exceptions_count_as_not_yet_and_the_last_is_chained():
    attempts = itertools.count()

    def refuses_twice() -> str:
        if next(attempts) < 2:
            raise ConnectionError("refused")
        return "up"

    assert eventually(refuses_twice, timeout=30, interval=0.01, ignoring=(ConnectionError,)) == "up"

    def always_refuses() -> None:
        raise ConnectionError("still refused")

    with pytest.raises(AssertionError) as caught:
        eventually(always_refuses, timeout=0.05, interval=0.01, ignoring=(ConnectionError,))
    assert isinstance(caught.value.__cause__, ConnectionError)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="interval"):
        eventually(lambda: True, interval=0)


def test_asyncio_twin_awaits_coroutine_conditions_and_lets_the_loop_run():
    async def main() -> int:
        flag = asyncio.Event()
        asyncio.get_running_loop().call_later(0.05, flag.set)

        async def is_set() -> bool:
            return flag.is_set()

        assert await eventually_asyncio(is_set, timeout=30, interval=0.01)
        assert await eventually_asyncio(_ready_after(2), timeout=30, interval=0.01) == 2
        with pytest.raises(AssertionError, match="never"):
            await eventually_asyncio(lambda: False, timeout=0.05, interval=0.01, what="never")
        return 1

    assert asyncio.run(main()) == 1


def test_trio_twin_awaits_coroutine_conditions_and_lets_other_tasks_run():
    async def main() -> None:
        seen: list[int] = []

        async def producer() -> None:
            for _ in range(3):  # the state arrives later, from a task that runs only when the wait yields
                await trio.lowlevel.checkpoint()
            seen.append(1)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(producer)

            async def has_value() -> list[int]:
                return seen

            assert await eventually_trio(has_value, timeout=30, interval=0.01) == [1]
        with pytest.raises(AssertionError, match="never"):
            await eventually_trio(lambda: None, timeout=0.05, interval=0.01, what="never")

    trio.run(main)


def test_always_checks_all_through_the_window_and_at_its_end():
    calls = []
    t0 = time.monotonic()
    always(lambda: calls.append(time.monotonic() - t0) or True, duration=0.2, interval=0.05)
    assert len(calls) >= 4
    assert calls[0] < 0.05
    assert calls[-1] >= 0.2


def test_always_fails_the_first_time_the_condition_breaks():
    counter = itertools.count()
    t0 = time.monotonic()
    with pytest.raises(AssertionError, match=r"stopped being true after .* of 30: it broke"):
        always(lambda: next(counter) < 2, duration=30, interval=0.01, what="it broke")
    assert time.monotonic() - t0 < 5


def test_always_lets_exceptions_through():
    with pytest.raises(ZeroDivisionError):
        always(lambda: 1 / 0, duration=1)


def test_always_twins_yield_to_their_loops():
    async def on_asyncio() -> None:
        ticks = []
        asyncio.get_running_loop().call_later(0.02, ticks.append, 1)
        await always_asyncio(lambda: True, duration=0.1, interval=0.01)
        assert ticks == [1]  # the loop ran the timer during the window
        with pytest.raises(AssertionError):
            await always_asyncio(lambda: not ticks, duration=1)

    asyncio.run(on_asyncio())

    async def on_trio() -> None:
        seen: list[int] = []

        async def producer() -> None:
            for _ in range(3):  # the state changes later, from a task that runs only when the window yields
                await trio.lowlevel.checkpoint()
            seen.append(1)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(producer)
            with pytest.raises(AssertionError):
                await always_trio(lambda: not seen, duration=10, interval=0.01)

    trio.run(on_trio)
