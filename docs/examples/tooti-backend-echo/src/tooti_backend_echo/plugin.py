"""Registration only: keep this module cheap to import, load the backend inside the hook."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tooti import hookimpl

if TYPE_CHECKING:
    from tooti import InferenceBackend


@hookimpl
def tooti_register_backends() -> list[type[InferenceBackend]]:
    """Register the echo backend."""
    from tooti_backend_echo.backend import EchoBackend

    return [EchoBackend]
