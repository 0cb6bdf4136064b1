"""The only place asyncio and trio meet: a trio loop in a daemon thread, driven from asyncio.

``TrioThread.start`` runs ``trio.run`` in a thread and waits until the given main function calls
``task_status.started()``. ``call`` runs a trio coroutine function from asyncio; ``stream`` turns a
trio async generator into an asyncio iterator fed in batches (one ``call_soon_threadsafe`` wakeup
for all the items that arrive before the asyncio side runs). Cancelling or closing the asyncio side
cancels the trio task's scope, so e.g. a libp2p stream gets reset when an HTTP client disconnects.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from contextlib import aclosing, suppress
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import trio

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Awaitable, Callable

__all__ = ["BatchedStream", "TrioThread"]

T = TypeVar("T")
R = TypeVar("R")

_ITEM, _ERROR, _END = 0, 1, 2

BUFFER_LIMIT = 256
"""Items a :class:`BatchedStream` holds unread before its producer waits (flow control)."""


class TrioThread(Generic[R]):
    """A trio event loop in a daemon thread running one long-lived main task."""

    def __init__(self, name: str = "tooti-p2p") -> None:
        self.name = name
        self._token: trio.lowlevel.TrioToken | None = None
        self._nursery: trio.Nursery | None = None
        self._stop: trio.Event | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @property
    def running(self) -> bool:
        """Whether the trio thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def start(self, main: Callable[..., Awaitable[None]], timeout: float = 30.0) -> R:
        """Start ``main(task_status=...)`` in a new trio thread; block until it reports started.

        Returns the value ``main`` passed to ``task_status.started()``. Blocking: from asyncio,
        call it through ``asyncio.to_thread``.
        """
        ready = threading.Event()
        box: list[R] = []

        async def trio_main() -> None:
            self._token = trio.lowlevel.current_trio_token()
            self._stop = trio.Event()
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                box.append(await nursery.start(main))
                ready.set()
                await self._stop.wait()
                nursery.cancel_scope.cancel()

        def target() -> None:
            try:
                trio.run(trio_main)
            except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
                self._error = exc
            finally:
                ready.set()

        self._thread = threading.Thread(target=target, name=self.name, daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise TimeoutError(f"{self.name}: trio runtime did not start within {timeout:g}s")
        if self._error is not None or not box:
            cause = _leaf(self._error)
            if isinstance(cause, Exception) and not isinstance(cause, BaseExceptionGroup):
                raise cause
            raise RuntimeError(f"{self.name}: trio runtime failed to start: {self._error!r}") from self._error
        return box[0]

    def stop(self, timeout: float = 10.0) -> None:
        """Cancel the main task, wait for the thread to exit (blocking)."""
        if self._token is not None and self._stop is not None and self.running:
            with suppress(trio.RunFinishedError):
                self._token.run_sync_soon(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise TimeoutError(f"{self.name}: trio thread did not stop within {timeout:g}s")

    def _schedule(self, fn: Callable[[], Any]) -> None:
        if self._token is None:
            raise RuntimeError(f"{self.name} is not running")
        self._token.run_sync_soon(fn)

    def _soft_cancel(self, scope: trio.CancelScope) -> None:
        with suppress(RuntimeError, trio.RunFinishedError):  # the loop is gone: nothing left to cancel
            self._schedule(scope.cancel)

    async def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``await fn(*args)`` in the trio thread; cancellation crosses over."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        scope = trio.CancelScope()

        def deliver(value: T | None, error: BaseException | None) -> None:
            if future.done():
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(value)  # type: ignore[arg-type]

        async def runner() -> None:
            value: T | None = None
            error: BaseException | None = None
            with scope:
                try:
                    value = await fn(*args)
                except Exception as exc:  # noqa: BLE001 - re-raised on the asyncio side
                    error = exc
            if scope.cancelled_caught and error is None:
                error = asyncio.CancelledError()
            _post(loop, deliver, value, error)

        self._schedule(lambda: self._nursery.start_soon(runner) if self._nursery else None)
        try:
            return await future
        except asyncio.CancelledError:
            self._soft_cancel(scope)
            raise

    def stream(self, factory: Callable[..., AsyncGenerator[T, None]], *args: Any) -> BatchedStream[T]:
        """Iterate the trio async generator ``factory(*args)`` from asyncio, in batches.

        The trio task appends items to a shared buffer and wakes the asyncio side only when no
        wakeup is already pending: every item that arrives before the consumer runs rides the same
        wakeup. Handing each item over with its own ``call_soon_threadsafe`` cost about half the
        gateway's CPU under 16 streams (a self-pipe write and an epoll wakeup per frame).
        """
        if self._token is None or self._nursery is None:
            raise RuntimeError(f"{self.name} is not running")
        bridged: BatchedStream[T] = BatchedStream(asyncio.get_running_loop(), self)
        nursery = self._nursery
        self._schedule(lambda: nursery.start_soon(bridged.run_in_trio, factory, args))
        return bridged


class BatchedStream(Generic[T]):
    """The asyncio end of :meth:`TrioThread.stream`: an async iterator fed in batches from trio.

    ``ready_nowait()`` hands over every item already delivered without waiting, so a consumer that
    can use several at once (the gateway writes the SSE events of all frames in hand in one write)
    takes them in bulk. Closing it (or cancelling the consumer) cancels the trio task.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, thread: TrioThread[Any]) -> None:
        self._loop = loop
        self._thread = thread
        self._items: deque[T] = deque()
        """Written by the trio thread, read by asyncio: deque append and popleft are atomic."""
        self._end: tuple[int, BaseException | None] | None = None
        self._wakeup_pending = False
        self._waiter: asyncio.Future[None] | None = None
        self._scope = trio.CancelScope()
        self._closed = False
        self._room: trio.Event | None = None
        """Set (from asyncio, through the trio token) when a full buffer has room again."""
        self._room_asked: trio.Event | None = None
        self.wakeups = 0
        """Wakeups posted to the asyncio loop (for tests and benchmarks)."""

    # -- trio side -------------------------------------------------------------------------------

    async def run_in_trio(self, factory: Callable[..., AsyncGenerator[T, None]], args: tuple[Any, ...]) -> None:
        """The trio task: iterate ``factory(*args)`` into the buffer, then record how it ended."""
        end: tuple[int, BaseException | None] = (_END, None)
        try:
            with self._scope:
                async with aclosing(factory(*args)) as items:
                    async for item in items:
                        self._items.append(item)
                        self._wake()
                        if len(self._items) >= BUFFER_LIMIT:
                            await self._wait_for_room()
        except Exception as exc:  # noqa: BLE001 - re-raised on the asyncio side
            end = (_ERROR, exc)
        self._end = end
        self._wake()

    async def _wait_for_room(self) -> None:
        """Hold the producer while the asyncio side has :data:`BUFFER_LIMIT` items unread.

        A node that sends faster than the client reads is then held back by the stream's flow
        control instead of filling the gateway's memory.
        """
        room = self._room = trio.Event()
        if len(self._items) >= BUFFER_LIMIT:  # checked after publishing the event: no lost signal
            await room.wait()

    def _wake(self) -> None:
        # The item is appended before the flag is read, and the asyncio side clears the flag
        # before it drains, so an item never waits for a wakeup that was skipped.
        if self._wakeup_pending:
            return
        self._wakeup_pending = True
        self.wakeups += 1
        _post(self._loop, self._woken)

    # -- asyncio side ----------------------------------------------------------------------------

    def _taken(self) -> None:
        """After the asyncio side took items: let a held producer go on once half the buffer is free."""
        room = self._room
        if room is not None and room is not self._room_asked and len(self._items) <= BUFFER_LIMIT // 2:
            self._room_asked = room
            with suppress(RuntimeError, trio.RunFinishedError):
                self._thread._schedule(room.set)

    def _woken(self) -> None:
        self._wakeup_pending = False
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def __aiter__(self) -> BatchedStream[T]:
        return self

    async def __anext__(self) -> T:
        while True:
            if self._items:
                item = self._items.popleft()
                if self._room is not None:
                    self._taken()
                return item
            end = self._end
            if end is not None and not self._items:
                if end[0] == _ERROR and end[1] is not None:
                    self._end = (_END, None)
                    raise end[1]
                raise StopAsyncIteration
            if self._closed:
                raise StopAsyncIteration
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def ready_nowait(self) -> list[T]:
        """Every item already delivered, without waiting (possibly none)."""
        items = self._items
        out = []
        while items:
            out.append(items.popleft())
        if self._room is not None:
            self._taken()
        return out

    async def aclose(self) -> None:
        """Stop the trio task (its generator is closed there); idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._end is None:
            self._thread._soft_cancel(self._scope)


def _leaf(exc: BaseException | None) -> BaseException | None:
    """The single exception inside nested one-member exception groups (trio nurseries wrap errors)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _post(loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], *args: Any) -> None:
    """Schedule ``fn(*args)`` on the asyncio loop; a closed loop means nobody is listening."""
    with suppress(RuntimeError):
        loop.call_soon_threadsafe(fn, *args)
