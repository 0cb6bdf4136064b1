"""Prometheus metrics of one gateway, in its own registry so several apps can live in one process."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

    from prometheus_client.metrics_core import Metric

__all__ = ["CONTENT_TYPE", "GatewayMetrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30)


class GatewayMetrics:
    """Counters and histograms the gateway updates on the request path (cheap, no I/O)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "tooti_gateway_requests", "HTTP requests by route and status", ["route", "status"], registry=r
        )
        self.latency = Histogram(
            "tooti_gateway_request_seconds",
            "HTTP request duration by route",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.overhead = Histogram(
            "tooti_gateway_overhead_seconds",
            "Time the gateway itself added before the response started (waiting on nodes excluded)",
            ["route"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25),
            registry=r,
        )
        self.ttft = Histogram(
            "tooti_gateway_ttft_seconds",
            "Time to the first frame from a node",
            ["model"],
            buckets=_TTFT_BUCKETS,
            registry=r,
        )
        self.failovers = Counter(
            "tooti_gateway_failovers", "Requests moved to another node", ["model", "reason"], registry=r
        )
        self.node_errors = Counter("tooti_gateway_node_errors", "Failed node attempts", ["peer_id", "type"], registry=r)
        self.stream_errors = Counter(
            "tooti_gateway_stream_errors", "Streams ended by an error event", ["model"], registry=r
        )
        self.tokens = Counter("tooti_gateway_tokens", "Tokens served", ["model", "kind"], registry=r)
        self.in_flight = Gauge("tooti_gateway_in_flight", "Requests being served now", registry=r)
        self.rate_limited = Counter("tooti_gateway_rate_limited", "Requests refused by the rate limit", registry=r)

    def watch_heartbeats(self, counts: Callable[[], Mapping[str, int]]) -> None:
        """Expose the p2p layer's heartbeat counts by result, read at scrape time."""
        self.registry.register(_HeartbeatCollector(counts))

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        """Count one finished HTTP request."""
        self.requests.labels(route=route, status=str(status)).inc()
        self.latency.labels(route=route).observe(seconds)

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)


class _HeartbeatCollector(Collector):
    """``tooti_gateway_heartbeats_total{result}``: counts kept by the registry, not on the request path.

    Results: ``accepted``, ``invalid`` (malformed, out of bounds, spoofed) and ``rate_limited``
    (over the sender's heartbeat rate limit), each present from the start so alerts see zeros.
    Also ``tooti_gateway_peers_banned_total``: peers banned for flooding (``p2p/peer_bans.py``).
    """

    _RESULTS = ("accepted", "invalid", "rate_limited")

    def __init__(self, counts: Callable[[], Mapping[str, int]]) -> None:
        self._counts = counts

    def collect(self) -> Iterator[Metric]:
        counts = self._counts()
        family = CounterMetricFamily("tooti_gateway_heartbeats", "Heartbeats received, by result", labels=["result"])
        for result in self._RESULTS:
            family.add_metric([result], counts.get(result, 0))
        yield family
        banned = CounterMetricFamily("tooti_gateway_peers_banned", "Peers banned for flooding heartbeats")
        banned.add_metric([], counts.get("peers_banned", 0))
        yield banned
