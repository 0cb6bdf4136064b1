"""A typed facade over pluggy that loads tooti plugins lazily, by name, and isolates failures.

Only the entry point a caller asks for is imported (``backend_class("llamacpp")``); ``load_all()``
is for listings. A plugin that fails to import or register is recorded as failed and never takes
the host down, unless strict mode (``TOOTI_STRICT_PLUGINS=1``) asks for the exception.
"""

from __future__ import annotations

import inspect
import os
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any, cast

import pluggy

from tooti import hookspecs
from tooti.errors import DuplicatePluginError, PluginLoadError, PluginNotFoundError
from tooti.plugin_markers import PROJECT_NAME
from tooti.plugins.inventory import KINDS, PluginInfo, PluginKind

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from tooti.backends.protocol import InferenceBackend
    from tooti.routing.protocol import RoutingStrategy

__all__ = ["PluginHost"]

_INTERNAL_ROUTERS = {"simple": "tooti.routing.default"}


def _names(value: str | None) -> set[str] | None:
    if value is None:
        return None
    return {part.strip() for part in value.split(",") if part.strip()}


def _describe(exc: BaseException) -> str:
    return f"failed: {type(exc).__name__}: {exc}"


class PluginHost:
    """Discovers, loads and indexes tooti plugins.

    Args:
        load_entry_points: look up installed distributions' entry points; tests pass ``False`` and
            give plugins explicitly.
        plugins: ``(kind, name, plugin_object)`` triples registered up front, as if found through
            entry points.
        environ: where ``TOOTI_LOAD_PLUGINS``, ``TOOTI_DISABLE_PLUGINS`` and
            ``TOOTI_STRICT_PLUGINS`` are read (default ``os.environ``).
    """

    def __init__(
        self,
        *,
        load_entry_points: bool = True,
        plugins: Iterable[tuple[PluginKind, str, object]] = (),
        environ: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        self._allow = _names(env.get("TOOTI_LOAD_PLUGINS"))
        self._deny = _names(env.get("TOOTI_DISABLE_PLUGINS")) or set()
        self.strict = env.get("TOOTI_STRICT_PLUGINS", "") not in ("", "0", "false")
        self._use_entry_points = load_entry_points
        self.pm = pluggy.PluginManager(PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self._records: dict[tuple[PluginKind, str], PluginInfo] = {}
        self._classes: dict[PluginKind, dict[str, type[Any]]] = {"backend": {}, "router": {}}
        for name, module in _INTERNAL_ROUTERS.items():
            self._load_internal("router", name, module)
        for kind, name, obj in plugins:
            self.register(obj, kind=kind, name=name)

    # -- public API ---------------------------------------------------------------------------

    def register(self, plugin: object, *, kind: PluginKind, name: str, distribution: str | None = None) -> PluginInfo:
        """Register a plugin object directly (tests, embedding); returns its record."""
        info = PluginInfo(name=name, kind=kind, distribution=distribution, version=None, status="ok")
        return self._register(plugin, info)

    def backend_class(self, name: str) -> type[InferenceBackend]:
        """Return the backend class registered as ``name``, loading only that entry point."""
        return cast("type[InferenceBackend]", self._get("backend", name))

    def router_class(self, name: str) -> type[RoutingStrategy]:
        """Return the routing strategy class registered as ``name``, loading only that entry point."""
        return cast("type[RoutingStrategy]", self._get("router", name))

    def load_all(self) -> None:
        """Load every installed entry point of every kind, recording failures."""
        for kind in KINDS:
            for ep in self._entry_points(kind):
                self._load_entry_point(kind, ep)

    def inventory(self, *, include_internal: bool = False) -> list[PluginInfo]:
        """Return the records of every plugin seen so far, sorted by kind then name."""
        rows = [r for r in self._records.values() if include_internal or not r.internal]
        return sorted(rows, key=lambda r: (r.kind, r.name))

    def available(self, kind: PluginKind) -> list[str]:
        """Names that could be loaded for ``kind`` (loaded classes and installed entry points)."""
        names = set(self._classes[kind]) | {ep.name for ep in self._entry_points(kind)}
        return sorted(names)

    def check_pending(self) -> None:
        """Raise if a registered plugin implements a hook that has no spec (e.g. a typo)."""
        self.pm.check_pending()

    # -- loading ------------------------------------------------------------------------------

    def _get(self, kind: PluginKind, name: str) -> type[Any]:
        if name in self._classes[kind]:
            return self._classes[kind][name]
        eps = [ep for ep in self._entry_points(kind) if ep.name == name]
        if len(eps) > 1:
            dists = ", ".join(sorted(str(ep.dist.name if ep.dist else "?") for ep in eps))
            raise DuplicatePluginError(f"{kind} {name!r} is provided by several distributions: {dists}")
        for ep in eps:
            self._load_entry_point(kind, ep)
        if name in self._classes[kind]:
            return self._classes[kind][name]
        record = self._records.get((kind, name))
        if record is not None and record.status != "ok":
            raise PluginLoadError(f"{kind} plugin {name!r} is not usable: {record.status}")
        known = ", ".join(self.available(kind)) or "none installed"
        raise PluginNotFoundError(f"no {kind} plugin named {name!r} (available: {known})")

    def _entry_points(self, kind: PluginKind) -> list[EntryPoint]:
        if not self._use_entry_points:
            return []
        return sorted(entry_points(group=KINDS[kind][0]), key=lambda ep: ep.name)

    def _enabled(self, name: str) -> bool:
        return name not in self._deny and (self._allow is None or name in self._allow)

    def _load_internal(self, kind: PluginKind, name: str, module: str) -> None:
        import importlib

        info = PluginInfo(
            name=name, kind=kind, distribution="tooti-core", version=_version("tooti-core"), status="ok", internal=True
        )
        self._register(importlib.import_module(module), info)

    def _load_entry_point(self, kind: PluginKind, ep: EntryPoint) -> None:
        if (kind, ep.name) in self._records:
            return
        dist = ep.dist.name if ep.dist is not None else None
        info = PluginInfo(
            name=ep.name,
            kind=kind,
            distribution=dist,
            version=_version(dist),
            status="ok",
            entry_point=ep.value,
        )
        self._records[(kind, ep.name)] = info
        if not self._enabled(ep.name):
            info.status = "disabled"
            return
        try:
            plugin = ep.load()
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not take the host down
            self._fail(info, exc)
            return
        self._register(plugin, info)

    def _register(self, plugin: object, info: PluginInfo) -> PluginInfo:
        key = (info.kind, info.name)
        self._records[key] = info
        try:
            self.pm.register(plugin, name=f"{info.kind}s.{info.name}")
            self.pm.check_pending()
            classes = self._call_registration(plugin, info.kind)
            self._index(classes, info)
        except Exception as exc:  # noqa: BLE001 - isolate any failure inside the plugin's hooks
            if self.pm.is_registered(plugin):
                self.pm.unregister(plugin)
            self._fail(info, exc)
            return info
        info.hooks = sorted(h.name for h in self.pm.get_hookcallers(plugin) or [])
        return info

    def _call_registration(self, plugin: object, kind: PluginKind) -> list[type[Any]]:
        hook = getattr(self.pm.hook, KINDS[kind][1])
        classes: list[type[Any]] = []
        for impl in hook.get_hookimpls():
            if impl.plugin is not plugin:
                continue
            result = impl.function()
            if inspect.iscoroutine(result):
                result.close()
                raise PluginLoadError(f"{KINDS[kind][1]} must be synchronous, got a coroutine")
            for cls in result or ():
                if not isinstance(cls, type) or not isinstance(getattr(cls, "name", None), str):
                    raise PluginLoadError(f"{KINDS[kind][1]} returned {cls!r}, not a class with a str `name`")
                classes.append(cls)
        return classes

    def _index(self, classes: list[type[Any]], info: PluginInfo) -> None:
        table = self._classes[info.kind]
        for cls in classes:
            if cls.name in table and table[cls.name] is not cls:
                raise DuplicatePluginError(f"{info.kind} name {cls.name!r} is already provided by another plugin")
        for cls in classes:
            table[cls.name] = cls
        info.provides = sorted(f"{cls.name}={cls.__name__}" for cls in classes)

    def _fail(self, info: PluginInfo, exc: Exception) -> None:
        info.status = _describe(exc)
        if self.strict:
            raise PluginLoadError(f"{info.kind} plugin {info.name!r} {info.status}") from exc


def _version(distribution: str | None) -> str | None:
    if distribution is None:
        return None
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return None
