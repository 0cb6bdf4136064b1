"""The node agent's Prometheus endpoint (``metrics.enabled``): counters read live from the node.

A private registry (not the process default) and a collector that reads the inference service,
the performance EMAs and the heartbeat registry at scrape time, so nothing on the request path
touches Prometheus.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator
    from wsgiref.simple_server import WSGIServer

    from prometheus_client.metrics_core import Metric

    from tooti.node.perf import PerfTracker
    from tooti.p2p.infer_server import InferService
    from tooti.p2p.runtime import P2PRuntime

__all__ = ["NodeCollector", "start_metrics_server"]

log = logging.getLogger(__name__)


class NodeCollector:
    """Exposes ``tooti_node_*`` metrics of one node."""

    def __init__(self, service: InferService, perf: PerfTracker, runtime: P2PRuntime) -> None:
        self.service = service
        self.perf = perf
        self.runtime = runtime

    def collect(self) -> Iterator[Metric]:
        """Called by prometheus_client at each scrape (in its HTTP thread; reads plain ints/floats)."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        s = self.service
        yield GaugeMetricFamily("tooti_node_in_flight", "Inference requests being served", value=s.in_flight)
        requests = CounterMetricFamily("tooti_node_requests", "Inference streams by outcome", labels=["outcome"])
        for outcome, value in (
            ("served", s.served),
            ("rejected", s.rejected),
            ("malformed", s.malformed),
            ("cancelled", s.cancelled),
        ):
            requests.add_metric([outcome], value)
        yield requests
        if self.perf.ttft_ms is not None:
            yield GaugeMetricFamily("tooti_node_ttft_ms", "EMA of time to first token (ms)", value=self.perf.ttft_ms)
        if self.perf.tokens_per_s is not None:
            yield GaugeMetricFamily(
                "tooti_node_decode_tokens_per_second", "EMA of decode speed", value=self.perf.tokens_per_s
            )
        registry = self.runtime.registry
        yield GaugeMetricFamily("tooti_node_known_nodes", "Other live nodes heard", value=len(registry.snapshot()))
        yield CounterMetricFamily(
            "tooti_node_heartbeats_dropped",
            "Heartbeats rejected (spoofed, malformed, out of bounds, over the rate limit)",
            value=registry.dropped,
        )


def start_metrics_server(listen: str, service: InferService, perf: PerfTracker, runtime: P2PRuntime) -> WSGIServer:
    """Serve ``/metrics`` on ``HOST:PORT`` in a daemon thread; call ``shutdown()`` on the result to stop."""
    from prometheus_client import CollectorRegistry, start_http_server

    host, _, port = listen.rpartition(":")
    registry = CollectorRegistry(auto_describe=True)
    registry.register(NodeCollector(service, perf, runtime))
    server, _thread = start_http_server(int(port), addr=host, registry=registry)
    log.info("metrics on http://%s:%s/metrics", host, server.server_port)
    return server
