"""The gateway's in-memory copy of the store's usable keys, so checking a key costs no database hop.

A background thread (:mod:`tooti.accounting.worker`) polls :meth:`AccountingStore.keys_version`
every ``gateway.store.key_refresh_sec`` and reloads only when it changed, so a key created,
rotated or revoked on any gateway or by the CLI reaches every gateway within that interval. The
lookup is a dict access by the key's sha256: the hash of a secret reveals nothing through timing
about any stored hash a caller could use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tooti.accounting.store import hash_api_key

if TYPE_CHECKING:
    from tooti.accounting.records import KeyRecord
    from tooti.accounting.store import AccountingStore

__all__ = ["KeyCache"]


class KeyCache:
    """Usable keys by hash; replaced as a whole on refresh (readers never see a half-loaded map)."""

    def __init__(self) -> None:
        self._by_hash: dict[str, KeyRecord] = {}
        self._version: tuple[int, float, float] | None = None

    def __len__(self) -> int:
        return len(self._by_hash)

    def lookup(self, key: str) -> KeyRecord | None:
        """The record of ``key`` if the store knows it and has not revoked it (expiry is the caller's check)."""
        return self._by_hash.get(hash_api_key(key))

    def refresh(self, store: AccountingStore) -> bool:
        """Reload from ``store`` if its keys changed since the last refresh; return whether it did."""
        version = store.keys_version()
        if version == self._version:
            return False
        self._by_hash = store.usable_keys()
        self._version = version
        return True
