"""The text of an answer as its frames carry it, and the hash a node's receipt commits to.

One definition for both ends: the node hashes what it sends (:mod:`tooti.node.receipt_signer`) and
the gateway what it relayed (:mod:`tooti.trust.organic_audit`), so a signed receipt binds the node
to the exact answer a user got — before the node can learn whether that answer will be audited.
The text is the concatenated ``content`` (chat) or ``text`` (legacy completion) of choice 0; tool
calls and other choices are not part of it.
"""

from __future__ import annotations

import hashlib
from typing import Any

from tooti.wire.infer import ChunkFrame, ResponseFrame, ResultFrame

__all__ = ["AnswerDigest", "answer_hash"]

_MAX_CHARS = 1_000_000
"""Most characters kept (the hash still covers everything): a node cannot grow the gateway's memory."""


def _piece(data: dict[str, Any], streamed: bool) -> str:
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return ""
    choice = choices[0]
    message = choice.get("delta" if streamed else "message")
    if isinstance(message, dict):
        content = message.get("content")
        return content if isinstance(content, str) else ""
    text = choice.get("text")
    return text if isinstance(text, str) else ""


def answer_hash(text: str) -> str:
    """sha256 hex of an answer's text."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class AnswerDigest:
    """Collects an answer's text frame by frame; :meth:`hexdigest` is what a receipt commits to."""

    __slots__ = ("_hash", "_parts", "_size")

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._parts: list[str] = []
        self._size = 0

    def see(self, frame: ResponseFrame) -> None:
        """Add the text a chunk or result frame carries (other frames carry none)."""
        if isinstance(frame, ChunkFrame | ResultFrame):
            piece = _piece(frame.data, isinstance(frame, ChunkFrame))
            if piece:
                self._hash.update(piece.encode("utf-8", "surrogatepass"))
                if self._size < _MAX_CHARS:
                    self._parts.append(piece)
                    self._size += len(piece)

    def text(self) -> str:
        """The answer's text (cut at a million characters)."""
        return "".join(self._parts)

    def hexdigest(self) -> str:
        """sha256 hex of the whole text."""
        return self._hash.hexdigest()
