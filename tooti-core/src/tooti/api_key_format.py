"""What an API key looks like and how it is hashed: one definition for the config and the store.

``gateway.api_key_hashes`` (checked by :class:`tooti.gateway.api_keys.KeyRing`) and the accounting
store's keys (``tooti keys create``) use the same form, so a key moves from one to the other
unchanged. Kept outside both packages: the store must not import the gateway package (its
``__init__`` builds the app, which imports the store).
"""

from __future__ import annotations

import hashlib
import secrets

__all__ = ["HASH_PREFIX", "KEY_PREFIX", "generate_key", "hash_key"]

KEY_PREFIX = "tk_"
"""Every key tooti makes starts with this."""
HASH_PREFIX = "sha256:"
"""Every stored key hash starts with this."""


def generate_key() -> str:
    """A new random API key: ``tk_`` + 32 url-safe random bytes."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """``sha256:<hex>`` of ``key``: the only form in which keys are stored."""
    return HASH_PREFIX + hashlib.sha256(key.encode("utf-8")).hexdigest()
