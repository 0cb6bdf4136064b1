"""HTTP route handlers of the gateway, one module per group."""

from __future__ import annotations
