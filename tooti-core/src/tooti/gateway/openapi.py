"""OpenAPI request-body schemas for the inference routes.

Handlers read the raw body themselves (so unknown OpenAI parameters pass through untouched), which
leaves Litestar nothing to infer a schema from; these operation classes document the body instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar.openapi.spec import OpenAPIMediaType, Operation, RequestBody, Schema
from litestar.openapi.spec.enums import OpenAPIType

__all__ = ["CHAT_OPERATION", "COMPLETION_OPERATION", "EMBEDDINGS_OPERATION", "RESPONSES_OPERATION"]

_STR = Schema(type=OpenAPIType.STRING)
_STRINGS = Schema(type=OpenAPIType.ARRAY, items=_STR, min_items=1)
_PREFS = Schema(
    type=OpenAPIType.OBJECT,
    description="tooti routing preferences (removed before the request reaches a node)",
    properties={
        "strategy": _STR,
        "max_price": Schema(type=OpenAPIType.NUMBER, minimum=0),
        "only": Schema(type=OpenAPIType.ARRAY, items=_STR),
        "ignore": Schema(type=OpenAPIType.ARRAY, items=_STR),
        "region": _STR,
    },
)
_COMMON: dict[str, Schema] = {
    "model": Schema(type=OpenAPIType.STRING, min_length=1),
    "stream": Schema(type=OpenAPIType.BOOLEAN),
    "max_tokens": Schema(type=OpenAPIType.INTEGER, minimum=1),
    "temperature": Schema(type=OpenAPIType.NUMBER, minimum=0, maximum=2),
    "tooti": _PREFS,
}
_MESSAGE = Schema(
    type=OpenAPIType.OBJECT,
    required=["role", "content"],
    properties={"role": Schema(enum=["system", "user", "assistant"]), "content": _STR},
)


def _operation(description: str, properties: dict[str, Schema], required: list[str]) -> type[Operation]:
    schema = Schema(type=OpenAPIType.OBJECT, required=required, properties={**_COMMON, **properties})
    body = RequestBody(
        content={"application/json": OpenAPIMediaType(schema=schema)}, required=True, description=description
    )

    @dataclass
    class _Op(Operation):
        def __post_init__(self) -> None:
            self.request_body = body

    return _Op


def _stream_options() -> dict[str, Any]:
    return {
        "stream_options": Schema(
            type=OpenAPIType.OBJECT, properties={"include_usage": Schema(type=OpenAPIType.BOOLEAN)}
        )
    }


CHAT_OPERATION = _operation(
    "An OpenAI chat completion request; every OpenAI parameter is passed to the node as sent.",
    {"messages": Schema(type=OpenAPIType.ARRAY, items=_MESSAGE, min_items=1), **_stream_options()},
    ["model", "messages"],
)
COMPLETION_OPERATION = _operation(
    "An OpenAI (legacy) text completion request.",
    {"prompt": Schema(one_of=[_STR, _STRINGS]), **_stream_options()},
    ["model", "prompt"],
)
EMBEDDINGS_OPERATION = _operation(
    "An OpenAI embeddings request.",
    {"input": Schema(one_of=[_STR, _STRINGS])},
    ["model", "input"],
)
RESPONSES_OPERATION = _operation(
    "An OpenAI Responses API request (stateless: no previous_response_id, no store: true).",
    {
        "input": Schema(
            one_of=[
                Schema(type=OpenAPIType.STRING, min_length=1),
                Schema(type=OpenAPIType.ARRAY, items=_MESSAGE, min_items=1),
            ]
        ),
        "instructions": _STR,
        "max_output_tokens": Schema(type=OpenAPIType.INTEGER, minimum=1),
        "store": Schema(type=OpenAPIType.BOOLEAN, enum=[False]),
    },
    ["model", "input"],
)
