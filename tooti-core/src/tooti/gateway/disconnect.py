"""Cancelling a non-streamed request when its client goes away.

An ASGI app is not told that a client disconnected unless it calls ``receive()``; a handler that
awaits a whole answer never does, so a client that gave up (``curl --max-time 1``, an SDK timeout
and its retries) left the node generating every requested token, and the model server's slot busy
for seconds. :func:`unless_disconnected` watches ``receive()`` while the answer is awaited and
cancels the wait when ``http.disconnect`` arrives; the caller's cleanup then closes the node
stream, which resets it on the wire, and the node closes its request to the model server.

(A streamed answer needs none of this: the streaming response already listens for the disconnect
and closes the relay.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

import anyio

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ["ClientDisconnected", "unless_disconnected"]

T = TypeVar("T")


class ClientDisconnected(Exception):
    """The client closed the connection before its answer was ready; nobody is left to answer."""


async def unless_disconnected(receive: Callable[[], Awaitable[Any]], work: Callable[[], Awaitable[T]]) -> T:
    """Await ``work()``; if the client disconnects first, cancel it and raise :class:`ClientDisconnected`.

    Call only after the request body has been read: the watcher consumes ASGI messages.
    """
    gone = False
    result: T | None = None
    error: Exception | None = None

    async with anyio.create_task_group() as tg:

        async def watch() -> None:
            nonlocal gone
            while True:
                message = await receive()
                if message.get("type") == "http.disconnect":
                    gone = True
                    tg.cancel_scope.cancel()
                    return

        tg.start_soon(watch)
        try:
            result = await work()
        except Exception as exc:  # noqa: BLE001 - re-raised below as itself, not in an exception group
            error = exc
        tg.cancel_scope.cancel()
    if gone:
        raise ClientDisconnected
    if error is not None:
        raise error
    return result  # type: ignore[return-value]
