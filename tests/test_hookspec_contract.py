"""Keeps the hook reference honest: every hook documented, with its exact signature, and tested."""

from __future__ import annotations

import importlib.util
import inspect
import re
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from tooti import Candidate, Preferences, hookspecs
from tooti.backends.protocol import InferenceBackend
from tooti.plugins import PluginHost
from tooti.routing import eligible
from tooti.routing.protocol import RoutingStrategy
from tooti.testing.router_conformance import check_router

DOCS = Path(__file__).parents[1] / "docs"
HOOKS_MD = (DOCS / "plugins" / "hooks.md").read_text()
SPECS = {name: fn for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("tooti_")}
FIRST_PARTY = {
    "tooti.backends": {"ollama", "vllm", "llamacpp"},
    "tooti.routers": {"least-loaded", "latency", "cost", "balanced"},
}


def _signature(fn) -> str:
    sig = inspect.signature(fn)
    params = ", ".join(f"{p.name}: {p.annotation}" for p in sig.parameters.values())
    return f"def {fn.__name__}({params}) -> {sig.return_annotation}"


def _code_blocks(markdown: str, *languages: str) -> list[str]:
    pattern = rf"```(?:{'|'.join(languages)})\n(.*?)```"
    return [block.rstrip("\n") for block in re.findall(pattern, markdown, flags=re.DOTALL)]


def test_there_are_hooks():
    assert set(SPECS) == {"tooti_register_backends", "tooti_register_routers"}


@pytest.mark.parametrize("name", sorted(SPECS))
def test_hookspec_is_documented_with_exact_signature(name):
    assert f"### `{name}`" in HOOKS_MD
    assert _signature(SPECS[name]) in HOOKS_MD


@pytest.mark.parametrize("name", sorted(SPECS))
def test_hookspec_docstring_says_when_and_what(name):
    doc = inspect.getdoc(SPECS[name]) or ""
    for section in ("When and where:", "Result semantics:", "Returns:", "Example:", "versionadded"):
        assert section in doc, f"{name} docstring lacks {section!r}"


@pytest.mark.parametrize("name", sorted(SPECS))
def test_hook_has_a_test(name):
    assert callable(globals().get(f"test_hook_{name}")), f"add test_hook_{name}"


def _protocol_members(protocol: type) -> set[str]:
    return {m for m in dir(protocol) if not m.startswith("_")} | {"name"}


def _first_party_classes(group: str, hook: str) -> dict[str, type]:
    found = {}
    for ep in entry_points(group=group):
        if ep.name in FIRST_PARTY[group]:
            plugin = ep.load()
            (cls,) = getattr(plugin, hook)()
            found[ep.name] = cls
    return found


def test_hook_tooti_register_backends():
    classes = _first_party_classes("tooti.backends", "tooti_register_backends")
    assert set(classes) == FIRST_PARTY["tooti.backends"]
    for name, cls in classes.items():
        assert cls.name == name
        missing = {m for m in _protocol_members(InferenceBackend) if not hasattr(cls, m)}
        assert not missing, f"{cls.__name__} lacks {missing}"


def test_hook_tooti_register_routers():
    classes = _first_party_classes("tooti.routers", "tooti_register_routers")
    assert set(classes) == FIRST_PARTY["tooti.routers"]
    candidate = Candidate(peer_id="p1", models=frozenset({"m"}))
    for name, cls in classes.items():
        assert cls.name == name
        strategy = cls.from_params({})
        assert isinstance(strategy, RoutingStrategy)
        decision = strategy.rank([candidate], Preferences(model="m"))
        assert decision.peer_ids == ["p1"]
        check_router(strategy)


@pytest.mark.parametrize(("page", "min_blocks"), [("writing-a-backend.md", 6), ("testing-plugins.md", 2)])
def test_backend_docs_code_is_in_the_example_distribution(page, min_blocks):
    example = DOCS / "examples" / "tooti-backend-echo"
    sources = "\n".join(p.read_text() for p in example.rglob("*") if p.suffix in (".py", ".toml"))
    blocks = _code_blocks((DOCS / "plugins" / page).read_text(), "python", "toml", "yaml")
    assert len(blocks) >= min_blocks
    for block in blocks:
        assert block in sources, f"tutorial block not in the example distribution:\n{block}"


def test_routing_tutorial_code_is_the_example_module_and_works():
    path = DOCS / "examples" / "random_strategy.py"
    source = path.read_text()
    for block in _code_blocks((DOCS / "plugins" / "writing-a-routing-strategy.md").read_text(), "python"):
        assert block in source
    spec = importlib.util.spec_from_file_location("tooti_docs_random_strategy", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    host = PluginHost(load_entry_points=False, plugins=[("router", "random", module)])
    strategy = host.router_class("random").from_params({"seed": 7})
    nodes = [Candidate(peer_id=f"p{i}", models=frozenset({"m"}), cooling=i == 3) for i in range(6)]
    prefs = Preferences(model="m", ignore=frozenset({"p0"}))
    decision = strategy.rank(eligible(nodes, prefs), prefs)  # the gateway filters, the strategy ranks
    assert sorted(decision.peer_ids) == ["p1", "p2", "p3", "p4", "p5"]
    check_router(strategy)
    with pytest.raises(ValueError, match="no parameter 'sed'"):
        host.router_class("random").from_params({"sed": 1})
