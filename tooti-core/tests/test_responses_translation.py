"""The Responses API translated to and from chat completions, validated against the official SDK's types.

The SDK's pydantic models are validated strictly here (``model_validate``), which is stricter than
the SDK itself (it constructs without validation): every field the SDK declares required is there.
"""

from __future__ import annotations

import pytest
from openai.types.responses import Response, ResponseStreamEvent

from tooti.backends.responses_translation import ResponsesStreamTranslator, chat_to_response, responses_to_chat
from tooti.errors import BackendBadRequest

EVENT_TYPES = {}
for _cls in ResponseStreamEvent.__args__[0].__args__:  # type: ignore[attr-defined]
    EVENT_TYPES[_cls.model_fields["type"].annotation.__args__[0]] = _cls


def _validate(event: dict):
    """Validate against the one SDK class of the event's type (readable errors, unlike the union)."""
    return EVENT_TYPES[event["type"]].model_validate(event)


TOOL = {"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {}}}


def test_request_items_tools_and_format_become_chat():
    body = {
        "model": "m",
        "instructions": "Be brief.",
        "input": [
            {"role": "developer", "content": "Use metric units."},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Weather in Paris?"}]},
            {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": '{"city":"Paris"}'},
            {"type": "function_call_output", "call_id": "c1", "output": "12 C"},
        ],
        "tools": [TOOL],
        "tool_choice": {"type": "function", "name": "get_weather"},
        "text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}, "strict": True}},
        "max_output_tokens": 9,
        "top_k": 5,
        "store": False,
    }
    chat = responses_to_chat(body)
    assert chat["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "system", "content": "Use metric units."},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "12 C"},
    ]
    assert chat["tools"] == [{"type": "function", "function": {k: v for k, v in TOOL.items() if k != "type"}}]
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert chat["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "w", "schema": {"type": "object"}, "strict": True},
    }
    assert chat["max_tokens"] == 9
    assert chat["top_k"] == 5  # unknown sampling knobs pass through
    assert "store" not in chat
    assert "input" not in chat


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "x", "tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"input": [{"type": "reasoning", "summary": []}]}, "input[0].type"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
            "input[0].content[0].type",
        ),
        ({"input": []}, "input"),
        ({"input": "x", "text": {"format": {"type": "grammar"}}}, "text.format.type"),
    ],
)
def test_untranslatable_requests_are_bad_requests_naming_the_field(body, param):
    with pytest.raises(BackendBadRequest, match=rf"'{param}'".replace("[", r"\[").replace("]", r"\]")):
        responses_to_chat({"model": "m", **body})


def test_whole_answer_with_text_and_tool_call_validates_as_an_sdk_response():
    chat = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "finish_reason": "length",
                "message": {
                    "role": "assistant",
                    "content": "Hello",
                    "tool_calls": [{"id": "c9", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
                },
            }
        ],
        "usage": {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6},
    }
    response = Response.model_validate(chat_to_response(chat, {"model": "m", "input": "hi"}))
    assert response.output_text == "Hello"
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.output[1].type == "function_call"
    assert response.output[1].call_id == "c9"
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (4, 2)


def _chunk(delta: dict, finish: str | None = None, usage: dict | None = None) -> dict:
    out = {
        "object": "chat.completion.chunk",
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if usage is not None:
        out = {**out, "choices": [], "usage": usage}
    return out


def test_stream_events_validate_as_sdk_events_one_delta_per_token():
    translator = ResponsesStreamTranslator({"model": "m", "input": "hi"})
    events = translator.start()
    chunks = [
        _chunk({"role": "assistant", "content": None}),
        _chunk({"content": "Hel"}),
        _chunk({"content": "lo"}),
        _chunk({"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f", "arguments": '{"a"'}}]}),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]}, finish="tool_calls"),
        _chunk({}, usage={"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}),
    ]
    per_chunk = [translator.feed(c) for c in chunks]
    events += [e for batch in per_chunk for e in batch] + translator.finish()
    parsed = [_validate(e) for e in events]
    kinds = [e.type for e in parsed]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert per_chunk[0] == []  # a role-only chunk produces nothing
    assert [e["delta"] for e in events if e["type"] == "response.output_text.delta"] == ["Hel", "lo"]
    assert [e.sequence_number for e in parsed] == list(range(len(parsed)))
    assert kinds[-1] == "response.completed"
    final = parsed[-1].response
    assert final.output_text == "Hello"
    assert final.output[1].arguments == '{"a": 1}'
    assert final.usage is not None
    assert final.usage.total_tokens == 7
