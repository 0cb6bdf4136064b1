"""Signing a usage receipt for each answered request whose gateway asks for one.

:func:`with_receipt` wraps the handler's frames: it passes every frame through unchanged, notes
when the first answer frame left and the usage the backend reported, and just before ``Done``
inserts a :class:`~tooti.wire.receipt.ReceiptFrame` signed with the node's libp2p Ed25519 key. A
request that fails (error frame) gets no receipt: there is nothing to be paid for.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from tooti._aio import closing_iter
from tooti.wire.infer import ChunkFrame, Done, ResultFrame, UsageFrame
from tooti.wire.receipt import NodeReceipt, ReceiptFrame, request_hash, signing_bytes

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator

    from libp2p.crypto.keys import KeyPair

    from tooti.wire.infer import InferRequest, ResponseFrame

__all__ = ["sign_receipt", "with_receipt"]


def sign_receipt(
    key_pair: KeyPair,
    peer_id: str,
    request: InferRequest,
    usage: UsageFrame | None,
    ttft_ms: float | None,
    duration_ms: float,
) -> ReceiptFrame:
    """The signed receipt of ``request`` (token counts 0 when the backend reported none)."""
    receipt = NodeReceipt(
        request=request_hash(request.request_id),
        model=request.model,
        prompt_tokens=usage.prompt_tokens if usage is not None else 0,
        completion_tokens=usage.completion_tokens if usage is not None else 0,
        ttft_ms=ttft_ms,
        duration_ms=duration_ms,
        node=peer_id,
        at=time.time(),
    )
    return ReceiptFrame(receipt=receipt, signature=key_pair.private_key.sign(signing_bytes(receipt)))


async def with_receipt(
    frames: AsyncIterator[ResponseFrame], request: InferRequest, key_pair: KeyPair, peer_id: str
) -> AsyncGenerator[ResponseFrame, None]:
    """``frames`` with a signed receipt before ``Done``."""
    started = time.perf_counter()
    first: float | None = None
    usage: UsageFrame | None = None
    async with closing_iter(frames) as inner:
        async for frame in inner:
            if first is None and isinstance(frame, ChunkFrame | ResultFrame):
                first = time.perf_counter()
            elif isinstance(frame, UsageFrame):
                usage = frame
            elif isinstance(frame, Done):
                now = time.perf_counter()
                ttft = (first - started) * 1000.0 if first is not None else None
                yield sign_receipt(key_pair, peer_id, request, usage, ttft, (now - started) * 1000.0)
            yield frame
