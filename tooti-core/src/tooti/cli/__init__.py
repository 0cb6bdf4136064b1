"""The ``tooti`` command line. Subcommands import their heavy dependencies lazily."""

from __future__ import annotations

from tooti.cli.root import app, main

__all__ = ["app", "main"]
