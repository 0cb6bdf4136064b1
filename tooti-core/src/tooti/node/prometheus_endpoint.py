"""The node agent's HTTP endpoint (``metrics.enabled``): Prometheus metrics, ``/health`` and ``/ready``.

``/ready`` answers 200 only while the model server is healthy and the node announces models, so a
load balancer or an operator's probe sees the same truth the gateways see in the heartbeats;
``/health`` answers 200 while the node process runs.

A private registry (not the process default) and a collector that reads the inference service,
the performance EMAs and the heartbeat registry at scrape time, so nothing on the request path
touches Prometheus.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from wsgiref.simple_server import WSGIServer

    from prometheus_client.metrics_core import Metric

    from tooti.node.health import BackendWatch
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


def readiness(watch: BackendWatch) -> tuple[bool, dict[str, object]]:
    """Whether the node can serve, and the JSON body ``/ready`` answers (no internal addresses)."""
    ready = watch.healthy and bool(watch.models)
    if not watch.healthy:
        detail = watch.detail
    elif not watch.models:
        detail = "the model server serves none of the advertised models"
    else:
        detail = "ok"
    return ready, {"ready": ready, "backend_healthy": watch.healthy, "detail": detail, "models": len(watch.announced)}


def _ops_app(metrics: Callable[..., Iterable[bytes]], watch: BackendWatch) -> Callable[..., Iterable[bytes]]:
    import json

    def app(environ: dict[str, object], start_response: Callable[..., object]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO")
        if path == "/ready":
            ready, body = readiness(watch)
            status = "200 OK" if ready else "503 Service Unavailable"
        elif path == "/health":
            status, body = "200 OK", {"status": "ok"}
        else:
            return metrics(environ, start_response)
        data = json.dumps(body).encode()
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        return [data]

    return app


def start_metrics_server(
    listen: str, service: InferService, perf: PerfTracker, runtime: P2PRuntime, watch: BackendWatch
) -> WSGIServer:
    """Serve ``/metrics``, ``/health`` and ``/ready`` on ``HOST:PORT`` in a daemon thread.

    Call ``shutdown()`` on the result to stop.
    """
    import threading
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    from prometheus_client import CollectorRegistry, make_wsgi_app

    class _Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True

    class _Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            """One access log line per probe would drown the node's log."""

    host, _, port = listen.rpartition(":")
    registry = CollectorRegistry(auto_describe=True)
    registry.register(NodeCollector(service, perf, runtime))
    app = _ops_app(make_wsgi_app(registry), watch)
    server = make_server(host, int(port), app, server_class=_Server, handler_class=_Quiet)
    threading.Thread(target=server.serve_forever, name="tooti-node-http", daemon=True).start()
    log.info("metrics, /health and /ready on http://%s:%s", host, server.server_port)
    return server
