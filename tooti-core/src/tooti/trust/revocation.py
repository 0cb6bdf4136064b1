"""The revocation list a gateway (or node) reads: certificate serials or peer ids, one per line.

A plain text file the operator distributes with the config (``tooti authority revoke`` appends to it).
It is re-read when its modification time changes, checked at most every few seconds off the request
path, so revoking a member needs no restart. Lines starting with ``#`` are comments.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["RevocationList", "append_revocation"]

log = logging.getLogger(__name__)

_MAX_ENTRIES = 100_000
_MAX_ENTRY_CHARS = 128


def _parse(text: str) -> frozenset[str]:
    entries: set[str] = set()
    for line in text.splitlines():
        item = line.split("#", 1)[0].strip()
        if item and len(item) <= _MAX_ENTRY_CHARS:
            entries.add(item)
        if len(entries) >= _MAX_ENTRIES:
            break
    return frozenset(entries)


def append_revocation(path: Path, entry: str, note: str = "") -> None:
    """Add a serial or peer id to the list (creating the file)."""
    if not entry or len(entry) > _MAX_ENTRY_CHARS or any(c.isspace() or c == "#" for c in entry):
        raise ValueError(f"not a serial or peer id: {entry!r}")
    comment = f"  # {note}" if note else ""
    with path.open("a", encoding="utf-8") as f:
        f.write(f"{entry}{comment}\n")


class RevocationList:
    """Revoked serials and peer ids, refreshed from a file when it changes.

    Args:
        path: the file; ``None`` = nothing is revoked.
        check_every_s: how often :meth:`refresh` looks at the file's modification time.
        clock: monotonic clock (tests).
    """

    def __init__(
        self, path: str | Path | None, *, check_every_s: float = 5.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.path = Path(path).expanduser() if path else None
        self.check_every_s = check_every_s
        self._clock = clock
        self._entries: frozenset[str] = frozenset()
        self._mtime: float | None = None
        self._checked = float("-inf")
        self.version = 0
        """Incremented whenever the entries change, so caches of admission verdicts can be dropped."""
        self.refresh(force=True)

    def refresh(self, *, force: bool = False) -> None:
        """Re-read the file if it changed (cheap when called often: one ``stat`` every few seconds)."""
        if self.path is None:
            return
        now = self._clock()
        if not force and now - self._checked < self.check_every_s:
            return
        self._checked = now
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            mtime = None
        if mtime == self._mtime and not force:
            return
        self._mtime = mtime
        try:
            entries = _parse(self.path.read_text(encoding="utf-8")) if mtime is not None else frozenset()
        except OSError as exc:
            log.warning("cannot read the revocation list %s: %s (keeping the previous one)", self.path, exc)
            return
        if entries != self._entries:
            self._entries = entries
            self.version += 1

    def revoked(self, *names: str) -> bool:
        """Whether any of ``names`` (a serial, a peer id) is on the list."""
        return any(n in self._entries for n in names)

    def __len__(self) -> int:
        return len(self._entries)
