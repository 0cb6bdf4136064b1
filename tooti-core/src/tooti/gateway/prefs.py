"""Routing preferences of one request: the body's ``tooti`` object and ``x-tooti-*`` headers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tooti.gateway.api_errors import ApiError
from tooti.routing.preferences import PreferenceError, parse_preferences

if TYPE_CHECKING:
    from collections.abc import Mapping

    from tooti.routing.protocol import Preferences

__all__ = ["preferences_for"]


def preferences_for(model: str, body_prefs: Mapping[str, Any] | None, headers: Mapping[str, str]) -> Preferences:
    """Parse the request's routing preferences; a bad one is a 400 naming the field."""
    try:
        return parse_preferences(model, body_prefs, headers)
    except PreferenceError as exc:
        raise ApiError(400, str(exc), param=exc.field, code="invalid_preference") from None
