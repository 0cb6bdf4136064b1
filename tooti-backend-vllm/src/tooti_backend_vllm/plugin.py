"""Entry point of the ``vllm`` backend: registration only, the backend module is imported lazily."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tooti import hookimpl

if TYPE_CHECKING:
    from tooti import InferenceBackend


@hookimpl
def tooti_register_backends() -> list[type[InferenceBackend]]:
    """Register the vllm backend."""
    from tooti_backend_vllm.backend import VllmBackend

    return [VllmBackend]
