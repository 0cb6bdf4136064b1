"""Receipts with real libp2p Ed25519 keys: node signs, gateway checks and countersigns, any edited byte fails."""

from __future__ import annotations

import pytest

from tooti.accounting.receipts import (
    GatewayCounts,
    ReceiptError,
    check_node_receipt,
    countersign,
    encode,
    verify_line,
)
from tooti.p2p.identity import generate_identity, peer_id_of
from tooti.wire.receipt import NodeReceipt, request_hash, signing_bytes


@pytest.fixture(scope="module")
def keys():
    return generate_identity(), generate_identity(), generate_identity()


def _signed(node_key, *, request_id="req-1", completion=4):
    receipt = NodeReceipt(
        request=request_hash(request_id),
        model="m",
        prompt_tokens=3,
        completion_tokens=completion,
        ttft_ms=12.5,
        duration_ms=40.0,
        node=peer_id_of(node_key),
        at=1.8e9,
    )
    return receipt, node_key.private_key.sign(signing_bytes(receipt))


def test_honest_receipt_has_no_flags_and_its_line_verifies(keys):
    node, gateway, _ = keys
    receipt, sig = _signed(node)
    counts = GatewayCounts(prompt_tokens=3, completion_tokens=4, token_chunks=4)
    flags = check_node_receipt(receipt, sig, peer_id=peer_id_of(node), request_id="req-1", model="m", counts=counts)
    assert flags == []
    line = encode(countersign(receipt, sig, counts, flags, gateway))
    back = verify_line(line)
    assert back.receipt == receipt
    assert back.gateway == peer_id_of(gateway)


def test_every_single_byte_change_is_rejected(keys):
    node, gateway, _ = keys
    receipt, sig = _signed(node)
    counts = GatewayCounts(prompt_tokens=3, completion_tokens=4, token_chunks=None)
    line = encode(countersign(receipt, sig, counts, [], gateway))
    accepted = []
    for i in range(len(line)):
        for replacement in {line[i] ^ 1, ord("A") if line[i] != ord("A") else ord("B")}:
            edited = line[:i] + bytes([replacement]) + line[i + 1 :]
            try:
                verify_line(edited)
            except ReceiptError:
                continue
            accepted.append((i, chr(line[i]), chr(replacement)))
    assert accepted == []


def test_disagreements_are_flagged(keys):
    node, _, impostor = keys
    receipt, sig = _signed(node, completion=9)
    counts = GatewayCounts(prompt_tokens=3, completion_tokens=4, token_chunks=12)
    flags = check_node_receipt(receipt, sig, peer_id=peer_id_of(node), request_id="other", model="n", counts=counts)
    assert set(flags) == {
        "wrong_request",
        "wrong_model",
        "tokens_differ_from_usage",
        "fewer_tokens_than_streamed_chunks",
    }
    # A receipt signed by another key than the one it names, from a node that did not serve.
    forged = impostor.private_key.sign(signing_bytes(receipt))
    flags = check_node_receipt(
        receipt,
        forged,
        peer_id=peer_id_of(impostor),
        request_id="req-1",
        model="m",
        counts=GatewayCounts(prompt_tokens=3, completion_tokens=9, token_chunks=None),
    )
    assert flags == ["signer_not_serving_node", "bad_node_signature"]


def test_an_unbounded_receipt_from_a_node_is_a_malformed_frame(keys):
    import msgspec

    from tooti.p2p.framing import FrameError, decode_response
    from tooti.wire.receipt import ReceiptFrame

    node, _, _ = keys
    receipt, sig = _signed(node)
    fine = msgspec.msgpack.encode(ReceiptFrame(receipt=receipt, signature=sig))
    assert isinstance(decode_response(fine), ReceiptFrame)
    for evil in (
        msgspec.structs.replace(receipt, model="m" * 100_000),
        msgspec.structs.replace(receipt, completion_tokens=-5),
        msgspec.structs.replace(receipt, node="x" * 10_000),
    ):
        with pytest.raises(FrameError):
            decode_response(msgspec.msgpack.encode(ReceiptFrame(receipt=evil, signature=sig)))
