"""Configuration: schema, file loading and default locations."""

from __future__ import annotations

from tooti.config.loader import backend_plugin_config, backend_settings, convert_section, load_config, parse_config
from tooti.config.model import Config
from tooti.config.paths import default_config_file, default_identity_file, tooti_home

__all__ = [
    "Config",
    "backend_plugin_config",
    "backend_settings",
    "convert_section",
    "default_config_file",
    "default_identity_file",
    "load_config",
    "parse_config",
    "tooti_home",
]
