"""Per-request routing preferences, OpenRouter-style, from the request body and ``x-tooti-*`` headers.

Clients put a ``tooti`` object in the JSON body (with the OpenAI SDK: ``extra_body={"tooti": {...}}``)
or send headers::

    {"tooti": {"strategy": "latency", "max_price": 0.002, "only": ["12D3KooW..."],
               "ignore": ["12D3KooX..."], "region": "eu-west"}}

    x-tooti-strategy: latency        x-tooti-max-price: 0.002
    x-tooti-only: 12D3KooW...,12D3KooV...   x-tooti-ignore: 12D3KooX...   x-tooti-region: eu-west

Rules: a field set in the body wins over the same field's header (per field, not all-or-nothing);
unknown body keys are rejected (a typo must not silently route elsewhere); every value is checked
for type, range and size and a bad one raises :class:`PreferenceError` naming the field, which the
gateway answers with HTTP 400. The gateway removes the ``tooti`` key from the body before
forwarding it to a node (:func:`pop_preferences`), so model servers never see it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, MutableMapping
from typing import Any

from tooti.errors import TootiError
from tooti.routing.protocol import Preferences

__all__ = ["BODY_KEY", "HEADER_PREFIX", "PreferenceError", "parse_preferences", "pop_preferences"]

BODY_KEY = "tooti"
HEADER_PREFIX = "x-tooti-"
MAX_PEERS = 256
"""Longest ``only`` / ``ignore`` list accepted; bounds the work one request can cause."""

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_PEER = re.compile(r"[A-Za-z0-9]{1,128}")
_FIELDS = ("strategy", "max_price", "only", "ignore", "region")


class PreferenceError(TootiError, ValueError):
    """A routing preference is malformed; the message names the field. The gateway answers 400."""

    http_status = 400

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"invalid routing preference {field}: {problem}")
        self.field = field


def _name(field: str, value: object) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise PreferenceError(
            field, f"expected a name of letters, digits, '.', '_' or '-' (1-64 chars), got {_show(value)}"
        )
    return value


def _price(field: str, value: object) -> float:
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise PreferenceError(field, f"expected a number, got {_show(value)}") from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise PreferenceError(field, f"expected a finite number >= 0, got {_show(value)}")
    return float(value)


def _peers(field: str, value: object) -> frozenset[str]:
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, list | tuple) or not value:
        raise PreferenceError(field, f"expected a non-empty list of peer ids, got {_show(value)}")
    if len(value) > MAX_PEERS:
        raise PreferenceError(field, f"at most {MAX_PEERS} peer ids, got {len(value)}")
    for peer in value:
        if not isinstance(peer, str) or not _PEER.fullmatch(peer):
            raise PreferenceError(field, f"{_show(peer)} is not a peer id (base58, 1-128 chars)")
    return frozenset(value)


def _show(value: object) -> str:
    """A short, log-safe rendering of a rejected value."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


_PARSERS: dict[str, Any] = {
    "strategy": _name,
    "max_price": _price,
    "only": _peers,
    "ignore": _peers,
    "region": _name,
}


def _from_headers(headers: Mapping[str, str]) -> dict[str, object]:
    """The ``x-tooti-*`` headers as raw field values (header names are case-insensitive)."""
    out: dict[str, object] = {}
    for key, value in headers.items():
        low = key.lower()
        if not low.startswith(HEADER_PREFIX):
            continue
        field = low[len(HEADER_PREFIX) :].replace("-", "_")
        if field in _FIELDS:
            out[field] = value.strip()
    return out


def _from_body(body_prefs: object | None) -> dict[str, object]:
    if body_prefs is None:
        return {}
    if not isinstance(body_prefs, Mapping):
        raise PreferenceError(BODY_KEY, f"expected an object, got {type(body_prefs).__name__}")
    unknown = sorted(str(k) for k in body_prefs if k not in _FIELDS)
    if unknown:
        raise PreferenceError(f"{BODY_KEY}.{unknown[0]}", f"unknown field (accepted: {', '.join(_FIELDS)})")
    return {k: v for k, v in body_prefs.items() if v is not None}


def parse_preferences(model: str, body_prefs: object | None, headers: Mapping[str, str]) -> Preferences:
    """Merge the ``tooti`` body object and the ``x-tooti-*`` headers into :class:`Preferences`.

    Args:
        model: the request's ``model`` field.
        body_prefs: the value of the body's ``tooti`` key, or ``None`` when absent (a JSON ``null``
            field inside it counts as absent too).
        headers: request headers; names are matched case-insensitively.

    Raises:
        PreferenceError: a field is unknown, of the wrong type, out of range or too long; the
            message names it as ``tooti.<field>`` (body) or ``x-tooti-<field>`` (header).
    """
    values: dict[str, Any] = {}
    for source, raw in (("header", _from_headers(headers)), ("body", _from_body(body_prefs))):
        for field, value in raw.items():
            label = f"{BODY_KEY}.{field}" if source == "body" else HEADER_PREFIX + field.replace("_", "-")
            values[field] = _PARSERS[field](label, value)  # body runs second, so it wins
    return Preferences(model=model, **values)


def pop_preferences(model: str, body: MutableMapping[str, Any], headers: Mapping[str, str]) -> Preferences:
    """Remove ``tooti`` from a request body and parse it with the headers (see :func:`parse_preferences`).

    The gateway calls this before forwarding the body, so nodes never receive routing preferences.
    """
    return parse_preferences(model, body.pop(BODY_KEY, None), headers)
