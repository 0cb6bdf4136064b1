"""Poll a condition instead of sleeping a fixed time: ``eventually`` and ``always``, with asyncio and trio twins.

A fixed ``sleep`` in a test is either too short (the test flakes on a loaded CI machine) or too long
(every run pays it). Polling a condition until it holds, under a deadline, is neither: the test goes
on the moment the system is ready and fails with a message, not a hang, when it never is.

Its counterpart is the grace period, "this must not happen in the next 0.2 s", usually written as a
sleep followed by one check. :func:`always` checks the condition all through the window instead, and
fails the moment it breaks: the same claim, checked at every sample, not only at the end.

The ``eventually`` functions share one contract:

- ``condition`` is called until it returns a truthy value, which is returned (so a poll can hand
  back what it found: ``peers = eventually(lambda: table() if len(table()) == 3 else None)``).
  The async twins also await the condition's result when it is awaitable.
- It is always called at least once, and once more at the deadline, so a short ``timeout`` never
  fails a condition that already holds.
- An exception the condition raises ends the wait at once (an ``assert proc.poll() is None`` in
  the condition fails fast when the process died), unless its type is in ``ignoring``: then it
  counts as "not yet" (a port that still refuses connections) and the last one is chained onto the
  timeout's ``AssertionError``.
- On timeout it raises ``AssertionError`` whose text is ``what`` (a string, or a callable evaluated
  only then, for log tails), so pytest reports it like the ``assert`` it replaces.

The ``always`` functions call ``condition`` every ``interval`` seconds for ``duration`` seconds (at
the start and once more at the end) and raise ``AssertionError`` with ``what`` the first time it is
falsy; its exceptions propagate. A condition that records what it saw and returns ``True`` makes
``always`` a sampler over a fixed window.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ["always", "always_asyncio", "always_trio", "eventually", "eventually_asyncio", "eventually_trio"]

T = TypeVar("T")

#: Exception types a condition may raise while the awaited state is not there yet.
Ignored = tuple[type[BaseException], ...]

#: What a message may be: fixed text, or a function called only when the wait fails.
Message = str | Callable[[], str]


class _Deadline:
    """The bookkeeping the three waits share: the deadline, the last ignored error, the failure."""

    def __init__(self, timeout: float, interval: float, what: Message, ignoring: Ignored) -> None:
        if timeout < 0 or interval <= 0:
            raise ValueError(f"timeout must be >= 0 and interval > 0, got {timeout} and {interval}")
        self.timeout = timeout
        self.interval = interval
        self.what = what
        self.ignoring = ignoring
        self.ends = time.monotonic() + timeout
        self.last_error: BaseException | None = None

    def pause(self) -> float | None:
        """Seconds to wait before the next try, or None when the deadline has passed."""
        left = self.ends - time.monotonic()
        if left <= 0:
            return None
        return min(self.interval, left)

    def broken(self) -> AssertionError:
        """The error an ``always`` window raises when its condition stopped holding."""
        text = self.what() if callable(self.what) else self.what
        held = self.timeout - max(0.0, self.ends - time.monotonic())
        return AssertionError(
            f"stopped being true after {held:.2f} s of {self.timeout:g}" + (f": {text}" if text else "")
        )

    def failure(self) -> AssertionError:
        """The error a wait that ran out raises, naming what never became true."""
        text = self.what() if callable(self.what) else self.what
        error = AssertionError(f"not true within {self.timeout:g} s" + (f": {text}" if text else ""))
        error.__cause__ = self.last_error
        return error


def eventually(
    condition: Callable[[], T],
    *,
    timeout: float = 10.0,
    interval: float = 0.05,
    what: Message = "",
    ignoring: Ignored = (),
) -> T:
    """Call ``condition`` every ``interval`` seconds until it returns a truthy value, and return it.

    Raises:
        AssertionError: ``condition`` stayed falsy (or kept raising an ``ignoring`` type) for ``timeout`` s.
    """
    wait = _Deadline(timeout, interval, what, ignoring)
    while True:
        try:
            result = condition()
        except ignoring as exc:
            wait.last_error = exc
        else:
            if result:
                return result
        pause = wait.pause()
        if pause is None:
            raise wait.failure()
        time.sleep(pause)


async def _outcome(condition: Callable[[], T | Awaitable[T]]) -> T:
    """The condition's value, awaited when the condition is a coroutine function or returns an awaitable."""
    result = condition()
    if inspect.isawaitable(result):
        return await result
    return result


async def _eventually_async(
    condition: Callable[[], T | Awaitable[T]], wait: _Deadline, sleep: Callable[[float], Awaitable[object]]
) -> T:
    """The loop of :func:`eventually` for an event loop; ``sleep`` is that loop's own pause."""
    while True:
        try:
            result = await _outcome(condition)
        except wait.ignoring as exc:
            wait.last_error = exc
        else:
            if result:
                return result
        pause = wait.pause()
        if pause is None:
            raise wait.failure()
        await sleep(pause)


async def eventually_asyncio(
    condition: Callable[[], T | Awaitable[T]],
    *,
    timeout: float = 10.0,
    interval: float = 0.05,
    what: Message = "",
    ignoring: Ignored = (),
) -> T:
    """:func:`eventually` for asyncio code: the pauses yield to the event loop instead of blocking it."""
    return await _eventually_async(condition, _Deadline(timeout, interval, what, ignoring), asyncio.sleep)


async def eventually_trio(
    condition: Callable[[], T | Awaitable[T]],
    *,
    timeout: float = 10.0,
    interval: float = 0.05,
    what: Message = "",
    ignoring: Ignored = (),
) -> T:
    """:func:`eventually` for trio code (the libp2p side): the pauses are trio checkpoints."""
    import trio  # here, not at the top: pytest loads tooti.testing in every run, most need no trio

    return await _eventually_async(condition, _Deadline(timeout, interval, what, ignoring), trio.sleep)


def always(condition: Callable[[], object], *, duration: float, interval: float = 0.05, what: Message = "") -> None:
    """Check ``condition`` every ``interval`` seconds for ``duration`` seconds; fail the first time it is falsy.

    Raises:
        AssertionError: ``condition`` returned a falsy value within the window.
    """
    window = _Deadline(duration, interval, what, ())
    while True:
        if not condition():
            raise window.broken()
        pause = window.pause()
        if pause is None:
            return
        time.sleep(pause)


async def _always_async(
    condition: Callable[[], object], window: _Deadline, sleep: Callable[[float], Awaitable[object]]
) -> None:
    """The loop of :func:`always` for an event loop; ``sleep`` is that loop's own pause."""
    while True:
        if not await _outcome(condition):
            raise window.broken()
        pause = window.pause()
        if pause is None:
            return
        await sleep(pause)


async def always_asyncio(
    condition: Callable[[], object], *, duration: float, interval: float = 0.05, what: Message = ""
) -> None:
    """:func:`always` for asyncio code: the pauses yield to the event loop."""
    await _always_async(condition, _Deadline(duration, interval, what, ()), asyncio.sleep)


async def always_trio(
    condition: Callable[[], object], *, duration: float, interval: float = 0.05, what: Message = ""
) -> None:
    """:func:`always` for trio code: the pauses are trio checkpoints."""
    import trio

    await _always_async(condition, _Deadline(duration, interval, what, ()), trio.sleep)
