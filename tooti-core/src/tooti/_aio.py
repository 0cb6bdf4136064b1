"""Small event-loop agnostic helpers for async iterators."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator

__all__ = ["closing_iter"]

T = TypeVar("T")


@asynccontextmanager
async def closing_iter(iterator: AsyncIterator[T]) -> AsyncGenerator[AsyncIterator[T], None]:
    """Like :func:`contextlib.aclosing` for any async iterator: calls ``aclose()`` when it has one.

    Closing promptly matters: a backend stream left to the garbage collector keeps generating.
    """
    try:
        yield iterator
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()
