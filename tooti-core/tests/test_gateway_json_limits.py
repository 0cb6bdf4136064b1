"""Bounds on request JSON: each breaks a real limit behind the gateway and must be a 400 naming the field."""

from __future__ import annotations

import json

import pytest

from tooti.gateway.api_errors import ApiError
from tooti.gateway.json_limits import MAX_ARRAY_ITEMS, MAX_DEPTH, MAX_STRING_CHARS, decode_object


def _body(**extra: object) -> bytes:
    return json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}], **extra}).encode()


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        (_body(seed=2**70), "seed"),
        (_body(seed=-(2**63) - 1), "seed"),
        (_body(logit_bias={"11": 2**64}), "logit_bias.11"),
        (json.dumps({"model": "m", "prompt": [1, 2, 2**70, 3]}).encode(), "prompt[2]"),
        (
            json.dumps(
                {"model": "m", "messages": [{"role": "user", "content": "x" * (MAX_STRING_CHARS + 1)}]}
            ).encode(),
            "messages[0].content",
        ),
        (_body(stop=["a"] * (MAX_ARRAY_ITEMS + 1)), "stop"),
        (
            b'{"model": "m", "x": ' + b"[" * (MAX_DEPTH + 5) + b"]" * (MAX_DEPTH + 5) + b"}",
            "x" + "[0]" * (MAX_DEPTH - 1),
        ),
        (b'{"model": "m", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}", "body"),
    ],
    ids=["int-2^70", "int-below-i64", "nested-int", "token-id", "long-string", "long-array", "deep", "very-deep"],
)
def test_out_of_bounds_is_a_400_naming_the_field(raw: bytes, param: str) -> None:
    with pytest.raises(ApiError) as err:
        decode_object(raw)
    assert err.value.status == 400
    assert err.value.param == param


def test_bounds_themselves_are_accepted() -> None:
    data = decode_object(_body(seed=2**64 - 1, n=-(2**63), stop=["a"] * 10, x=[[[1.5, None, True]]]))
    assert data["seed"] == 2**64 - 1
