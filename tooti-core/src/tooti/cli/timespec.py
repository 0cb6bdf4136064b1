"""Times on the command line: ``2026-12-01``, ``2026-12-01T12:00``, or a span like ``30d`` / ``12h`` / ``15m``."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Annotated

import typer

__all__ = ["SinceOption", "parse_since", "parse_time"]

SinceOption = Annotated[str | None, typer.Option(help="From this time: a span back (24h, 7d) or a date.")]

_SPAN = re.compile(r"^(?P<n>\d+(?:\.\d+)?)(?P<unit>[smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_time(text: str, *, future: bool) -> float:
    """Unix seconds for ``text``: an ISO date/time (UTC unless it says otherwise) or a span from now.

    Args:
        text: the option's value.
        future: a span counts forward (``--expires 30d``) instead of back (``--since 24h``).

    Raises:
        ValueError: neither form; the message shows both.
    """
    span = _SPAN.match(text.strip())
    if span:
        seconds = float(span.group("n")) * _UNIT_S[span.group("unit")]
        return time.time() + seconds if future else time.time() - seconds
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is neither a span like 30d, 12h, 15m nor a date like 2026-12-01T12:00") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def parse_since(since: str | None) -> float | None:
    """The ``--since`` option as Unix seconds (``None`` without one); exits naming the option when invalid."""
    if not since:
        return None
    try:
        return parse_time(since, future=False)
    except ValueError as exc:
        from tooti.cli._common import fail

        fail(f"--since: {exc}")
