"""API keys: generating them, hashing them for the config, checking them in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["KeyRing", "generate_key", "hash_key"]

_PREFIX = "sha256:"


def generate_key() -> str:
    """A new random API key (``tk_`` + 32 url-safe random bytes)."""
    return "tk_" + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """The ``sha256:<hex>`` form stored in ``gateway.api_key_hashes``."""
    return _PREFIX + hashlib.sha256(key.encode("utf-8")).hexdigest()


class KeyRing:
    """The accepted key hashes; only hashes are kept, never the keys."""

    def __init__(self, hashes: Iterable[str]) -> None:
        self._digests = [bytes.fromhex(h.removeprefix(_PREFIX)) for h in hashes]

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
        return _PREFIX + digest.hex() if ok else None
