"""The signed usage receipt a node sends before ``Done`` when the gateway asks for one.

The node signs :func:`signing_bytes` of a :class:`NodeReceipt` — the request id's hash (not the id
itself), the model, its token counts and timings, its own peer id, the time, a hash of the answer's
text — with its libp2p
Ed25519 identity key. Anyone holding the receipt can check it against the peer id alone (Ed25519
peer ids embed the public key), so an operator can show it to be paid, and nobody can forge or alter
one without the node's key.
"""

from __future__ import annotations

import hashlib
from typing import Annotated

import msgspec
from msgspec import Meta

__all__ = ["NodeReceipt", "ReceiptFrame", "request_hash", "signing_bytes"]

_DOMAIN = b"tooti/receipt/1\n"


_Tokens = Annotated[int, Meta(ge=0, le=2**31)]
_Millis = Annotated[float, Meta(ge=0, le=1e9)]


class NodeReceipt(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    """What the node attests about one answered request (bounded: a peer's words are never trusted unbounded)."""

    request: Annotated[str, Meta(min_length=64, max_length=64)]
    """sha256 hex of the gateway's request id."""
    model: Annotated[str, Meta(max_length=256)]
    prompt_tokens: _Tokens
    completion_tokens: _Tokens
    ttft_ms: _Millis | None
    duration_ms: _Millis
    node: Annotated[str, Meta(max_length=128)]
    """The signer's peer id."""
    at: Annotated[float, Meta(ge=0, le=1e11)]
    """Unix seconds when the node finished."""
    answer: Annotated[str, Meta(min_length=64, max_length=64)] | None = None
    """sha256 hex of the answer's text (:mod:`tooti.wire.answer_digest`): the node's commitment to
    what it answered, made before it can know whether the answer is audited. Omitted (and absent
    from the signed bytes) by nodes that predate it."""


class ReceiptFrame(msgspec.Struct, kw_only=True, tag="receipt", tag_field="t"):
    """A :class:`NodeReceipt` and the node's Ed25519 signature over :func:`signing_bytes`."""

    receipt: NodeReceipt
    signature: Annotated[bytes, Meta(max_length=64)]


def request_hash(request_id: str) -> str:
    """sha256 hex of a request id (receipts never carry the id itself)."""
    return hashlib.sha256(request_id.encode("utf-8")).hexdigest()


def signing_bytes(receipt: NodeReceipt) -> bytes:
    """The exact bytes a node signs: a domain prefix and the receipt's canonical JSON."""
    return _DOMAIN + msgspec.json.encode(receipt)
