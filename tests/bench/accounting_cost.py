"""What accounting adds to a request: the same non-streamed chats through gateways with and without a store.

Four gateways run in this process on real uvicorn servers over one in-process node (LocalNetwork +
FakeBackend, no libp2p, so the differences are the gateway's own): no store; a SQLite store with a
key that has no budget (memory-only key check, usage row queued); a SQLite store with a token budget
(one worker-thread call to reserve before routing); and the same on PostgreSQL when a server is
available (``TOOTI_TEST_PG_URL`` or the local binaries). Requests go one at a time, interleaved
across the gateways so drift hits all of them alike; *added* = p50 minus the no-store p50.
"""

from __future__ import annotations

import statistics
import time
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from pathlib import Path


def _pg_url() -> tuple[str | None, Any]:
    import os

    from tooti.testing.postgres import create_database, start_temporary_server

    server = None
    base = os.environ.get("TOOTI_TEST_PG_URL")
    if not base:
        try:
            server = start_temporary_server()
        except RuntimeError:
            return None, None
        base = server.url
    return create_database(base), server


def _serve(store: Any, tmp: Path) -> tuple[Any, str]:
    from tooti.config.model import Config, GatewaySection, StoreSection, VerificationSection
    from tooti.gateway import create_app
    from tooti.gateway.server import ServerThread
    from tooti.network import AdvertisedModel
    from tooti.node.local import LocalNetwork
    from tooti.testing import FakeBackend, make_plugin_host

    net = LocalNetwork()
    net.add_node("peerA", FakeBackend(chunks=4), [AdvertisedModel(name="fake-model", backend="fake")])
    # FakeBackend answers every prompt alike, which canaries rightly quarantine as a fixed reply.
    config = Config(
        gateway=GatewaySection(
            auth_mode="optional",
            store=StoreSection(enabled=store is not None),
            verification=VerificationSection(enabled=False),
        )
    )
    server = ServerThread(create_app(config, net, make_plugin_host(), store=store))
    return server, server.start()


def _key(name: str, store: Any) -> str | None:
    if store is None:
        return None
    budgeted = name.endswith("budget")
    key: str = store.create_key(budget=1e12 if budgeted else None, budget_kind="tokens" if budgeted else None)[0]
    return key


def _measure(targets: dict[str, tuple[str, str | None]], n: int, warmup: int = 50) -> dict[str, list[float]]:
    """Milliseconds per request for each target, requests interleaved across targets."""
    body = {"model": "fake-model", "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 4}
    samples: dict[str, list[float]] = {name: [] for name in targets}
    with httpx.Client(timeout=30) as client:
        for i in range(n + warmup):
            for name, (base, key) in targets.items():
                headers = {"authorization": f"Bearer {key}"} if key else {}
                t0 = time.perf_counter()
                r = client.post(f"{base}/v1/chat/completions", json=body, headers=headers)
                elapsed = time.perf_counter() - t0
                if r.status_code != 200:
                    raise RuntimeError(f"{name}: {r.status_code} {r.text[:200]}")
                if i >= warmup:
                    samples[name].append(elapsed * 1000.0)
    return samples


async def accounting(workdir: Path, *, quick: bool) -> dict[str, Any]:
    """Added p50 of accounting per configuration (ms) and the raw p50s."""
    from tooti.accounting.store import AccountingStore

    workdir.mkdir(parents=True, exist_ok=True)
    n = 60 if quick else 600
    stores: dict[str, AccountingStore | None] = {
        "none": None,
        "sqlite_unbudgeted": AccountingStore.open(f"sqlite:///{workdir / 'a.db'}"),
        "sqlite_budget": AccountingStore.open(f"sqlite:///{workdir / 'b.db'}"),
    }
    pg_url, pg_server = _pg_url()
    if pg_url is not None:
        stores["postgres_budget"] = AccountingStore.open(pg_url)
    keys = {name: _key(name, store) for name, store in stores.items()}
    servers = {name: _serve(store, workdir) for name, store in stores.items()}
    try:
        samples = _measure({name: (base, keys[name]) for name, (_, base) in servers.items()}, n)
    finally:
        for server, _ in servers.values():
            server.stop()
        for store in stores.values():
            if store is not None:
                store.close()
        if pg_server is not None:
            pg_server.stop()
    p50 = {name: statistics.median(v) for name, v in samples.items()}
    out: dict[str, Any] = {"requests_each": n, "p50_ms": {k: round(v, 3) for k, v in p50.items()}}
    for name in stores:
        if name != "none":
            out[f"{name}_added_p50_ms"] = round(p50[name] - p50["none"], 3)
    return out
