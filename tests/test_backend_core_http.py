"""tooti.backends' shared building blocks: decoders, error mapping and metrics parsing."""

from __future__ import annotations

import httpx
import pytest

from tooti.backends.http_errors import error_for_exception, error_for_payload, error_for_status, error_message
from tooti.backends.prometheus import parse_samples
from tooti.backends.streaming import LineSplitter, SSEDecoder, decode_json_object
from tooti.errors import (
    BackendBadRequest,
    BackendTimeout,
    BackendUnavailable,
    MalformedResponse,
    ModelNotFound,
    UpstreamError,
)


def test_line_splitter_handles_crlf_and_partial_lines() -> None:
    s = LineSplitter()
    assert s.feed(b"a\r\nb") == ["a"]
    assert s.feed(b"c\n\n") == ["bc", ""]
    assert s.feed(b"tail") == []
    assert s.flush() == ["tail"]
    assert s.flush() == []


def test_line_splitter_caps_lines() -> None:
    s = LineSplitter(max_line_bytes=8)
    with pytest.raises(MalformedResponse):
        s.feed(b"0123456789")
    with pytest.raises(MalformedResponse):
        LineSplitter(max_line_bytes=8).feed(b"0123456789\n")


def test_sse_decoder() -> None:
    d = SSEDecoder()
    fed = [d.feed(line) for line in [": ping", "event: x", "id: 1", "data: a", "data:b", ""]]
    assert fed == [None, None, None, None, None, "a\nb"]
    assert d.feed("") is None  # blank line without data dispatches nothing
    d.feed("data: last")
    assert d.flush() == "last"


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"error": {"message": "m1", "type": "t"}}, "m1"),
        ({"error": "m2"}, "m2"),
        ({"detail": "m3"}, "m3"),
        ({"detail": [{"msg": "m4", "loc": ["body", "n"]}]}, "m4"),  # FastAPI validation
        ("plain", "plain"),
    ],
)
def test_error_message_shapes(payload, message) -> None:
    assert error_message(payload) == message


def test_error_for_status_keeps_the_status_and_server_name() -> None:
    err = error_for_status(404, b'{"error": "model \'x\' not found"}', server="Ollama")
    assert isinstance(err, ModelNotFound)
    assert err.status_code == 404
    assert err.message.startswith("Ollama answered 404")
    assert isinstance(error_for_status(401, b"no"), UpstreamError)
    assert isinstance(error_for_status(418, b""), BackendBadRequest)


def test_error_for_payload_uses_the_embedded_code() -> None:
    assert isinstance(error_for_payload({"error": {"code": 400, "message": "x"}}), BackendBadRequest)
    assert isinstance(error_for_payload({"error": "boom"}), UpstreamError)


def test_error_for_exception() -> None:
    assert isinstance(error_for_exception(httpx.ConnectError("x")), BackendUnavailable)
    assert isinstance(error_for_exception(httpx.PoolTimeout("x")), BackendTimeout)
    assert isinstance(error_for_exception(httpx.ReadError("x")), BackendUnavailable)
    assert isinstance(error_for_exception(httpx.ReadError("x"), streaming=True), MalformedResponse)
    assert isinstance(error_for_exception(httpx.RemoteProtocolError("x")), MalformedResponse)


def test_decode_json_object() -> None:
    assert decode_json_object(b'{"a": 1}') == {"a": 1}
    with pytest.raises(MalformedResponse, match="widget"):
        decode_json_object("[]", what="widget")


def test_parse_samples_sums_labels_and_skips_nan() -> None:
    text = 'x_total{a="1"} 2\nx_total{a="2"} 3\n# TYPE g gauge\ng NaN\n'
    assert parse_samples(text) == {"x_total": 5.0}
