"""Validation of ``routing.params.<strategy>`` mappings.

Every strategy declares its parameters as :class:`Param` records; :func:`parse_params` checks a
config mapping against them so a misspelt key or a value of the wrong type fails at start-up with a
message naming the exact config path, instead of silently falling back to a default.

A :class:`Param` holds no default: a strategy's defaults are the keyword defaults of its
``__init__``, declared once, and ``from_params`` passes on only the keys the config sets. So the
strategy built from an empty config and the one built in code with no arguments are the same.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import msgspec

__all__ = ["Param", "parse_params"]


class Param(msgspec.Struct, frozen=True, kw_only=True):
    """One accepted parameter: its type and allowed range or choices (its default is in ``__init__``)."""

    kind: type[float] | type[int] | type[str] | type[bool]
    nullable: bool = False
    """Whether ``null`` is accepted (``seed``: none = from the OS)."""
    ge: float | None = None
    le: float | None = None
    choices: tuple[str, ...] = ()
    doc: str = ""


def _coerce(path: str, spec: Param, value: object) -> object:
    """Return ``value`` converted to ``spec.kind`` or raise ``ValueError`` naming ``path``."""
    if value is None and spec.nullable:
        return None
    if spec.kind is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{path} must be true or false, got {value!r}")
        return value
    if spec.kind is str:
        if not isinstance(value, str) or (spec.choices and value not in spec.choices):
            raise ValueError(f"{path} must be one of {', '.join(spec.choices)}; got {value!r}")
        return value
    # bool is an int subclass; ``true`` for a weight is a config mistake, not 1.0.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{path} must be a number, got {type(value).__name__} {value!r}")
    if spec.kind is int and not isinstance(value, int):
        raise ValueError(f"{path} must be an integer, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{path} must be finite, got {value!r}")
    if spec.ge is not None and value < spec.ge:
        raise ValueError(f"{path} must be >= {spec.ge:g}, got {value!r}")
    if spec.le is not None and value > spec.le:
        raise ValueError(f"{path} must be <= {spec.le:g}, got {value!r}")
    return spec.kind(value)


def parse_params(strategy: str, params: Mapping[str, Any], spec: Mapping[str, Param]) -> dict[str, Any]:
    """Validate ``params`` for ``strategy``: the keys it sets, converted (defaults are left to ``__init__``).

    Raises:
        ValueError: a key is not in ``spec`` or a value has the wrong type or range; the message
            starts with the config path, e.g. ``routing.params.latency.tolerance_ms``.
    """
    if not isinstance(params, Mapping):
        raise ValueError(f"routing.params.{strategy} must be a mapping, got {type(params).__name__}")
    unknown = sorted(str(k) for k in params if k not in spec)
    if unknown:
        raise ValueError(
            f"routing.params.{strategy}.{unknown[0]}: unknown parameter for strategy {strategy!r}"
            f" (accepted: {', '.join(sorted(spec))})"
        )
    return {key: _coerce(f"routing.params.{strategy}.{key}", spec[key], value) for key, value in params.items()}
