"""The OpenAI-compatible HTTP gateway: a Litestar app over a :class:`tooti.network.Network`.

Build it with :func:`create_app`; serve it with uvicorn (``tooti gateway start`` does both).
"""

from __future__ import annotations

from tooti.gateway.app import create_app

__all__ = ["create_app"]
