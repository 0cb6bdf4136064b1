"""``/v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings``, ``/v1/responses``: route, fail over, relay."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from litestar import MediaType, Request, Response, post
from litestar.background_tasks import BackgroundTask

from tooti.gateway.access import access_guard
from tooti.gateway.body import parse_body
from tooti.gateway.context import request_context
from tooti.gateway.disconnect import ClientDisconnected, SSEStream, unless_disconnected
from tooti.gateway.dispatch import open_request
from tooti.gateway.metering import KEY_STATE, Metering
from tooti.gateway.openapi import CHAT_OPERATION, COMPLETION_OPERATION, EMBEDDINGS_OPERATION, RESPONSES_OPERATION
from tooti.gateway.prefs import preferences_for
from tooti.gateway.relay import collect_result, sse_events
from tooti.gateway.state import gateway_of

if TYPE_CHECKING:
    from tooti.wire.infer import RequestKind

__all__ = ["chat_completions", "completions", "embeddings", "responses"]

log = logging.getLogger("tooti.gateway.content")

CLIENT_CLOSED_REQUEST = 499
"""Status recorded for a request whose client left before its answer (nobody receives it)."""
_SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


async def _serve(request: Request[Any, Any, Any], kind: RequestKind) -> Response[Any]:
    gw = gateway_of(request)
    ctx = request_context(request.scope)
    raw = await request.body()
    parsed = parse_body(raw, kind)
    ctx.model = parsed.model
    metering: Metering | None = request.app.state.get("metering")
    if metering is not None:
        await metering.admit(request.scope.get("state", {}).get(KEY_STATE), parsed, len(raw), ctx)
    try:
        prefs = preferences_for(parsed.model, parsed.preferences, request.headers)
    except BaseException:
        if metering is not None:
            metering.abandon(ctx.request_id, parsed.model)  # refused before any node: release the budget
        raise
    if gw.config.gateway.log_content:
        log.info("%s request body: %s", ctx.request_id, parsed.body)

    async def answer() -> Response[Any]:
        try:
            attempt = await open_request(gw, parsed, prefs, ctx)
        except BaseException:
            if metering is not None:
                metering.abandon(ctx.request_id, parsed.model)  # refused before any node: release the budget
            raise
        if parsed.stream:
            events = sse_events(attempt, parsed, ctx)
            return SSEStream(
                events, media_type="text/event-stream", headers=_SSE_HEADERS, background=BackgroundTask(attempt.release)
            )
        result = await collect_result(attempt)
        if gw.config.gateway.log_content:
            log.info("%s answer: %s", ctx.request_id, result)
        return Response(result, media_type=MediaType.JSON)

    # Until the answer starts, nothing watches the connection: a client that gives up must still
    # stop the node (its stream is reset when the attempt is released) and the model server.
    try:
        return await unless_disconnected(request.receive, answer)
    except ClientDisconnected:
        if metering is not None:
            metering.abandon(ctx.request_id, parsed.model)
        return Response(None, status_code=CLIENT_CLOSED_REQUEST)


@post(
    "/v1/chat/completions",
    status_code=200,
    guards=[access_guard],
    operation_class=CHAT_OPERATION,
    opt={"route": "/v1/chat/completions"},
    summary="Create a chat completion (OpenAI-compatible; SSE when stream is true)",
)
async def chat_completions(request: Request[Any, Any, Any]) -> Response[Any]:
    """Route a chat completion to a node."""
    return await _serve(request, "chat")


@post(
    "/v1/completions",
    status_code=200,
    guards=[access_guard],
    operation_class=COMPLETION_OPERATION,
    opt={"route": "/v1/completions"},
    summary="Create a text completion (OpenAI-compatible legacy API)",
)
async def completions(request: Request[Any, Any, Any]) -> Response[Any]:
    """Route a legacy text completion to a node."""
    return await _serve(request, "completion")


@post(
    "/v1/embeddings",
    status_code=200,
    guards=[access_guard],
    operation_class=EMBEDDINGS_OPERATION,
    opt={"route": "/v1/embeddings"},
    summary="Create embeddings (OpenAI-compatible)",
)
async def embeddings(request: Request[Any, Any, Any]) -> Response[Any]:
    """Route an embeddings request to a node."""
    return await _serve(request, "embeddings")


@post(
    "/v1/responses",
    status_code=200,
    guards=[access_guard],
    operation_class=RESPONSES_OPERATION,
    opt={"route": "/v1/responses"},
    summary="Create a model response (OpenAI Responses API, stateless; SSE when stream is true)",
)
async def responses(request: Request[Any, Any, Any]) -> Response[Any]:
    """Route a Responses API request to a node (passed through or translated to chat there)."""
    return await _serve(request, "responses")
