"""OpenAI ↔ Ollama translation, without a server."""

from __future__ import annotations

import base64
import json
import struct

import pytest

from tooti.errors import BackendBadRequest, MalformedResponse
from tooti_backend_ollama import _request, _response
from tooti_backend_ollama.config import OllamaConfig

CONFIG = OllamaConfig()


def test_openai_parameters_become_options() -> None:
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "temperature": 0.5,
        "top_p": 0.9,
        "seed": 4,
        "stop": "END",
        "max_tokens": 12,
        "presence_penalty": 0.1,
        "frequency_penalty": 0.2,
        "top_k": 30,
        "repeat_penalty": 1.1,
        "response_format": {"type": "json_object"},
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
    }
    out = _request.chat_request(body, OllamaConfig(keep_alive="10m", num_ctx=4096), stream=True)
    assert out["options"] == {
        "num_ctx": 4096,
        "temperature": 0.5,
        "top_p": 0.9,
        "seed": 4,
        "stop": ["END"],
        "num_predict": 12,
        "presence_penalty": 0.1,
        "frequency_penalty": 0.2,
        "top_k": 30,
        "repeat_penalty": 1.1,
    }
    assert out["format"] == "json"
    assert out["keep_alive"] == "10m"
    assert out["stream"] is True
    assert out["tools"] == body["tools"]


def test_precedence_config_then_client_options_then_openai_fields() -> None:
    config = OllamaConfig(options={"temperature": 0.1, "num_thread": 2})
    body = {"messages": [], "options": {"temperature": 0.3, "mirostat": 1}, "temperature": 0.7}
    assert _request.chat_request(body, config, stream=False)["options"] == {
        "temperature": 0.7,
        "num_thread": 2,
        "mirostat": 1,
    }


def test_json_schema_response_format_and_text() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    body = {"messages": [], "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}}
    assert _request.chat_request(body, CONFIG, stream=False)["format"] == schema
    assert "format" not in _request.chat_request(
        {"messages": [], "response_format": {"type": "text"}}, CONFIG, stream=False
    )
    with pytest.raises(BackendBadRequest):
        _request.chat_request({"messages": [], "response_format": {"type": "grammar"}}, CONFIG, stream=False)


def test_messages_with_images_tool_calls_and_tool_results() -> None:
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is this"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "42"},
    ]
    out = _request.chat_request({"messages": messages}, CONFIG, stream=False)["messages"]
    assert out[0] == {"role": "user", "content": "what is this", "images": ["AAAA"]}
    assert out[1] == {
        "role": "assistant",
        "content": "",
        "tool_calls": [{"function": {"name": "f", "arguments": {"x": 1}}}],
    }
    assert out[2] == {"role": "tool", "content": "42", "tool_name": "f"}


@pytest.mark.parametrize(
    "body",
    [
        {"messages": "hi"},
        {"messages": [{"content": "no role"}]},
        {"messages": [], "n": 3},
        {"messages": [], "logit_bias": {"1": 5}},
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}]},
        {"messages": [{"role": "user", "content": [{"type": "audio"}]}]},
        {"messages": [{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{bad"}}]}]},
    ],
)
def test_unsupported_requests_are_refused(body) -> None:
    with pytest.raises(BackendBadRequest):
        _request.chat_request(body, CONFIG, stream=False)


def test_generate_and_embed_requests() -> None:
    gen = _request.generate_request({"model": "m", "prompt": ["once"], "max_tokens": 2, "suffix": "end"}, CONFIG)
    assert gen == {"model": "m", "stream": False, "options": {"num_predict": 2}, "prompt": "once", "suffix": "end"}
    with pytest.raises(BackendBadRequest):
        _request.generate_request({"prompt": ["a", "b"]}, CONFIG)
    with pytest.raises(BackendBadRequest):
        _request.generate_request({"prompt": 3}, CONFIG)
    assert _request.embed_request({"model": "m", "input": "x", "dimensions": 8}, CONFIG) == {
        "model": "m",
        "input": ["x"],
        "dimensions": 8,
    }
    with pytest.raises(BackendBadRequest):
        _request.embed_request({"model": "m", "input": [1, 2]}, CONFIG)


FINAL = {
    "model": "m",
    "created_at": "2026-11-24T20:00:00.123456789Z",
    "done": True,
    "done_reason": "length",
    "prompt_eval_count": 10,
    "eval_count": 3,
    "total_duration": 5_000_000,
}


def test_chat_completion_from_a_final_answer() -> None:
    out = _response.chat_completion({**FINAL, "message": {"role": "assistant", "content": "Hey"}})
    assert out["object"] == "chat.completion"
    assert out["created"] == 1795550400
    assert out["choices"][0] == {
        "index": 0,
        "message": {"role": "assistant", "content": "Hey"},
        "finish_reason": "length",
    }
    assert out["usage"] == {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}


def test_tool_calls_are_translated_with_json_arguments() -> None:
    message = {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": {"x": 1}}}]}
    out = _response.chat_completion({**FINAL, "done_reason": "stop", "message": message})
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    [call] = choice["message"]["tool_calls"]
    assert call["type"] == "function"
    assert json.loads(call["function"]["arguments"]) == {"x": 1}
    assert call["id"].startswith("call_")


@pytest.mark.parametrize(
    "payload",
    [
        {"done": False, "message": {"role": "assistant", "content": "x"}},
        {"done": True},
        {"done": True, "message": {"content": 3}},
        {"done": True, "message": {"content": "", "tool_calls": [{"name": "no function key"}]}},
    ],
)
def test_malformed_answers(payload) -> None:
    with pytest.raises(MalformedResponse):
        _response.chat_completion(payload)


def test_chunk_translator_orders_role_content_finish_usage() -> None:
    t = _response.ChunkTranslator("m", include_usage=True)
    line = {"model": "m", "created_at": "x", "done": False}
    chunks = t.translate({**line, "message": {"role": "assistant", "content": "He"}})
    chunks += t.translate({**line, "message": {"role": "assistant", "content": "y"}})
    chunks += t.translate({**FINAL, "message": {"role": "assistant", "content": ""}})
    assert [c["choices"][0]["delta"] for c in chunks[:3]] == [
        {"role": "assistant", "content": "He"},
        {"content": "y"},
        {},
    ]
    assert [c["choices"][0]["finish_reason"] for c in chunks[:3]] == [None, None, "length"]
    assert chunks[3]["choices"] == []
    assert chunks[3]["usage"]["completion_tokens"] == 3
    assert len({c["id"] for c in chunks}) == 1
    with pytest.raises(MalformedResponse, match="after"):
        t.translate({**line, "message": {"content": "late"}})


def test_chunk_translator_without_usage_and_empty_answer() -> None:
    t = _response.ChunkTranslator("m", include_usage=False)
    chunks = t.translate({**FINAL, "message": {"role": "assistant", "content": ""}})
    assert len(chunks) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert "usage" not in chunks[0]


def test_streamed_tool_calls_get_indexes() -> None:
    t = _response.ChunkTranslator("m", include_usage=False)
    call = {"function": {"name": "f", "arguments": {}}}
    chunks = t.translate({"done": False, "message": {"role": "assistant", "content": "", "tool_calls": [call, call]}})
    chunks += t.translate({**FINAL, "done_reason": "stop"})
    assert [c["index"] for c in chunks[0]["choices"][0]["delta"]["tool_calls"]] == [0, 1]
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_text_completion_and_embeddings() -> None:
    out = _response.text_completion({**FINAL, "response": "abc"})
    assert out["choices"][0]["text"] == "abc"
    with pytest.raises(MalformedResponse):
        _response.text_completion({**FINAL})
    emb = _response.embeddings_list({"model": "m", "embeddings": [[0.5, 1.0]], "prompt_eval_count": 2}, encoding=None)
    assert emb["data"] == [{"object": "embedding", "index": 0, "embedding": [0.5, 1.0]}]
    assert emb["usage"] == {"prompt_tokens": 2, "total_tokens": 2}
    packed = _response.embeddings_list({"embeddings": [[0.5, 1.0]]}, encoding="base64")["data"][0]["embedding"]
    assert struct.unpack("<2f", base64.b64decode(packed)) == (0.5, 1.0)
    with pytest.raises(MalformedResponse):
        _response.embeddings_list({"embeddings": "nope"}, encoding=None)
