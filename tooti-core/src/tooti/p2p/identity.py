"""The node's Ed25519 identity: one key file, the same peer id across restarts.

py-libp2p writes a libp2p-protobuf ``PrivateKey`` whose Ed25519 data is the 32-byte seed; Go writes
seed‖public key (64 bytes). Both are read here; files are written in py-libp2p's format.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from tooti.errors import ConfigError
from tooti.wire.peer_ids import peer_id_of

if TYPE_CHECKING:
    from pathlib import Path

    from libp2p.crypto.keys import KeyPair

__all__ = ["generate_identity", "load_or_create_identity", "peer_id_of", "read_identity", "to_go_format"]

_SEED = 32
_GO_DATA = 64
_ED25519 = 1  # libp2p KeyType.Ed25519


def generate_identity() -> KeyPair:
    """Return a fresh Ed25519 key pair (not saved)."""
    from libp2p.crypto.ed25519 import create_new_key_pair

    return create_new_key_pair()


def _from_go(data: bytes) -> KeyPair:
    """Decode a Go-format Ed25519 protobuf key (64-byte seed‖pub); checks the public half."""
    from libp2p.crypto.ed25519 import create_new_key_pair
    from libp2p.crypto.pb import crypto_pb2

    message = crypto_pb2.PrivateKey()
    message.ParseFromString(data)
    if message.key_type != _ED25519 or len(message.data) != _GO_DATA:
        raise ValueError("not an Ed25519 key in libp2p protobuf format")
    key_pair = create_new_key_pair(bytes(message.data[:_SEED]))
    if key_pair.public_key.to_bytes() != bytes(message.data[_SEED:]):
        raise ValueError("Ed25519 public half does not match the seed")
    return key_pair


def to_go_format(key_pair: KeyPair) -> bytes:
    """Serialize ``key_pair`` as go-libp2p does (Ed25519 data = seed‖public key)."""
    from libp2p.crypto.pb import crypto_pb2

    seed = key_pair.private_key.to_bytes()[:_SEED]
    message = crypto_pb2.PrivateKey(key_type=crypto_pb2.KeyType.Ed25519, data=seed + key_pair.public_key.to_bytes())
    return bytes(message.SerializeToString())


def read_identity(path: Path) -> KeyPair:
    """Read a key file in py-libp2p or Go format."""
    from libp2p.crypto.keys import KeyPair
    from libp2p.crypto.serialization import deserialize_private_key

    data = path.read_bytes()
    try:
        private = deserialize_private_key(data)
        return KeyPair(private, private.get_public_key())
    except Exception:  # noqa: BLE001, S110 - not py-libp2p's format: try Go's below
        pass
    try:
        return _from_go(data)
    except Exception as exc:  # noqa: BLE001 - protobuf and key errors alike mean "not a key"
        raise ConfigError(f"identity key file {path} is not a libp2p private key: {exc}") from None


def load_or_create_identity(path: Path) -> KeyPair:
    """Load the identity at ``path``, creating it (file 0600, parent directory 0700) when missing."""
    if path.exists():
        return read_identity(path)
    from libp2p.identity_utils import save_identity

    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)  # noqa: PTH101 - mkdir's mode is masked by umask
    key_pair = generate_identity()
    save_identity(key_pair, path)
    os.chmod(path, 0o600)  # noqa: PTH101 - explicit, whatever the umask
    return key_pair
