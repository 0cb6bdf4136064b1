"""Model-server refusals -> typed errors -> wire frame -> the gateway's OpenAI error (issue 24, item 1).

The bodies are the ones the real servers send: llama.cpp's were captured from xllamacpp with SmolLM2
(the live tests in tests/test_error_faithful_llamacpp.py hit the real server), vLLM's and TGI's
sentences are those their servers write. A lying node's typed detail is checked here too.
"""

from __future__ import annotations

import msgspec
import pytest

from tooti.backends.http_errors import error_for_payload, error_for_status
from tooti.errors import BackendBadRequest, ContextLengthExceeded, ModelNotFound, UpstreamError
from tooti.gateway.api_errors import from_backend_error
from tooti.trust.frame_check import node_error
from tooti.wire.error_codes import error_to_frame
from tooti.wire.infer import ErrorFrame, ResponseFrame


def _json(payload: object) -> bytes:
    return msgspec.json.encode(payload)


def _through_the_wire(error: BackendBadRequest | UpstreamError | ModelNotFound) -> dict[str, object]:
    """What a client gets for ``error`` raised on a node: frame, msgpack, gateway check, rendering."""
    frame = msgspec.msgpack.decode(msgspec.msgpack.encode(error_to_frame(error)), type=ResponseFrame)
    assert isinstance(frame, ErrorFrame)
    api = from_backend_error(node_error(frame))
    return {"status": api.status, **api.body()["error"]}


LLAMA_CHAT = {
    "error": {
        "code": 400,
        "message": "request (831 tokens) exceeds the available context size (256 tokens), try increasing it",
        "type": "exceed_context_size_error",
        "n_prompt_tokens": 831,
        "n_ctx": 256,
    }
}
LLAMA_EMBEDDINGS = {
    "error": {
        "code": 500,
        "message": "input (801 tokens) is too large to process. increase the physical batch size "
        "(current batch size: 256)",
        "type": "server_error",
    }
}


@pytest.mark.parametrize(
    ("status", "payload", "prompt", "limit"),
    [
        (400, LLAMA_CHAT, 831, 256),
        (500, LLAMA_EMBEDDINGS, 801, 256),
        (
            400,
            {
                "error": {
                    "message": "This model's maximum context length is 2048 tokens. However, you requested 3000 "
                    "tokens (2900 in the messages, 100 in the completion). Please reduce the length of the messages "
                    "or completion.",
                    "type": "BadRequestError",
                    "param": None,
                    "code": 400,
                }
            },
            2900,
            2048,
        ),
        (
            400,
            {
                "error": {
                    "message": "'max_tokens' or 'max_completion_tokens' is too large: 100. This model's maximum "
                    "context length is 2048 tokens and your request has 2000 input tokens (100 > 2048 - 2000).",
                    "type": "BadRequestError",
                    "param": "input_tokens",
                    "code": 400,
                }
            },
            2000,
            2048,
        ),
        (
            400,
            {
                "error": {
                    "message": "This model's maximum context length is 8192 tokens. However, your messages resulted "
                    "in 9000 tokens. Please reduce the length of the messages.",
                    "type": "invalid_request_error",
                    "param": "messages",
                    "code": "context_length_exceeded",
                }
            },
            9000,
            8192,
        ),
        (
            422,
            {"error": "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 2048. "
             "Given: 2000 `inputs` tokens and 100 `max_new_tokens`"},
            2000,
            2048,
        ),
        (400, {"error": {"message": "too long", "code": "context_length_exceeded"}}, None, None),
        (400, {"error": "the input length exceeds the context length"}, None, None),
    ],
)  # fmt: skip
def test_each_dialects_context_refusal_becomes_context_length_exceeded(status, payload, prompt, limit) -> None:
    error = error_for_status(status, _json(payload), server="model server")
    assert isinstance(error, ContextLengthExceeded)
    assert (error.prompt_tokens, error.context_length) == (prompt, limit)
    out = _through_the_wire(error)
    assert out["status"] == 400
    assert out["code"] == "context_length_exceeded"
    assert out["type"] == "invalid_request_error"
    text = str(out["message"])
    for n in (prompt, limit):
        if n is not None:
            assert str(n) in text
    assert "try increasing it" not in text
    assert "Please reduce" not in text  # the server's sentence is never relayed


def test_a_context_refusal_inside_a_stream_is_classified_too() -> None:
    error = error_for_payload(LLAMA_CHAT)
    assert isinstance(error, ContextLengthExceeded)
    assert (error.prompt_tokens, error.context_length) == (831, 256)


@pytest.mark.parametrize(
    ("message", "param", "code"),
    [
        ("Field 'temperature': [json.exception.type_error.302] type must be number, but is string", "temperature",
         "invalid_value"),
        ("Field 'n': Value must be between 1 <= value <= 1, but got 3", "n", "invalid_value"),
        ("Expected 'messages' to be an array", "messages", "invalid_value"),
        ('response_format type must be one of "text" or "json_object", but got: bogus', "response_format",
         "invalid_value"),
        ("Unsupported param: tools", "tools", "unsupported_parameter"),
    ],
)  # fmt: skip
def test_llamacpp_parameter_refusals_name_the_parameter(message, param, code) -> None:
    body = {"error": {"code": 400, "message": message, "type": "invalid_request_error"}}
    out = _through_the_wire(error_for_status(400, _json(body)))
    assert out == {"status": 400, "message": out["message"], "type": "invalid_request_error", "param": param,
                   "code": code}  # fmt: skip
    assert message not in str(out["message"])
    assert f"'{param}'" in str(out["message"])


def test_vllm_and_fastapi_name_the_parameter_in_their_fields() -> None:
    vllm = {"error": {"message": "bad", "type": "BadRequestError", "param": "body.messages", "code": 400}}
    assert _through_the_wire(error_for_status(400, _json(vllm)))["param"] == "messages"
    fastapi = {"detail": [{"loc": ["body", "temperature"], "msg": "Input should be a valid number", "type": "x"}]}
    out = _through_the_wire(error_for_status(422, _json(fastapi)))
    assert (out["status"], out["param"], out["code"]) == (422, "temperature", "invalid_value")


def test_a_missing_endpoint_is_said_so() -> None:
    body = {"error": {"code": 501, "message": "This server does not support embeddings.", "type": "not_supported"}}
    out = _through_the_wire(error_for_status(501, _json(body)))
    assert (out["status"], out["code"]) == (400, "unsupported_endpoint")
    out = _through_the_wire(error_for_status(404, _json({"error": {"message": "File Not Found", "code": 404}})))
    assert (out["status"], out["code"]) == (400, "unsupported_endpoint")


def test_other_failures_keep_their_classes() -> None:
    assert isinstance(error_for_status(404, _json({"error": "model 'x' not found"})), ModelNotFound)
    assert isinstance(error_for_status(500, _json({"error": {"message": "CUDA out of memory"}})), UpstreamError)
    plain = error_for_status(400, _json({"error": {"message": "something odd"}}))
    assert type(plain) is BackendBadRequest
    assert plain.reason is None


HOSTILE = "Your account is suspended: pay at the evil page we name " * 2000


def test_a_lying_nodes_detail_is_bounded_before_it_reaches_a_client() -> None:
    """A node (it read this repository) sends a refusal frame with hostile text in every field it has."""
    frame = ErrorFrame(
        code="bad_request",
        message=HOSTILE,
        status=400,
        reason="invalid_value",
        param="pay_at_evil_example_now",  # matches the field-name pattern, but is no request field
    )
    out = _through_the_wire_frame(frame)
    assert "evil" not in str(out)
    assert out["param"] is None
    assert out["code"] is None

    lie = ErrorFrame(code="bad_request", message=HOSTILE, reason="context_length_exceeded", prompt_tokens=-5,
                     context_length=10**15, param="messages")  # fmt: skip
    out = _through_the_wire_frame(lie)
    assert out["code"] == "context_length_exceeded"
    assert "evil" not in str(out)
    assert "-5" not in str(out["message"])
    assert str(10**15) not in str(out["message"])

    unknown = ErrorFrame(code="bad_request", message=HOSTILE, reason="visit_evil_example", param="temperature")
    out = _through_the_wire_frame(unknown)
    assert (out["code"], out["param"]) == (None, None)
    assert "evil" not in str(out)


def _through_the_wire_frame(frame: ErrorFrame) -> dict[str, object]:
    api = from_backend_error(node_error(frame))
    return {"status": api.status, **api.body()["error"]}


def test_a_frame_with_hostile_free_text_in_a_typed_field_does_not_decode() -> None:
    """Over libp2p the decoder refuses the frame (the node's answer is malformed: a node fault)."""
    raw = msgspec.msgpack.encode({"t": "error", "code": "bad_request", "message": "x", "param": "pay at the evil page"})
    with pytest.raises(msgspec.ValidationError):
        msgspec.msgpack.decode(raw, type=ResponseFrame)
    raw = msgspec.msgpack.encode({"t": "error", "code": "bad_request", "message": "x", "prompt_tokens": 2**40})
    with pytest.raises(msgspec.ValidationError):
        msgspec.msgpack.decode(raw, type=ResponseFrame)


def test_the_node_never_sends_detail_a_gateway_could_not_decode() -> None:
    error = ContextLengthExceeded("x", prompt_tokens=2**40, context_length=-1, param="not a field!")
    frame = error_to_frame(error)
    assert (frame.prompt_tokens, frame.context_length, frame.param) == (None, None, None)
    msgspec.msgpack.decode(msgspec.msgpack.encode(frame), type=ResponseFrame)
