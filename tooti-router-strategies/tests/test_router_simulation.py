"""Each strategy on a seeded simulated network, compared with random choice (see docs/routing.md)."""

from __future__ import annotations

import pytest

from tooti_router_strategies.simulation import default_factories, format_table, run_all


@pytest.fixture(scope="module", params=[1, 2])
def results(request):
    return {r.strategy: r for r in run_all(default_factories(), seed=request.param, requests=2000)}


def test_no_strategy_picks_a_stale_cooldown_or_wrong_model_node(results):
    for r in results.values():
        assert r.forbidden_picks == 0, r.strategy
        assert "stale" not in r.share
        assert "other-model" not in r.share
        assert r.failed_requests == 0, r.strategy


def test_latency_beats_random_on_mean_and_p95_ttft(results):
    assert results["latency"].mean_ttft_ms < 0.6 * results["random"].mean_ttft_ms
    assert results["latency"].p95_ttft_ms < 0.5 * results["random"].p95_ttft_ms


def test_latency_wastes_fewer_attempts_on_failing_nodes_than_random(results):
    assert results["latency"].failed_attempts < results["random"].failed_attempts


def test_cost_is_cheaper_than_random(results):
    assert results["cost"].mean_cost < results["random"].mean_cost
    assert results["cost (respect_capacity=false)"].mean_cost < 0.2 * results["random"].mean_cost


def test_cost_respecting_capacity_keeps_ttft_sane(results):
    assert results["cost"].mean_ttft_ms < 0.1 * results["cost (respect_capacity=false)"].mean_ttft_ms


def test_least_loaded_and_balanced_beat_random_on_tail_latency(results):
    assert results["least-loaded"].p95_ttft_ms < 0.8 * results["random"].p95_ttft_ms
    assert results["balanced"].p95_ttft_ms < 0.6 * results["random"].p95_ttft_ms
    assert results["balanced"].mean_ttft_ms < results["random"].mean_ttft_ms


def test_balanced_is_cheaper_than_pure_latency(results):
    assert results["balanced"].mean_cost < results["latency"].mean_cost


def test_table_lists_every_strategy(results):
    table = format_table(list(results.values()))
    assert len(table.splitlines()) == 2 + len(results)
    for name in results:
        assert f"| {name} |" in table
