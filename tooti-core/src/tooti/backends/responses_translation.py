"""OpenAI's Responses API (``POST /v1/responses``) translated to and from chat completions.

For backends whose server does not speak the Responses API itself (Ollama, most third-party
plugins), the node turns a Responses request into a chat-completions request, runs it through the
backend's ``chat``/``chat_stream``, and turns the answer back: a ``response`` object, or the
Responses stream events the official SDKs parse (``response.created`` … ``response.completed``).

Stateless: nothing is stored, so ``previous_response_id`` and ``store: true`` are refused by the
gateway before a request gets here. Input items, tools and text formats that have no chat
equivalent (built-in tools such as web search, reasoning items, file inputs) raise
:class:`~tooti.errors.BackendBadRequest` naming the field, never a silent drop.
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any

from tooti.errors import BackendBadRequest

if TYPE_CHECKING:
    from tooti.backends.protocol import JSONObject

__all__ = ["ResponsesStreamTranslator", "chat_to_response", "responses_to_chat"]

# Responses fields with no chat-completions counterpart that are safe to drop (bookkeeping only).
_DROPPED = frozenset(
    {"store", "previous_response_id", "include", "truncation", "metadata", "service_tier", "reasoning", "background"}
)
# Responses fields translated explicitly below (everything else passes through, e.g. top_k, seed).
_TRANSLATED = frozenset(
    {"input", "instructions", "max_output_tokens", "tools", "tool_choice", "text", "stream", "stream_options"}
)
# Echoed into the response object, as OpenAI does.
_ECHOED = (
    "instructions",
    "max_output_tokens",
    "temperature",
    "top_p",
    "tool_choice",
    "parallel_tool_calls",
    "metadata",
)


def _new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def _obj(value: Any) -> JSONObject:
    """``value`` if it is a JSON object, else an empty one (peers' JSON is never trusted to be shaped)."""
    return value if isinstance(value, dict) else {}


def _bad(message: str, param: str) -> BackendBadRequest:
    return BackendBadRequest(f"{message} (parameter '{param}')", reason="invalid_value", param=param)


# -- request -------------------------------------------------------------------------------------


def _text_of_parts(content: Any, param: str) -> str | list[JSONObject]:
    """A Responses message ``content`` as chat content: a string, or text and image parts."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _bad("message content must be a string or an array of parts", param)
    parts: list[JSONObject] = []
    for i, part in enumerate(content):
        where = f"{param}[{i}]"
        if not isinstance(part, dict):
            raise _bad("a content part must be an object", where)
        kind = part.get("type")
        if kind in ("input_text", "output_text", "text"):
            parts.append({"type": "text", "text": str(part.get("text", ""))})
        elif kind == "input_image" and isinstance(part.get("image_url"), str):
            parts.append({"type": "image_url", "image_url": {"url": part["image_url"]}})
        else:
            raise _bad(f"content part type {kind!r} has no chat-completions equivalent", f"{where}.type")
    if all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts)
    return parts


def _input_messages(value: Any) -> list[JSONObject]:
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if not isinstance(value, list) or not value:
        raise _bad("'input' must be a string or a non-empty array of items", "input")
    messages: list[JSONObject] = []
    for i, item in enumerate(value):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise _bad("an input item must be an object", where)
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "assistant", "system", "developer"):
                raise _bad("role must be user, assistant, system or developer", f"{where}.role")
            content = _text_of_parts(item.get("content"), f"{where}.content")
            messages.append({"role": "system" if role == "developer" else role, "content": content})
        elif kind == "function_call":
            call = {
                "id": str(item.get("call_id") or item.get("id") or _new_id("call")),
                "type": "function",
                "function": {"name": str(item.get("name", "")), "arguments": str(item.get("arguments", ""))},
            }
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant" and "tool_calls" in last:
                last["tool_calls"].append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output")
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": str(item.get("call_id", "")),
                    "content": output if isinstance(output, str) else _text_of_parts(output, f"{where}.output"),
                }
            )
        else:
            raise _bad(f"input item type {kind!r} is not supported by this backend", f"{where}.type")
    return messages


def _tools(value: Any) -> list[JSONObject]:
    if not isinstance(value, list):
        raise _bad("'tools' must be an array", "tools")
    out: list[JSONObject] = []
    for i, tool in enumerate(value):
        if not isinstance(tool, dict) or tool.get("type") != "function":
            kind = tool.get("type") if isinstance(tool, dict) else None
            raise _bad(f"only function tools can be served by this backend, not {kind!r}", f"tools[{i}].type")
        fn = {k: tool[k] for k in ("name", "description", "parameters", "strict") if k in tool}
        out.append({"type": "function", "function": fn})
    return out


def _tool_choice(value: Any) -> Any:
    if isinstance(value, dict) and value.get("type") == "function":
        return {"type": "function", "function": {"name": value.get("name")}}
    if value in ("auto", "none", "required"):
        return value
    raise _bad("tool_choice must be auto, none, required or a function", "tool_choice")


def _response_format(text: Any) -> JSONObject | None:
    if not isinstance(text, dict):
        raise _bad("'text' must be an object", "text")
    fmt = text.get("format")
    if fmt is None:
        return None
    if not isinstance(fmt, dict):
        raise _bad("'text.format' must be an object", "text.format")
    kind = fmt.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
        return {"type": "json_schema", "json_schema": schema}
    raise _bad(f"text format {kind!r} is not supported", "text.format.type")


def responses_to_chat(body: JSONObject) -> JSONObject:
    """The chat-completions request equivalent to the Responses request ``body``.

    Raises:
        BackendBadRequest: an input item, tool or format with no chat equivalent, naming the field.
    """
    chat: JSONObject = {k: v for k, v in body.items() if k not in _DROPPED and k not in _TRANSLATED}
    messages = _input_messages(body.get("input"))
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        messages.insert(0, {"role": "system", "content": instructions})
    chat["messages"] = messages
    if body.get("max_output_tokens") is not None:
        chat["max_tokens"] = body["max_output_tokens"]
    if body.get("tools"):
        chat["tools"] = _tools(body["tools"])
    if body.get("tool_choice") is not None:
        chat["tool_choice"] = _tool_choice(body["tool_choice"])
    if body.get("text") is not None and (fmt := _response_format(body["text"])) is not None:
        chat["response_format"] = fmt
    return chat


# -- response ------------------------------------------------------------------------------------


def _usage(chat_usage: Any) -> JSONObject | None:
    if not isinstance(chat_usage, dict):
        return None
    prompt = int(chat_usage.get("prompt_tokens") or 0)
    completion = int(chat_usage.get("completion_tokens") or 0)
    details = chat_usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens", 0) if isinstance(details, dict) else 0
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached if isinstance(cached, int) else 0, "cache_write_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion,
    }


def _skeleton(request: JSONObject, response_id: str, model: str, created: int) -> JSONObject:
    """The fields of a ``response`` object that do not depend on the answer."""
    out: JSONObject = {
        "id": response_id,
        "object": "response",
        "created_at": created,
        "status": "in_progress",
        "model": model,
        "output": [],
        "error": None,
        "incomplete_details": None,
        "previous_response_id": None,
        "store": False,
        "text": {"format": {"type": "text"}},
        "tools": list(request.get("tools") or []),
        "tool_choice": request.get("tool_choice", "auto"),
        "parallel_tool_calls": request.get("parallel_tool_calls", True),
        "truncation": "disabled",
        "usage": None,
    }
    for key in _ECHOED:
        out.setdefault(key, request.get(key))
    if isinstance(request.get("text"), dict):
        out["text"] = request["text"]
    return out


def _finish(response: JSONObject, finish_reason: Any) -> None:
    if finish_reason == "length":
        response["status"] = "incomplete"
        response["incomplete_details"] = {"reason": "max_output_tokens"}
    else:
        response["status"] = "completed"


def _message_item(item_id: str, text: str) -> JSONObject:
    return {
        "type": "message",
        "id": item_id,
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
    }


def _call_item(item_id: str, call_id: str, name: str, arguments: str) -> JSONObject:
    return {
        "type": "function_call",
        "id": item_id,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": "completed",
    }


def chat_to_response(chat: JSONObject, request: JSONObject) -> JSONObject:
    """The ``response`` object for a whole ``chat.completion`` answer to ``request`` (the Responses body)."""
    created = chat.get("created")
    response = _skeleton(
        request,
        _new_id("resp"),
        str(chat.get("model") or request.get("model") or ""),
        created if isinstance(created, int) else int(time.time()),
    )
    choices = chat.get("choices") or [{}]
    choice = _obj(choices[0])
    message = _obj(choice.get("message"))
    output: list[JSONObject] = []
    text = message.get("content")
    if isinstance(text, str) and text:
        output.append(_message_item(_new_id("msg"), text))
    for call in message.get("tool_calls") or ():
        fn = _obj(_obj(call).get("function"))
        output.append(
            _call_item(_new_id("fc"), str(call.get("id", "")), str(fn.get("name", "")), str(fn.get("arguments", "")))
        )
    if not output:
        output.append(_message_item(_new_id("msg"), ""))
    response["output"] = output
    response["usage"] = _usage(chat.get("usage"))
    _finish(response, choice.get("finish_reason"))
    return response


class _ToolCallState:
    __slots__ = ("arguments", "call_id", "item_id", "name", "output_index")

    def __init__(self, output_index: int, call_id: str, name: str) -> None:
        self.output_index = output_index
        self.item_id = _new_id("fc")
        self.call_id = call_id
        self.name = name
        self.arguments = ""


class ResponsesStreamTranslator:
    """Turns ``chat.completion.chunk`` objects into Responses stream events, in order.

    Call :meth:`start` once, :meth:`feed` for every chunk, :meth:`finish` at the end of the chat
    stream. Each returns the events to send (dicts with ``type`` and ``sequence_number``), so the
    caller forwards every token as soon as it arrives.
    """

    def __init__(self, request: JSONObject) -> None:
        self.request = request
        self.response = _skeleton(request, _new_id("resp"), str(request.get("model") or ""), int(time.time()))
        self._seq = 0
        self._outputs: list[JSONObject] = []
        self._text_item: tuple[int, str] | None = None  # (output_index, item id) of the open message
        self._text = ""
        self._calls: dict[int, _ToolCallState] = {}
        self._finish_reason: Any = None

    def _event(self, kind: str, **fields: Any) -> JSONObject:
        event = {"type": kind, "sequence_number": self._seq, **fields}
        self._seq += 1
        return event

    def _snapshot(self) -> JSONObject:
        return {**self.response, "output": list(self._outputs)}

    def start(self) -> list[JSONObject]:
        """``response.created`` and ``response.in_progress``."""
        return [
            self._event("response.created", response=self._snapshot()),
            self._event("response.in_progress", response=self._snapshot()),
        ]

    def feed(self, chunk: JSONObject) -> list[JSONObject]:
        """The events for one chat chunk (none for a role-only or usage-only chunk)."""
        events: list[JSONObject] = []
        if isinstance(chunk.get("model"), str) and chunk["model"]:
            self.response["model"] = chunk["model"]
        if (usage := _usage(chunk.get("usage"))) is not None:
            self.response["usage"] = usage
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = _obj(choice.get("delta"))
            content = delta.get("content")
            if isinstance(content, str) and content:
                events += self._text_delta(content)
            for call in delta.get("tool_calls") or ():
                if isinstance(call, dict):
                    events += self._call_delta(call)
            if choice.get("finish_reason"):
                self._finish_reason = choice["finish_reason"]
        return events

    def _text_delta(self, content: str) -> list[JSONObject]:
        events: list[JSONObject] = []
        if self._text_item is None:
            index, item_id = len(self._outputs), _new_id("msg")
            self._text_item = (index, item_id)
            item = {"type": "message", "id": item_id, "status": "in_progress", "role": "assistant", "content": []}
            self._outputs.append(item)
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            events.append(self._event("response.output_item.added", output_index=index, item=item))
            events.append(
                self._event(
                    "response.content_part.added", item_id=item_id, output_index=index, content_index=0, part=part
                )
            )
        index, item_id = self._text_item
        self._text += content
        events.append(
            self._event(
                "response.output_text.delta",
                item_id=item_id,
                output_index=index,
                content_index=0,
                delta=content,
                logprobs=[],
            )
        )
        return events

    def _call_delta(self, call: JSONObject) -> list[JSONObject]:
        events: list[JSONObject] = []
        position = call.get("index", 0)
        fn = _obj(call.get("function"))
        state = self._calls.get(position)
        if state is None:
            state = _ToolCallState(len(self._outputs), str(call.get("id") or _new_id("call")), str(fn.get("name", "")))
            self._calls[position] = state
            item = {**_call_item(state.item_id, state.call_id, state.name, ""), "status": "in_progress"}
            self._outputs.append(item)
            events.append(self._event("response.output_item.added", output_index=state.output_index, item=item))
        arguments = fn.get("arguments")
        if isinstance(arguments, str) and arguments:
            state.arguments += arguments
            events.append(
                self._event(
                    "response.function_call_arguments.delta",
                    item_id=state.item_id,
                    output_index=state.output_index,
                    delta=arguments,
                )
            )
        return events

    def finish(self) -> list[JSONObject]:
        """Close the open items and end with ``response.completed`` (or ``response.incomplete``)."""
        events: list[JSONObject] = []
        if self._text_item is not None:
            index, item_id = self._text_item
            item = _message_item(item_id, self._text)
            part = item["content"][0]
            self._outputs[index] = item
            events.append(
                self._event(
                    "response.output_text.done",
                    item_id=item_id,
                    output_index=index,
                    content_index=0,
                    text=self._text,
                    logprobs=[],
                )
            )
            events.append(
                self._event(
                    "response.content_part.done", item_id=item_id, output_index=index, content_index=0, part=part
                )
            )
            events.append(self._event("response.output_item.done", output_index=index, item=item))
        for state in self._calls.values():
            item = _call_item(state.item_id, state.call_id, state.name, state.arguments)
            self._outputs[state.output_index] = item
            events.append(
                self._event(
                    "response.function_call_arguments.done",
                    item_id=state.item_id,
                    output_index=state.output_index,
                    arguments=state.arguments,
                )
            )
            events.append(self._event("response.output_item.done", output_index=state.output_index, item=item))
        final = self._snapshot()
        _finish(final, self._finish_reason)
        kind = "response.incomplete" if final["status"] == "incomplete" else "response.completed"
        events.append(self._event(kind, response=final))
        return events
