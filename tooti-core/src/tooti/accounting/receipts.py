"""Verifying, countersigning, exporting and checking usage receipts — what an operator is paid from.

The gateway checks a node's :class:`~tooti.wire.receipt.NodeReceipt` (signature by the peer that
served, request hash of this request, model), compares its counts with the usage the gateway
relayed and the token-carrying chunks it counted itself, and countersigns the lot with its own
libp2p key. Disagreements are written into the receipt as ``flags`` (and the usage row's
``receipt_mismatch``), never resolved silently.

An exported file has one countersigned receipt per line in canonical JSON. :func:`verify_line`
accepts a line only if it is byte for byte the canonical encoding of what it parses to and both
signatures hold, so changing any single byte of a line makes it fail.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from tooti.wire.receipt import NodeReceipt, request_hash, signing_bytes

if TYPE_CHECKING:
    from libp2p.crypto.keys import KeyPair, PublicKey

__all__ = [
    "Countersigned",
    "GatewayCounts",
    "ReceiptError",
    "check_node_receipt",
    "countersign",
    "encode",
    "public_key_of",
    "verify_line",
]

_DOMAIN = b"tooti/countersigned-receipt/1\n"


class ReceiptError(ValueError):
    """A receipt that does not verify; the message says which check failed."""


class GatewayCounts(msgspec.Struct, kw_only=True, frozen=True):
    """What the gateway itself saw of the request."""

    prompt_tokens: int | None
    completion_tokens: int | None
    """From the node's usage frame, as the gateway relayed it (``None``: the node sent none)."""
    token_chunks: int | None
    """Streamed chunks that carried generated text, counted by the gateway (``None``: not streamed)."""


class _Unsigned(msgspec.Struct, kw_only=True, frozen=True):
    receipt: NodeReceipt
    node_sig: str
    gateway: str
    counts: GatewayCounts
    flags: list[str]


class Countersigned(msgspec.Struct, kw_only=True, frozen=True):
    """A node receipt with the gateway's view and signature; stored in ``usage.receipt`` and exported."""

    receipt: NodeReceipt
    node_sig: str
    """The node's signature, hex."""
    gateway: str
    """The countersigning gateway's peer id."""
    counts: GatewayCounts
    flags: list[str]
    """Disagreements found when the gateway checked the receipt; empty when all agreed."""
    gateway_sig: str
    """The gateway's signature (hex) over the canonical JSON of every field above."""

    def unsigned(self) -> _Unsigned:
        """Everything the gateway's signature covers."""
        return _Unsigned(
            receipt=self.receipt, node_sig=self.node_sig, gateway=self.gateway, counts=self.counts, flags=self.flags
        )


def public_key_of(peer_id: str) -> PublicKey:
    """The Ed25519 public key embedded in a peer id; raises :class:`ReceiptError` when there is none."""
    from libp2p.peer.id import ID

    try:
        key = ID.from_base58(peer_id).extract_public_key()
    except Exception as exc:  # noqa: BLE001 - base58/multihash errors all mean "not a usable peer id"
        raise ReceiptError(f"not a peer id: {peer_id[:60]!r} ({type(exc).__name__})") from None
    if key is None:
        raise ReceiptError(f"peer id {peer_id[:60]!r} does not embed its public key")
    return key


def _verify(peer_id: str, data: bytes, signature: bytes) -> bool:
    try:
        return bool(public_key_of(peer_id).verify(data, signature))
    except ReceiptError:
        raise
    except Exception:  # noqa: BLE001 - malformed signatures raise inside the crypto library
        return False


def check_node_receipt(
    receipt: NodeReceipt, signature: bytes, *, peer_id: str, request_id: str, model: str, counts: GatewayCounts
) -> list[str]:
    """Every way ``receipt`` disagrees with what the gateway knows (empty list: it all agrees)."""
    flags: list[str] = []
    if receipt.node != peer_id:
        flags.append("signer_not_serving_node")
    if not _verify(receipt.node, signing_bytes(receipt), signature):
        flags.append("bad_node_signature")
    if receipt.request != request_hash(request_id):
        flags.append("wrong_request")
    if receipt.model != model:
        flags.append("wrong_model")
    if counts.prompt_tokens is None or counts.completion_tokens is None:
        flags.append("no_usage_frame")
    elif (receipt.prompt_tokens, receipt.completion_tokens) != (counts.prompt_tokens, counts.completion_tokens):
        flags.append("tokens_differ_from_usage")
    if counts.token_chunks is not None and receipt.completion_tokens < counts.token_chunks:
        flags.append("fewer_tokens_than_streamed_chunks")
    return flags


def countersign(
    receipt: NodeReceipt, node_sig: bytes, counts: GatewayCounts, flags: list[str], gateway_key: KeyPair
) -> Countersigned:
    """Sign the receipt, the gateway's counts and the flags with the gateway's key."""
    from tooti.wire.peer_ids import peer_id_of

    gateway = peer_id_of(gateway_key)
    unsigned = _Unsigned(receipt=receipt, node_sig=node_sig.hex(), gateway=gateway, counts=counts, flags=flags)
    sig = gateway_key.private_key.sign(_DOMAIN + msgspec.json.encode(unsigned))
    return Countersigned(
        receipt=receipt, node_sig=node_sig.hex(), gateway=gateway, counts=counts, flags=flags, gateway_sig=sig.hex()
    )


def encode(receipt: Countersigned) -> bytes:
    """The canonical one-line JSON of a countersigned receipt."""
    return msgspec.json.encode(receipt)


_decoder = msgspec.json.Decoder(Countersigned)


def verify_line(line: bytes) -> Countersigned:
    """Parse and check one exported line; raise :class:`ReceiptError` saying why it is not valid."""
    try:
        receipt = _decoder.decode(line)
    except msgspec.DecodeError as exc:
        raise ReceiptError(f"not a receipt: {exc}") from None
    if encode(receipt) != line:
        raise ReceiptError("not in canonical form (the line was edited)")
    try:
        node_sig = bytes.fromhex(receipt.node_sig)
        gateway_sig = bytes.fromhex(receipt.gateway_sig)
    except ValueError:
        raise ReceiptError("a signature is not hex") from None
    if (node_sig.hex(), gateway_sig.hex()) != (receipt.node_sig, receipt.gateway_sig):
        raise ReceiptError("a signature is not in lowercase hex (the line was edited)")
    if not _verify(receipt.receipt.node, signing_bytes(receipt.receipt), node_sig):
        raise ReceiptError(f"the node signature of {receipt.receipt.node} does not verify")
    if not _verify(receipt.gateway, _DOMAIN + msgspec.json.encode(receipt.unsigned()), gateway_sig):
        raise ReceiptError(f"the gateway signature of {receipt.gateway} does not verify")
    return receipt
