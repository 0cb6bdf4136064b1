"""What a node announces: its advertised models and the heartbeat built from its current state."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from tooti import __version__
from tooti.network import AdvertisedModel
from tooti.p2p.heartbeat import Hardware, Heartbeat

if TYPE_CHECKING:
    from tooti.backends.protocol import LoadSnapshot, ModelInfo
    from tooti.config.model import ModelsSection
    from tooti.node.perf import PerfTracker

__all__ = ["advertised_models", "build_heartbeat"]

log = logging.getLogger(__name__)


def advertised_models(served: list[ModelInfo], section: ModelsSection, backend: str) -> list[AdvertisedModel]:
    """The models to announce: those served (filtered by ``models.advertised`` when set), priced.

    A model listed in ``models.advertised`` that the backend does not serve (by name or alias) is
    warned about and not announced: announcing it would route requests to a certain failure.
    """
    by_name: dict[str, ModelInfo] = {}
    for info in served:
        by_name.setdefault(info.id, info)
        for alias in info.aliases:
            by_name.setdefault(alias, info)
    chosen: list[ModelInfo] = []
    if section.advertised:
        for name in section.advertised:
            found = by_name.get(name)
            if found is None:
                log.warning("model %r is in models.advertised but the backend does not serve it; not announced", name)
            elif found not in chosen:
                chosen.append(found)
    else:
        chosen = list(served)
    out: list[AdvertisedModel] = []
    for info in chosen:
        price = section.pricing.get(info.id) or next(
            (section.pricing[a] for a in info.aliases if a in section.pricing), None
        )
        out.append(
            AdvertisedModel(
                name=info.id,
                aliases=info.aliases,
                context_length=info.context_length,
                digest=info.digest,
                backend=backend,
                price_in_per_1k=price.input_per_1k if price else None,
                price_out_per_1k=price.output_per_1k if price else None,
            )
        )
    return out


def build_heartbeat(
    *,
    node_id: str,
    name: str,
    models: list[AdvertisedModel],
    load: LoadSnapshot,
    node_in_flight: int,
    perf: PerfTracker,
    region: str | None,
    hardware: Hardware,
    addrs: list[str],
    started: float,
    certificate: str | None = None,
) -> Heartbeat:
    """Assemble one heartbeat; ``load`` is the backend's own view, ``node_in_flight`` the node's."""
    return Heartbeat(
        node_id=node_id,
        name=name,
        models=tuple(models),
        in_flight=max(load.in_flight, node_in_flight),
        queued=load.queued,
        capacity=load.capacity,
        ttft_ms=perf.ttft_ms,
        tokens_per_s=perf.tokens_per_s,
        region=region,
        hardware=hardware,
        version=__version__,
        timestamp_ms=int(time.time() * 1000),
        uptime_s=round(time.monotonic() - started, 1),
        addrs=tuple(addrs),
        certificate=certificate,
    )
