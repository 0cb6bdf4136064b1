"""Checking the shape of ``tools`` at the HTTP edge.

Model servers fail on malformed tools in ways that look like their own fault: llama.cpp answers a
``tools`` that is not an array, a tool without ``function`` or ``name``, or a non-function tool type
with a **500** whose text echoes the tools back. Relayed, that was a 502 that put a healthy node in
cooldown and logged the client's tool schemas. Checked here, it is a 400 naming the field.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tooti.gateway.api_errors import ApiError

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["check_response_tools", "check_tools"]


def _bad(message: str, param: str) -> ApiError:
    return ApiError(400, f"'{param}' {message}", param=param, code="invalid_value")


def _function_tools(tools: Any, type_note: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ``(field path, tool)`` for each tool, raising a 400 at the first that is no function tool."""
    if not isinstance(tools, list):
        raise _bad("must be an array of tools", "tools")
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        if not isinstance(tool, dict):
            raise _bad("must be an object", where)
        if tool.get("type") != "function":
            raise _bad(f"must be a function tool (type 'function'){type_note}", f"{where}.type")
        yield where, tool


def check_tools(tools: Any) -> None:
    """Raise a 400 naming the field unless ``tools`` is absent or an array of function tools (chat shape)."""
    if tools is None:
        return
    for where, tool in _function_tools(tools):
        function = tool.get("function")
        if not isinstance(function, dict):
            raise _bad("must be an object with the function's name and parameters", f"{where}.function")
        name = function.get("name")
        if not isinstance(name, str) or not name:
            raise _bad("must be a non-empty string", f"{where}.function.name")
        if "parameters" in function and not isinstance(function["parameters"], dict):
            raise _bad("must be a JSON schema object", f"{where}.function.parameters")


def check_response_tools(tools: Any) -> None:
    """The same for the Responses API's flat tool shape (``{"type": "function", "name": …}``).

    Only function tools: built-in ones (web search, file search, computer use) need OpenAI's hosted
    services, which no node has.
    """
    if tools is None:
        return
    for where, tool in _function_tools(tools, "; built-in tools are not served"):
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            raise _bad("must be a non-empty string", f"{where}.name")
        if "parameters" in tool and tool["parameters"] is not None and not isinstance(tool["parameters"], dict):
            raise _bad("must be a JSON schema object", f"{where}.parameters")
