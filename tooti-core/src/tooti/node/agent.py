"""The node agent's trio main: serve a backend's inference over libp2p and announce it.

:func:`run_node` is importable so ``tooti up`` and tests can run a node in-process; ``tooti node
start`` wraps it with config loading, plugin loading and signal handling.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from tooti.config import default_identity_file
from tooti.errors import BackendError, TootiError
from tooti.node.announce import advertised_models, build_heartbeat
from tooti.node.gateway_admission import allowed_gateways, member_check, own_certificate
from tooti.node.handler import handle_request
from tooti.node.hardware import detect_hardware
from tooti.node.health import BackendWatch, WatchedBackend
from tooti.node.perf import PerfTracker
from tooti.node.receipt_signer import ReceiptTally
from tooti.node.served_models import refuse_unserved
from tooti.p2p.heartbeat import HeartbeatError, encode_heartbeat
from tooti.p2p.identity import load_or_create_identity, peer_id_of
from tooti.p2p.infer_server import InferService
from tooti.p2p.runtime import P2PRuntime, settings_from_config

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from trio_typing import TaskStatus

    from tooti.backends.protocol import InferenceBackend, LoadSnapshot
    from tooti.config.model import Config
    from tooti.network import AdvertisedModel
    from tooti.wire.infer import InferRequest, ResponseFrame

__all__ = ["NodeStarted", "UnhealthyBackend", "run_node"]

log = logging.getLogger(__name__)

PROVIDE_RETRY_SEC = 5.0
PROVIDE_REFRESH_SEC = 300.0


class UnhealthyBackend(TootiError):
    """The backend failed its health check at start; the node refuses to serve."""


@dataclass(frozen=True)
class NodeStarted:
    """What :func:`run_node` reports once it serves: who it is and where to reach it."""

    peer_id: str
    addrs: list[str]
    models: list[AdvertisedModel]
    runtime: P2PRuntime
    service: InferService
    perf: PerfTracker
    watch: BackendWatch
    metrics_port: int | None = None


async def _check_backend(backend: InferenceBackend, config: Config) -> list[AdvertisedModel]:
    health = await backend.health()
    if not health.ok:
        raise UnhealthyBackend(f"backend {backend.name!r} is unhealthy: {health.detail or 'no detail'}")
    models = advertised_models(await backend.list_models(), config.models, backend.name)
    if not models:
        log.warning("backend %r serves none of the advertised models; the node will announce none", backend.name)
    return models


async def _load(backend: InferenceBackend) -> LoadSnapshot:
    from tooti.backends.protocol import LoadSnapshot

    try:
        with trio.move_on_after(2):
            return await backend.load()
    except BackendError as exc:
        log.debug("backend load() failed: %s", exc.message)
    return LoadSnapshot()


class _Beat:
    """Wakes the heartbeat loop early, so a change of health is announced at once, not an interval later."""

    def __init__(self) -> None:
        self.now = trio.Event()

    def soon(self) -> None:
        self.now.set()

    async def wait(self, interval: float) -> None:
        with trio.move_on_after(interval):
            await self.now.wait()
        self.now = trio.Event()


async def _heartbeat_loop(
    runtime: P2PRuntime,
    backend: InferenceBackend,
    service: InferService,
    perf: PerfTracker,
    config: Config,
    watch: BackendWatch,
    beat: _Beat,
    certificate: str | None,
) -> None:
    hardware, started = detect_hardware(), time.monotonic()
    while True:
        heartbeat = build_heartbeat(
            node_id=runtime.peer_id,
            name=config.node.name,
            models=watch.announced,
            load=await _load(backend),
            node_in_flight=service.in_flight,
            perf=perf,
            region=config.node.region,
            hardware=hardware,
            addrs=runtime.listen_addrs(),
            started=started,
            certificate=certificate,
        )
        try:
            await runtime.publish(encode_heartbeat(heartbeat))
        except HeartbeatError as exc:
            log.error("heartbeat not sent: %s", exc)
        await beat.wait(config.heartbeat.interval_sec)


async def _provide_loop(runtime: P2PRuntime, models: list[AdvertisedModel]) -> None:
    """Provide one DHT record per model; retry quickly until peers exist, then refresh slowly."""
    while True:
        ok = True
        for model in models:
            ok = await runtime.provide(model.name) and ok
        await trio.sleep(PROVIDE_REFRESH_SEC if ok and runtime.connected_peers() else PROVIDE_RETRY_SEC)


async def run_node(
    config: Config,
    backend: InferenceBackend,
    *,
    task_status: TaskStatus[NodeStarted] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``backend`` (already started) on the network until cancelled; never closes the backend.

    Raises:
        UnhealthyBackend: the health check failed.
    """
    certificate = own_certificate(config.node.admission)  # a bad file stops the start, naming the key
    models = await _check_backend(backend, config)
    key_file = Path(config.node.identity_key_file or default_identity_file()).expanduser()
    key_pair = load_or_create_identity(key_file)
    perf = PerfTracker()
    watch = BackendWatch(backend, config.models, config.heartbeat.interval_sec, models)
    watched = WatchedBackend(backend, watch)

    peer_id = peer_id_of(key_pair)

    def handler(request: InferRequest) -> AsyncIterator[ResponseFrame]:
        tally = ReceiptTally(key_pair, peer_id, request) if request.want_receipt else None
        return handle_request(watched, request, perf=perf, tally=tally)  # type: ignore[arg-type]  # a proxy of the protocol

    service = InferService(
        refuse_unserved(handler, lambda: watch.announced),
        allowed_peers=allowed_gateways(config.node),
        admit=member_check(config.node),
        max_concurrent=config.node.max_concurrent_requests,
        write_window=config.node.write_window_ms / 1000.0,
    )
    runtime = P2PRuntime(key_pair, settings_from_config(config, identity_file=key_file), service=service)
    metrics = None
    if config.metrics.enabled:
        from tooti.node.prometheus_endpoint import start_metrics_server

        metrics = start_metrics_server(config.metrics.listen, service, perf, runtime, watch)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(runtime.run)
            beat = _Beat()
            nursery.start_soon(_heartbeat_loop, runtime, backend, service, perf, config, watch, beat, certificate)
            nursery.start_soon(watch.run, beat.soon)
            nursery.start_soon(_provide_loop, runtime, models)
            port = metrics.server_port if metrics is not None else None
            task_status.started(
                NodeStarted(
                    runtime.peer_id, runtime.listen_addrs(), models, runtime, service, perf, watch, metrics_port=port
                )
            )
    finally:
        if metrics is not None:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(metrics.shutdown)  # blocks up to its 0.5 s poll
            metrics.server_close()
