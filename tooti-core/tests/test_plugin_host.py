from __future__ import annotations

import types
from typing import ClassVar

import pytest

from tooti import hookimpl
from tooti.errors import DuplicatePluginError, PluginLoadError, PluginNotFoundError
from tooti.plugins import PluginHost
from tooti.routing.default import SimpleStrategy

GOOD = """
from tooti import hookimpl

class GoodBackend:
    name = "good"

@hookimpl
def tooti_register_backends():
    return [GoodBackend]
"""


def _plugin(**hooks):
    return types.SimpleNamespace(**{k: hookimpl(v) for k, v in hooks.items()})


class _Router:
    name: ClassVar[str] = "custom"


def test_builtin_simple_router_is_always_there():
    host = PluginHost(load_entry_points=False)
    assert host.router_class("simple") is SimpleStrategy
    assert [r.name for r in host.inventory(include_internal=True)] == ["simple"]
    assert host.inventory() == []


def test_registered_plugin_is_found_by_name():
    plugin = _plugin(tooti_register_routers=lambda: [_Router])
    host = PluginHost(load_entry_points=False, plugins=[("router", "custom", plugin)])
    assert host.router_class("custom") is _Router
    (row,) = host.inventory()
    assert row.status == "ok"
    assert row.hooks == ["tooti_register_routers"]
    assert row.provides == ["custom=_Router"]


def test_unknown_name_lists_what_is_available():
    host = PluginHost(load_entry_points=False)
    with pytest.raises(PluginNotFoundError, match=r"no router plugin named 'nope' \(available: simple\)"):
        host.router_class("nope")


def test_duplicate_names_are_an_error_not_a_quiet_skip():
    class Clash:
        name = "simple"

    host = PluginHost(
        load_entry_points=False, plugins=[("router", "clash", _plugin(tooti_register_routers=lambda: [Clash]))]
    )
    (row,) = host.inventory()
    assert row.status.startswith("failed: DuplicatePluginError")
    assert host.router_class("simple") is SimpleStrategy


def test_misspelled_hook_is_caught_by_check_pending():
    plugin = _plugin(tooti_register_backend=lambda: [])
    host = PluginHost(load_entry_points=False, plugins=[("backend", "typo", plugin)])
    (row,) = host.inventory()
    assert "tooti_register_backend" in row.status
    assert row.status.startswith("failed: PluginValidationError")


def test_async_registration_hook_is_rejected():
    async def register():
        return []

    host = PluginHost(
        load_entry_points=False, plugins=[("backend", "async", _plugin(tooti_register_backends=register))]
    )
    assert "must be synchronous" in host.inventory()[0].status


def test_registration_must_return_named_classes():
    host = PluginHost(
        load_entry_points=False, plugins=[("backend", "bad", _plugin(tooti_register_backends=lambda: [42]))]
    )
    assert "not a class with a str `name`" in host.inventory()[0].status


def test_entry_point_is_loaded_lazily_by_name(fake_distribution):
    fake_distribution(
        "tooti-backend-good",
        {"tooti.backends": {"good": "good_plugin", "other": "other_plugin_not_importable"}},
        {"good_plugin": GOOD},
    )
    host = PluginHost()
    assert host.backend_class("good").__name__ == "GoodBackend"
    names = {r.name for r in host.inventory()}
    assert "other" not in names  # never imported
    (good,) = [r for r in host.inventory() if r.name == "good"]
    assert (good.distribution, good.version) == ("tooti-backend-good", "9.9.9")


def test_broken_entry_point_is_isolated(fake_distribution):
    fake_distribution("tooti-backend-broken", {"tooti.backends": {"broken": "module_that_does_not_exist"}})
    host = PluginHost()
    host.load_all()
    (row,) = [r for r in host.inventory() if r.name == "broken"]
    assert row.status == "failed: ModuleNotFoundError: No module named 'module_that_does_not_exist'"
    with pytest.raises(PluginLoadError, match="not usable"):
        host.backend_class("broken")


def test_strict_mode_reraises(fake_distribution):
    fake_distribution("tooti-backend-broken", {"tooti.backends": {"broken": "module_that_does_not_exist"}})
    host = PluginHost(environ={"TOOTI_STRICT_PLUGINS": "1"})
    with pytest.raises(PluginLoadError, match="broken"):
        host.backend_class("broken")


def test_allow_and_deny_lists(fake_distribution):
    fake_distribution("tooti-backend-good", {"tooti.backends": {"good": "good_plugin"}}, {"good_plugin": GOOD})
    denied = PluginHost(environ={"TOOTI_DISABLE_PLUGINS": "good"})
    denied.load_all()
    assert [r.status for r in denied.inventory() if r.name == "good"] == ["disabled"]
    with pytest.raises(PluginLoadError, match="disabled"):
        denied.backend_class("good")
    allowed = PluginHost(environ={"TOOTI_LOAD_PLUGINS": "somethingelse"})
    allowed.load_all()
    assert [r.status for r in allowed.inventory() if r.name == "good"] == ["disabled"]
    assert PluginHost(environ={"TOOTI_LOAD_PLUGINS": "good"}).backend_class("good").__name__ == "GoodBackend"


def test_same_name_from_two_distributions_is_an_error(fake_distribution):
    fake_distribution("tooti-backend-good", {"tooti.backends": {"good": "good_plugin"}}, {"good_plugin": GOOD})
    fake_distribution("tooti-backend-good2", {"tooti.backends": {"good": "good_plugin"}})
    with pytest.raises(DuplicatePluginError, match="tooti-backend-good, tooti-backend-good2"):
        PluginHost().backend_class("good")
