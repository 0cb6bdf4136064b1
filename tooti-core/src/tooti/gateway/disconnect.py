"""Cancelling an answer when its client goes away, whole or streamed.

An ASGI app is not told that a client disconnected unless it calls ``receive()``; a handler that
awaits a whole answer never does, so a client that gave up (``curl --max-time 1``, an SDK timeout
and its retries) left the node generating every requested token, and the model server's slot busy
for seconds. :func:`unless_disconnected` watches ``receive()`` while the answer is awaited and
cancels the wait when ``http.disconnect`` arrives; the caller's cleanup then closes the node
stream, which resets it on the wire, and the node closes its request to the model server.

The streamed answer uses the same watch around its body loop (:class:`SSEStream`), in place of
Litestar's, which put an anyio task group, a second task and a cancel scope around every stream.

Both watch with plain asyncio (the gateway always runs on asyncio under uvicorn): one task waiting
on ``receive()`` that cancels the answering task once. The cleanup on that path (releasing the node
attempt) has no suspension point, so the single cancellation cannot cut it short.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, TypeVar

from litestar.response import Stream
from litestar.response.streaming import ASGIStreamingResponse

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from litestar.response.base import ASGIResponse
    from litestar.types import Receive, Send

__all__ = ["ClientDisconnected", "SSEStream", "unless_disconnected"]

T = TypeVar("T")


class ClientDisconnected(Exception):
    """The client closed the connection before its answer was ready; nobody is left to answer."""


async def unless_disconnected(receive: Callable[[], Awaitable[Any]], work: Callable[[], Awaitable[T]]) -> T:
    """Await ``work()``; if the client disconnects first, cancel it and raise :class:`ClientDisconnected`.

    Call only after the request body has been read: the watcher consumes ASGI messages.
    """
    task = asyncio.current_task()
    if task is None:
        raise RuntimeError("unless_disconnected must run in an asyncio task")
    gone = False

    async def watch() -> None:
        nonlocal gone
        try:
            while (await receive()).get("type") != "http.disconnect":
                pass
        except Exception:  # noqa: BLE001 - a broken receive channel is not a disconnect to act on
            return
        gone = True
        task.cancel()

    watcher = asyncio.ensure_future(watch())
    try:
        return await work()
    except asyncio.CancelledError:
        if gone and task.uncancel() == 0:
            raise ClientDisconnected from None
        raise
    finally:
        watcher.cancel()


class _SSEBody(ASGIStreamingResponse):
    """Litestar's streaming response with the body loop run in the request's own task."""

    __slots__ = ()

    async def send_body(self, send: Send, receive: Receive) -> None:
        try:
            await unless_disconnected(receive, lambda: self._stream(send))
        except ClientDisconnected:
            return  # the relay's cleanup already ran; the background task releases the attempt


class SSEStream(Stream):
    """A :class:`~litestar.response.Stream` whose body loop watches for the client's disconnect itself.

    Measured per stream at c=1: the first event went out 0.4 ms after the headers with Litestar's
    task group (a second task starts on the next loop iteration), and its setup and cancellation
    cost CPU on every stream.
    """

    def to_asgi_response(self, *args: Any, **kwargs: Any) -> ASGIResponse:
        """Litestar's own streaming response, with :class:`_SSEBody`'s body loop."""
        response = super().to_asgi_response(*args, **kwargs)
        if type(response) is ASGIStreamingResponse:  # only the body loop differs; no state is added
            response.__class__ = _SSEBody
        return response
