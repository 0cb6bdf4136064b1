"""Plugin hosts for tests: explicit plugins, no entry-point discovery, no environment leakage."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tooti.plugin_markers import hookimpl
from tooti.plugins.host import PluginHost

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from tooti.plugins.inventory import PluginKind

__all__ = ["backend_plugin", "make_plugin_host", "router_plugin"]


class _BackendPlugin:
    """A pluggy plugin object that registers the given backend classes."""

    def __init__(self, classes: Sequence[type[Any]]) -> None:
        self._classes = list(classes)

    @hookimpl
    def tooti_register_backends(self) -> list[type[Any]]:
        """Return the classes given at construction."""
        return list(self._classes)


class _RouterPlugin:
    """A pluggy plugin object that registers the given routing strategy classes."""

    def __init__(self, classes: Sequence[type[Any]]) -> None:
        self._classes = list(classes)

    @hookimpl
    def tooti_register_routers(self) -> list[type[Any]]:
        """Return the classes given at construction."""
        return list(self._classes)


def backend_plugin(*classes: type[Any]) -> object:
    """Wrap backend classes in a plugin object, as a distribution's ``plugin.py`` would."""
    return _BackendPlugin(classes)


def router_plugin(*classes: type[Any]) -> object:
    """Wrap routing strategy classes in a plugin object."""
    return _RouterPlugin(classes)


def make_plugin_host(
    *,
    backends: Sequence[type[Any]] | None = None,
    routers: Sequence[type[Any]] = (),
    plugins: Iterable[tuple[PluginKind, str, object]] = (),
    environ: Mapping[str, str] | None = None,
) -> PluginHost:
    """Build a :class:`PluginHost` that sees only the given plugins.

    Args:
        backends: backend classes, each registered as a plugin under its own ``name``; default
            ``[FakeBackend]``.
        routers: routing strategy classes, registered the same way.
        plugins: extra ``(kind, name, plugin_object)`` triples (e.g. a real ``plugin`` module).
        environ: plugin switches (``TOOTI_LOAD_PLUGINS`` ...); default empty, so the test does not
            depend on the developer's shell.

    Returns:
        A host with entry-point discovery switched off.
    """
    if backends is None:
        from tooti.testing.fake import FakeBackend

        backends = [FakeBackend]
    triples: list[tuple[PluginKind, str, object]] = [("backend", cls.name, backend_plugin(cls)) for cls in backends]
    triples += [("router", cls.name, router_plugin(cls)) for cls in routers]
    triples += list(plugins)
    return PluginHost(load_entry_points=False, plugins=triples, environ={} if environ is None else environ)
