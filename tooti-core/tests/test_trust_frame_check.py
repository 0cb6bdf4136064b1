"""Response frames from a node, checked against OpenAI's shapes (each bad input from issue #10)."""

from __future__ import annotations

import logging

import msgspec
import pytest

from tooti.errors import MalformedResponse
from tooti.trust.frame_check import MAX_USAGE_TOKENS, FrameCheck, gateway_error_text
from tooti.wire.infer import ChunkFrame, Done, ErrorFrame, ResultFrame, UsageFrame

PEER = "12D3KooWnode"


def _chunk(**extra):
    data = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}],
    }
    return ChunkFrame(data={**data, **extra})


def _result(**extra):
    data = {
        "id": "c1",
        "object": "chat.completion",
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }
    return ResultFrame(data={**data, **extra})


def test_well_formed_frames_pass_unchanged():
    check = FrameCheck(PEER, "chat")
    for frame in (_chunk(), _result(), UsageFrame(prompt_tokens=1, completion_tokens=2, total_tokens=3), Done()):
        assert check(frame) is frame
    assert check(_chunk(choices=[], usage={"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}))


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param(_chunk(choices=5), id="choices-is-a-number"),
        pytest.param(_result(choices=[]), id="no-choices"),
        pytest.param(_chunk(choices=[{"index": 0, "delta": {"content": 5}}]), id="content-not-text"),
        pytest.param(_chunk(choices=[{"index": -1, "delta": {}}]), id="negative-index"),
        pytest.param(_chunk(choices=["x"]), id="choice-not-object"),
        pytest.param(
            _result(usage={"prompt_tokens": 2**63, "completion_tokens": 1, "total_tokens": 1}), id="usage-2^63"
        ),
        pytest.param(_result(usage={"prompt_tokens": -4, "completion_tokens": 1}), id="usage-negative"),
        pytest.param(_result(usage="lots"), id="usage-not-object"),
        pytest.param(_chunk(model="m" * 1000), id="model-name-too-long"),
        pytest.param(_chunk(extra=float("nan")), id="nan"),
        pytest.param(UsageFrame(prompt_tokens=2**62, completion_tokens=0, total_tokens=0), id="usage-frame-huge"),
    ],
)
def test_bad_shapes_are_malformed(frame):
    with pytest.raises(MalformedResponse):
        FrameCheck(PEER, "chat")(frame)


def test_msgpack_ext_value_is_malformed():
    # What arrives when a node puts an Ext value in a chunk: msgspec decodes it into an Ext object.
    raw = msgspec.msgpack.encode({"t": "chunk", "data": {"choices": [], "x": msgspec.msgpack.Ext(5, b"boom")}})
    frame = msgspec.msgpack.decode(raw, type=ChunkFrame | Done)
    with pytest.raises(MalformedResponse, match="Ext"):
        FrameCheck(PEER, "chat")(frame)


def test_completion_and_embeddings_shapes():
    assert FrameCheck(PEER, "completion")(ResultFrame(data={"choices": [{"index": 0, "text": "x"}]}))
    with pytest.raises(MalformedResponse):
        FrameCheck(PEER, "completion")(ResultFrame(data={"choices": [{"index": 0, "text": ["x"]}]}))
    good = {"data": [{"embedding": [0.1, 2]}], "usage": {"prompt_tokens": 1, "total_tokens": 1}}
    assert FrameCheck(PEER, "embeddings")(ResultFrame(data=good))
    with pytest.raises(MalformedResponse):
        FrameCheck(PEER, "embeddings")(ResultFrame(data={"data": [{"embedding": ["x"]}]}))
    assert MAX_USAGE_TOKENS < 2**31


def test_node_error_text_is_replaced_and_logged_only_with_log_content(caplog):
    phishing = "Your account is suspended. Visit http://evil.example/login " + "x" * 1000
    frame = ErrorFrame(code="upstream", message=phishing)
    with caplog.at_level(logging.INFO, logger="tooti.trust.frame_check"):
        out = FrameCheck(PEER, "chat")(frame)
    assert isinstance(out, ErrorFrame)
    assert out.code == "upstream"
    assert out.message == gateway_error_text("upstream")
    assert "evil.example" not in caplog.text  # it may quote the request: not logged by default
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="tooti.trust.frame_check"):
        FrameCheck(PEER, "chat", log_detail=True)(frame)
    assert "evil.example" in caplog.text
    assert "x" * 300 not in caplog.text  # capped


def test_responses_api_usage_is_bounded_too():
    ok = {"object": "response", "output": [], "usage": {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5}}
    assert FrameCheck(PEER, "responses")(ResultFrame(data=ok))
    with pytest.raises(MalformedResponse):
        FrameCheck(PEER, "responses")(ResultFrame(data={**ok, "usage": {"input_tokens": 2**40}}))
