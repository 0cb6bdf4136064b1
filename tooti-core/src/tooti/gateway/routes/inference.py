"""``/v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings``, ``/v1/responses``: each returns an exchange.

A handler does nothing else: the :class:`~tooti.gateway.exchange.Exchange` it returns is run by
Litestar as the response, and owns the request from admission to settlement.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, post
from litestar.types import ASGIApp

from tooti.gateway.access import access_guard
from tooti.gateway.exchange import Exchange
from tooti.gateway.openapi import CHAT_OPERATION, COMPLETION_OPERATION, EMBEDDINGS_OPERATION, RESPONSES_OPERATION

__all__ = ["chat_completions", "completions", "embeddings", "responses"]


@post(
    "/v1/chat/completions",
    status_code=200,
    guards=[access_guard],
    operation_class=CHAT_OPERATION,
    opt={"route": "/v1/chat/completions"},
    summary="Create a chat completion (OpenAI-compatible; SSE when stream is true)",
)
async def chat_completions(request: Request[Any, Any, Any]) -> ASGIApp:
    """Route a chat completion to a node."""
    return Exchange(request, "chat")


@post(
    "/v1/completions",
    status_code=200,
    guards=[access_guard],
    operation_class=COMPLETION_OPERATION,
    opt={"route": "/v1/completions"},
    summary="Create a text completion (OpenAI-compatible legacy API)",
)
async def completions(request: Request[Any, Any, Any]) -> ASGIApp:
    """Route a legacy text completion to a node."""
    return Exchange(request, "completion")


@post(
    "/v1/embeddings",
    status_code=200,
    guards=[access_guard],
    operation_class=EMBEDDINGS_OPERATION,
    opt={"route": "/v1/embeddings"},
    summary="Create embeddings (OpenAI-compatible)",
)
async def embeddings(request: Request[Any, Any, Any]) -> ASGIApp:
    """Route an embeddings request to a node."""
    return Exchange(request, "embeddings")


@post(
    "/v1/responses",
    status_code=200,
    guards=[access_guard],
    operation_class=RESPONSES_OPERATION,
    opt={"route": "/v1/responses"},
    summary="Create a model response (OpenAI Responses API, stateless; SSE when stream is true)",
)
async def responses(request: Request[Any, Any, Any]) -> ASGIApp:
    """Route a Responses API request to a node (passed through or translated to chat there)."""
    return Exchange(request, "responses")
