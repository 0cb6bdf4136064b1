"""Signing a usage receipt for each answered request whose gateway asks for one.

:class:`ReceiptTally` is asked by the node's handler about every frame it sends: it notes when the
first answer frame left and the usage the backend reported, and just before ``Done`` the handler
sends its :class:`~tooti.wire.receipt.ReceiptFrame` (committing to a hash of the answer's text,
:mod:`tooti.wire.answer_digest`) signed with the node's libp2p Ed25519 key. A
request that fails (error frame) gets no receipt: there is nothing to be paid for.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from tooti.wire.answer_digest import AnswerDigest
from tooti.wire.infer import ChunkFrame, ResultFrame, UsageFrame
from tooti.wire.receipt import NodeReceipt, ReceiptFrame, request_hash, signing_bytes

if TYPE_CHECKING:
    from libp2p.crypto.keys import KeyPair

    from tooti.wire.infer import InferRequest, ResponseFrame

__all__ = ["ReceiptTally", "sign_receipt"]


def sign_receipt(
    key_pair: KeyPair,
    peer_id: str,
    request: InferRequest,
    usage: UsageFrame | None,
    ttft_ms: float | None,
    duration_ms: float,
    answer: str | None = None,
) -> ReceiptFrame:
    """The signed receipt of ``request`` (token counts 0 when the backend reported none).

    ``answer`` is the hash of the answer's text, the node's commitment to what it answered.
    """
    receipt = NodeReceipt(
        request=request_hash(request.request_id),
        model=request.model,
        prompt_tokens=usage.prompt_tokens if usage is not None else 0,
        completion_tokens=usage.completion_tokens if usage is not None else 0,
        ttft_ms=ttft_ms,
        duration_ms=duration_ms,
        node=peer_id,
        at=time.time(),
        answer=answer,
    )
    return ReceiptFrame(receipt=receipt, signature=key_pair.private_key.sign(signing_bytes(receipt)))


class ReceiptTally:
    """What one answered request's receipt commits to, noted frame by frame as the node sends them.

    The node's handler asks it about each frame it yields (:meth:`see`) and for the signed receipt
    just before ``Done`` (:meth:`receipt`): a helper of the handler's own loop, not another generator
    the frames pass through.

    Args:
        key_pair: the node's libp2p key (the receipt's signer).
        peer_id: the node's peer id.
        request: the request answered.
    """

    def __init__(self, key_pair: KeyPair, peer_id: str, request: InferRequest) -> None:
        self.key_pair, self.peer_id, self.request = key_pair, peer_id, request
        self._started = time.perf_counter()
        self._first: float | None = None
        self._usage: UsageFrame | None = None
        self._digest = AnswerDigest()

    def see(self, frame: ResponseFrame) -> None:
        """Note ``frame``: its text for the answer's hash, the first answer's time, the usage."""
        self._digest.see(frame)
        if self._first is None and isinstance(frame, ChunkFrame | ResultFrame):
            self._first = time.perf_counter()
        elif isinstance(frame, UsageFrame):
            self._usage = frame

    def receipt(self) -> ReceiptFrame:
        """The signed receipt of everything seen (call once, just before ``Done``)."""
        ttft = (self._first - self._started) * 1000.0 if self._first is not None else None
        duration = (time.perf_counter() - self._started) * 1000.0
        return sign_receipt(
            self.key_pair, self.peer_id, self.request, self._usage, ttft, duration, self._digest.hexdigest()
        )
