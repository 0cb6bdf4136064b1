"""Routing preferences of one request: the body's ``tooti`` object and ``x-tooti-*`` headers.

Delegates to :func:`tooti.routing.preferences.parse_preferences` when it is available and maps its
errors to a 400 naming the field; until then a minimal built-in parser with the same contract is used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any, cast

from tooti.gateway.errors import ApiError
from tooti.routing.protocol import Preferences

__all__ = ["preferences_for"]

_Parser = Callable[[str, Mapping[str, Any] | None, Mapping[str, str]], Preferences]
_FIELDS = {"strategy", "max_price", "only", "ignore", "region"}


def _peer_set(value: Any, field: str) -> frozenset[str]:
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"tooti.{field} must be a list of peer ids")
    return frozenset(value)


def _builtin(model: str, body: Mapping[str, Any] | None, headers: Mapping[str, str]) -> Preferences:
    raw: dict[str, Any] = dict(body or {})
    for name in _FIELDS:
        header = headers.get(f"x-tooti-{name.replace('_', '-')}")
        if header is not None and name not in raw:
            raw[name] = header
    unknown = sorted(set(raw) - _FIELDS)
    if unknown:
        raise ValueError(f"unknown routing preference tooti.{unknown[0]}")
    strategy = raw.get("strategy")
    if strategy is not None and not isinstance(strategy, str):
        raise ValueError("tooti.strategy must be a string")
    max_price = raw.get("max_price")
    try:
        max_price = None if max_price is None else float(max_price)
    except (TypeError, ValueError):
        raise ValueError("tooti.max_price must be a number") from None
    region = raw.get("region")
    if region is not None and not isinstance(region, str):
        raise ValueError("tooti.region must be a string")
    only = None if raw.get("only") is None else _peer_set(raw["only"], "only")
    ignore = frozenset() if raw.get("ignore") is None else _peer_set(raw["ignore"], "ignore")
    return Preferences(model=model, strategy=strategy, max_price=max_price, only=only, ignore=ignore, region=region)


def _parser() -> _Parser:
    try:
        module = importlib.import_module("tooti.routing.preferences")
    except ImportError:
        return _builtin
    return cast("_Parser", module.parse_preferences)


_PARSE = _parser()


def preferences_for(model: str, body_prefs: Mapping[str, Any] | None, headers: Mapping[str, str]) -> Preferences:
    """Parse the request's routing preferences; a bad one is a 400 naming the field."""
    try:
        return _PARSE(model, body_prefs, headers)
    except (ValueError, TypeError) as exc:
        raise ApiError(400, f"invalid routing preference: {exc}", param="tooti", code="invalid_preference") from None
