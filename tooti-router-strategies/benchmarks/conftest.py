"""Collect ``bench_*.py`` here (pytest's default ``python_files`` only collects ``test_*.py``).

This directory is outside the default ``testpaths``, so the default test run never loads it; run
``pytest tooti-router-strategies/benchmarks --benchmark-only`` (``nox -s bench``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pathlib import Path


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Module | None:
    """Treat ``bench_*.py`` files as test modules."""
    if file_path.suffix == ".py" and file_path.name.startswith("bench_"):
        return pytest.Module.from_parent(parent, path=file_path)
    return None
