"""Reading config files (YAML or TOML by extension) into :class:`tooti.config.Config`."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
import yaml

from tooti.backends.protocol import BackendSettings
from tooti.config.model import Config
from tooti.errors import ConfigError

if TYPE_CHECKING:
    from tooti.plugins.host import PluginHost

__all__ = ["backend_plugin_config", "backend_settings", "convert_section", "load_config", "parse_config"]

T = TypeVar("T")
_PATH = re.compile(r"^(?P<reason>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_UNKNOWN = re.compile(r"Object contains unknown field `(?P<field>[^`]+)`")


def _dotted(path: str) -> str:
    """Turn msgspec's ``$.a.b[0]`` path into ``a.b[0]``."""
    return path.lstrip(".")


def _replace_at(data: Any, steps: list[str], value: Any) -> Any:
    """Return a copy of ``data`` with the container at ``steps`` replaced by ``value``."""
    if not steps:
        return value
    head, rest = steps[0], steps[1:]
    if isinstance(data, dict):
        return {**data, head: _replace_at(data[head], rest, value)}
    copy = list(data)
    copy[int(head)] = _replace_at(copy[int(head)], rest, value)
    return copy


def _resolve_keys(data: Any, schema: type[Any], path: str, reason: str) -> str:
    """Replace msgspec's ``[...]`` (an unnamed mapping key) in ``path`` with the key that fails.

    msgspec does not say which key of a mapping held the bad value; finding it needs one more
    conversion per key, which only happens on this error path.
    """
    steps = [s for s in re.split(r"\.|\[|\]", path.replace("[...]", ".*")) if s]
    if "*" not in steps:
        return path
    at = steps.index("*")
    container: Any = data
    for step in steps[:at]:
        container = container[step] if isinstance(container, dict) else container[int(step)]
    if not isinstance(container, dict):
        return path
    for key in container:
        try:
            msgspec.convert(_replace_at(data, steps[:at], {key: container[key]}), schema, strict=True)
        except msgspec.ValidationError as exc:
            if str(exc).startswith(reason):
                return path.replace("[...]", f".{key}", 1)
    return path


def _explain(error: msgspec.ValidationError, prefix: str, data: Any = None, schema: type[Any] | None = None) -> str:
    match = _PATH.match(str(error))
    reason = match.group("reason") if match else str(error)
    path = _dotted(match.group("path") or "") if match else ""
    if schema is not None and "[...]" in path:
        path = _resolve_keys(data, schema, path, reason)
    unknown = _UNKNOWN.match(reason)
    if unknown:
        path = f"{path}.{unknown.group('field')}" if path else unknown.group("field")
        reason = "unknown key"
    full = ".".join(p for p in (prefix, path) if p) or "(top level)"
    return f"{full}: {reason}"


def convert_section(data: Any, schema: type[T], *, prefix: str = "", source: str = "config") -> T:
    """Validate ``data`` against ``schema``; errors name the key path under ``prefix``."""
    try:
        return msgspec.convert(data, schema, strict=True)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: {_explain(exc, prefix, data, schema)}") from None


def parse_config(text: str, *, suffix: str, source: str = "config") -> Config:
    """Parse config text in the format named by ``suffix`` (``.yaml``, ``.yml`` or ``.toml``)."""
    try:
        if suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        elif suffix == ".toml":
            data = tomllib.loads(text)
        else:
            raise ConfigError(f"{source}: unsupported config format {suffix!r}; use .yaml, .yml or .toml")
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{source}: not valid {suffix.lstrip('.').upper()}: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections, got {type(data).__name__}")
    return convert_section(data, Config, source=source)


def load_config(path: Path | str) -> Config:
    """Read and validate a config file."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {file}: {exc.strerror or exc}") from None
    return parse_config(text, suffix=file.suffix.lower(), source=str(file))


def backend_settings(config: Config, default_base_url: str = "") -> BackendSettings:
    """The common backend settings from the ``backend`` section."""
    b = config.backend
    return BackendSettings(
        base_url=b.base_url or default_base_url,
        connect_timeout_sec=b.connect_timeout_sec,
        request_timeout_sec=b.request_timeout_sec,
        api_key=b.api_key,
    )


def backend_plugin_config(config: Config, host: PluginHost, *, source: str = "config") -> msgspec.Struct:
    """Load the configured backend plugin and validate its ``backends.<type>`` section."""
    name = config.backend.type
    cls = host.backend_class(name)
    raw = config.backends.get(name, {})
    return convert_section(raw, cls.config_type, prefix=f"backends.{name}", source=source)
