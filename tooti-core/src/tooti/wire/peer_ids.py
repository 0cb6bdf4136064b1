"""Peer ids of Ed25519 identities: what signs heartbeats, receipts and countersignatures.

Below both ``p2p`` (identities of hosts) and ``accounting`` (the gateway's countersignature names
its signer), so that accounting never imports the p2p runtime.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from libp2p.crypto.keys import KeyPair

__all__ = ["peer_id_of"]


def peer_id_of(key_pair: KeyPair) -> str:
    """Return the base58 peer id (``12D3KooW…``) of ``key_pair``."""
    from libp2p.peer.id import ID

    return str(ID.from_pubkey(key_pair.public_key).to_base58())
