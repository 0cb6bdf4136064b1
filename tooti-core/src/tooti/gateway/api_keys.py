"""API keys: generating them, hashing them for the config, checking them in constant time."""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING

from tooti.api_key_format import HASH_PREFIX, generate_key, hash_key

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["KeyRing", "generate_key", "hash_key"]


class KeyRing:
    """The accepted key hashes; only hashes are kept, never the keys."""

    def __init__(self, hashes: Iterable[str]) -> None:
        self._digests = [bytes.fromhex(h.removeprefix(HASH_PREFIX)) for h in hashes]

    def __len__(self) -> int:
        return len(self._digests)

    def check(self, key: str) -> str | None:
        """The hash identifying ``key`` if it is accepted, else ``None``.

        Every stored digest is compared (no early exit) with :func:`hmac.compare_digest`, so the
        time taken says nothing about which, or how much of, a digest matched.
        """
        digest = hashlib.sha256(key.encode("utf-8")).digest()
        ok = False
        for known in self._digests:
            ok |= hmac.compare_digest(digest, known)
        return HASH_PREFIX + digest.hex() if ok else None
