"""from_params: defaults, validation and error messages naming routing.params.<strategy>.<key>."""

from __future__ import annotations

import inspect

import pytest

from tooti.plugins.host import PluginHost
from tooti.routing import RoutingStrategy
from tooti_router_strategies.balanced import BalancedStrategy
from tooti_router_strategies.cost import CostStrategy
from tooti_router_strategies.latency import LatencyStrategy
from tooti_router_strategies.least_loaded import LeastLoadedStrategy

ALL = [LeastLoadedStrategy, LatencyStrategy, CostStrategy, BalancedStrategy]


@pytest.mark.parametrize("cls", ALL)
def test_defaults_build_and_satisfy_the_protocol(cls):
    strategy = cls.from_params({})
    assert isinstance(strategy, RoutingStrategy)
    assert isinstance(strategy, cls)


@pytest.mark.parametrize("cls", ALL)
def test_config_keys_are_the_keyword_arguments_and_defaults_live_only_there(cls):
    """PARAMS validates exactly the keywords of ``__init__`` (less the injected rng); the defaults are its own."""
    keywords = {n: p for n, p in inspect.signature(cls.__init__).parameters.items() if n not in {"self", "rng"}}
    assert set(cls.PARAMS) == set(keywords)
    assert all(p.default is not inspect.Parameter.empty for p in keywords.values())
    built, plain = cls.from_params({}), cls(seed=None)
    assert {n: getattr(built, n) for n in vars(plain) if n != "rng"} == {
        n: getattr(plain, n) for n in vars(plain) if n != "rng"
    }


@pytest.mark.parametrize("cls", ALL)
def test_entry_point_name_is_the_class_name_attribute(cls):
    host = PluginHost(environ={})
    assert host.router_class(cls.name) is cls


@pytest.mark.parametrize("cls", ALL)
def test_unknown_parameter_is_named(cls):
    with pytest.raises(ValueError, match=rf"routing\.params\.{cls.name}\.tolerence: unknown parameter"):
        cls.from_params({"tolerence": 1})


@pytest.mark.parametrize("cls", ALL)
def test_params_must_be_a_mapping(cls):
    with pytest.raises(ValueError, match=rf"routing\.params\.{cls.name} must be a mapping"):
        cls.from_params(["explain"])


@pytest.mark.parametrize(
    ("cls", "params", "message"),
    [
        (LatencyStrategy, {"tolerance_ms": "20"}, r"latency\.tolerance_ms must be a number"),
        (LatencyStrategy, {"tolerance_ms": -1}, r"latency\.tolerance_ms must be >= 0"),
        (LatencyStrategy, {"tolerance_ratio": 11}, r"latency\.tolerance_ratio must be <= 10"),
        (LatencyStrategy, {"tolerance_ms": float("nan")}, r"latency\.tolerance_ms must be finite"),
        (LatencyStrategy, {"tolerance_ms": True}, r"latency\.tolerance_ms must be a number"),
        (LatencyStrategy, {"seed": 1.5}, r"latency\.seed must be an integer"),
        (LatencyStrategy, {"unknown_ttft": "pessimistic"}, r"latency\.unknown_ttft must be one of median, optimistic"),
        (LeastLoadedStrategy, {"explain": -1}, r"least-loaded\.explain must be >= 0"),
        (LeastLoadedStrategy, {"queue_penalty": None}, r"least-loaded\.queue_penalty must be a number"),
        (CostStrategy, {"respect_capacity": "yes"}, r"cost\.respect_capacity must be true or false"),
        (BalancedStrategy, {"load_weight": -0.1}, r"balanced\.load_weight must be >= 0"),
        (
            BalancedStrategy,
            {"load_weight": 0, "latency_weight": 0, "cost_weight": 0, "failure_weight": 0},
            r"balanced: at least one of load_weight",
        ),
    ],
)
def test_bad_values_are_rejected_with_the_config_path(cls, params, message):
    with pytest.raises(ValueError, match=rf"routing\.params\.{message}"):
        cls.from_params(params)


def test_values_are_applied():
    s = LatencyStrategy.from_params({"tolerance_ms": 5, "tolerance_ratio": 0, "seed": 3, "explain": 2})
    assert (s.tolerance_ms, s.tolerance_ratio, s.explain) == (5.0, 0.0, 2)
    assert isinstance(s.tolerance_ms, float)
    b = BalancedStrategy.from_params({"cost_weight": 1, "failure_weight": 0})
    assert b.weights == (0.35, 0.35, 1.0, 0.0)
    assert CostStrategy.from_params({"respect_capacity": False}).respect_capacity is False


def test_seeded_strategies_repeat_their_choices():
    from tooti.routing import Candidate, Preferences

    cands = [Candidate(peer_id=f"p{i}", models=frozenset({"m"}), ttft_ms=100.0) for i in range(8)]
    prefs = Preferences(model="m")
    for cls in (LatencyStrategy, BalancedStrategy):
        a, b = cls.from_params({"seed": 11}), cls.from_params({"seed": 11})
        assert [a.rank(cands, prefs).peer_ids for _ in range(5)] == [b.rank(cands, prefs).peer_ids for _ in range(5)]
