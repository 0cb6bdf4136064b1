"""Where tooti keeps its files: ``TOOTI_HOME`` if set, else the platform's user data directory."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

__all__ = ["default_config_file", "default_identity_file", "tooti_home"]


def tooti_home() -> Path:
    """Return tooti's data directory (not created here)."""
    override = os.environ.get("TOOTI_HOME")
    return Path(override).expanduser() if override else Path(platformdirs.user_data_dir("tooti"))


def default_config_file() -> Path:
    """Return the config file used when ``--file`` is not given."""
    return tooti_home() / "node.yaml"


def default_identity_file() -> Path:
    """Return the node identity key file used when ``node.identity_key_file`` is not set."""
    return tooti_home() / "identity.key"
