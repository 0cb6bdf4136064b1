"""``python -m tooti`` runs the CLI."""

from __future__ import annotations

from tooti.cli import main

main()
