"""The gateway with an accounting store (real SQLite and real PostgreSQL) over LocalNetwork + FakeBackend.

Keys from the store authenticate, budgets reserve before routing and settle on the node's usage,
an exhausted budget answers OpenAI's 429 insufficient_quota, revocations reach the gateway within
its refresh interval, usage rows carry the serving node, and /v1/usage shows only the caller's rows.
"""

from __future__ import annotations

import time

import anyio
import msgspec
import pytest
from litestar.testing import AsyncTestClient

from tooti.accounting.keycache import KeyCache
from tooti.accounting.receipts import verify_line
from tooti.accounting.records import Settlement, UsageRow
from tooti.accounting.store import AccountingStore
from tooti.accounting.worker import AccountingWorker
from tooti.config.model import Config, GatewaySection, StoreSection, VerificationSection
from tooti.errors import MalformedResponse
from tooti.gateway import create_app
from tooti.network import AdvertisedModel
from tooti.node.local import LocalNetwork
from tooti.node.receipt_signer import ReceiptTally
from tooti.p2p.framing import FrameError, decode_response
from tooti.p2p.identity import generate_identity, peer_id_of
from tooti.testing import FakeBackend, eventually_asyncio, make_plugin_host
from tooti.wire.infer import Done, UsageFrame

pytestmark = pytest.mark.anyio

PROMPT = [{"role": "user", "content": "one two three"}]  # FakeBackend counts 3 prompt tokens


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    url = f"sqlite:///{tmp_path / 'gw.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    s = AccountingStore.open(url)
    yield s
    s.close()


def _network(price: tuple[float, float] | None = None) -> LocalNetwork:
    net = LocalNetwork()
    model = AdvertisedModel(
        name="fake-model",
        backend="fake",
        price_in_per_1k=price[0] if price else None,
        price_out_per_1k=price[1] if price else None,
    )
    net.add_node("peerA", FakeBackend(chunks=4), [model])
    return net


def _config(auth_mode="required") -> Config:
    section = StoreSection(key_refresh_sec=0.1, flush_interval_sec=0.05)
    # No canaries: these tests count what nodes are asked and billed; a canary (sent before a new
    # node's first user request, see docs/security.md) would be one more request in the counts.
    verification = VerificationSection(enabled=False)
    return Config(gateway=GatewaySection(auth_mode=auth_mode, store=section, verification=verification))


async def _wait_for(predicate, timeout=10.0):
    """The store is synchronous: each check runs in a worker thread, off the event loop."""
    return await eventually_asyncio(lambda: anyio.to_thread.run_sync(predicate), timeout=timeout)


def _auth(key):
    return {"authorization": f"Bearer {key}"}


async def test_token_budget_serves_records_then_refuses(store):
    key, rec = store.create_key(budget=30, budget_kind="tokens")
    app = create_app(_config(), _network(), make_plugin_host(), store=store)
    async with AsyncTestClient(app) as client:
        served = 0
        for _ in range(10):
            r = await client.post(
                "/v1/chat/completions",
                json={"model": "fake-model", "messages": PROMPT, "max_tokens": 4},
                headers=_auth(key),
            )
            if r.status_code == 429:
                break
            assert r.status_code == 200, r.text
            served += 1
            await _wait_for(lambda n=served: len(store.usage_rows(key_id=rec.id)) >= n)
        assert r.status_code == 429
        assert r.json()["error"]["type"] == "insufficient_quota"
        assert r.json()["error"]["code"] == "insufficient_quota"
        # 7 tokens per request (3 in, 4 out) against 30: the fifth request finds 28 spent and is the last.
        assert served == 5
        rows = store.usage_rows(key_id=rec.id)
        assert {r.peer_id for r in rows} == {"peerA"}
        assert all((r.prompt_tokens, r.completion_tokens, r.status) == (3, 4, "ok") for r in rows)
        after = store.find_key(rec.id)
        assert after.spent == 35
        assert after.reserved == 0
        report = (await client.get("/v1/usage", headers=_auth(key))).json()
        assert report["key"]["spent"] == 35
        assert report["totals"]["requests"] == 5
        assert len(report["recent"]) == 5
        metrics = (await client.get("/metrics")).text
        assert f'tooti_gateway_key_requests_total{{key_id="{rec.id}",status="ok"}} 5.0' in metrics
        assert 'tooti_gateway_node_tokens_total{kind="completion",peer_id="peerA"} 20.0' in metrics
        assert 'tooti_gateway_key_refused_total{reason="insufficient_quota"} 1.0' in metrics


async def test_money_budget_uses_the_advertised_price(store):
    key, rec = store.create_key(budget=1.0, budget_kind="money")
    app = create_app(_config(), _network(price=(100.0, 50.0)), make_plugin_host(), store=store)
    async with AsyncTestClient(app) as client:
        r = await client.post(
            "/v1/chat/completions",
            json={"model": "fake-model", "messages": PROMPT, "max_tokens": 4},
            headers=_auth(key),
        )
        assert r.status_code == 200
        (row,) = await _wait_for(lambda: store.usage_rows(key_id=rec.id))
        assert row.cost == pytest.approx(3 / 1000 * 100 + 4 / 1000 * 50)
        assert store.find_key(rec.id).spent == pytest.approx(row.cost)


async def test_revoked_and_unknown_keys_and_model_restriction(store):
    key, rec = store.create_key(models=["fake-model"])
    other_key, _ = store.create_key(models=["another-model"])
    app = create_app(_config(), _network(), make_plugin_host(), store=store)
    body = {"model": "fake-model", "messages": PROMPT}
    async with AsyncTestClient(app) as client:
        assert (await client.post("/v1/chat/completions", json=body, headers=_auth(key))).status_code == 200
        assert (await client.post("/v1/chat/completions", json=body, headers=_auth("tk_nope"))).status_code == 401
        denied = await client.post("/v1/chat/completions", json=body, headers=_auth(other_key))
        assert denied.status_code == 403
        assert denied.json()["error"]["code"] == "model_not_allowed"
        late_key, _ = store.create_key()
        await _wait_for(lambda: True)
        assert (await client.post("/v1/chat/completions", json=body, headers=_auth(late_key))).status_code in (200, 401)
        store.revoke_key(rec.id)
        t0 = time.monotonic()
        while (await client.post("/v1/chat/completions", json=body, headers=_auth(key))).status_code != 401:
            assert time.monotonic() - t0 < 5, "revocation did not reach the gateway within 5 s"
            await anyio.sleep(0.05)
        assert (await client.post("/v1/chat/completions", json=body, headers=_auth(late_key))).status_code == 200


async def test_usage_endpoint_shows_only_the_callers_key(store):
    mine, me = store.create_key()
    theirs, them = store.create_key()
    app = create_app(_config(auth_mode="optional"), _network(), make_plugin_host(), store=store)
    body = {"model": "fake-model", "messages": PROMPT}
    async with AsyncTestClient(app) as client:
        for k in (mine, theirs, theirs):
            assert (await client.post("/v1/chat/completions", json=body, headers=_auth(k))).status_code == 200
        await _wait_for(lambda: len(store.usage_rows()) == 3)
        report = (await client.get("/v1/usage", headers=_auth(mine))).json()
        assert report["key"]["id"] == me.id
        assert [r["key_id"] for r in report["recent"]] == [me.id]
        assert report["by_model_day"][0]["model"] == "fake-model"
        anonymous = await client.get("/v1/usage")
        assert anonymous.status_code == 401
        assert them.id not in anonymous.text


async def test_usage_endpoint_counts_every_answered_request_at_once(store):
    """Read-your-writes: rows still waiting for the batch writer are written before the report reads."""
    mine, _ = store.create_key()
    config = Config(
        gateway=GatewaySection(auth_mode="required", store=StoreSection(key_refresh_sec=0.1, flush_interval_sec=60))
    )
    app = create_app(config, _network(), make_plugin_host(), store=store)
    body = {"model": "fake-model", "messages": PROMPT}
    async with AsyncTestClient(app) as client:
        for _ in range(3):
            assert (await client.post("/v1/chat/completions", json=body, headers=_auth(mine))).status_code == 200
        report = (await client.get("/v1/usage", headers=_auth(mine))).json()
        assert report["totals"]["requests"] == 3
        assert len(report["recent"]) == 3


async def test_auth_off_still_meters_known_keys(store):
    key, rec = store.create_key(budget=5, budget_kind="tokens")
    app = create_app(_config(auth_mode="off"), _network(), make_plugin_host(), store=store)
    body = {"model": "fake-model", "messages": PROMPT, "max_tokens": 4}
    async with AsyncTestClient(app) as client:
        assert (await client.post("/v1/chat/completions", json=body, headers=_auth("unused"))).status_code == 200
        assert (await client.post("/v1/chat/completions", json=body, headers=_auth(key))).status_code == 200
        await _wait_for(lambda: store.find_key(rec.id).spent == 7)
        assert (await client.post("/v1/chat/completions", json=body, headers=_auth(key))).status_code == 429
        rows = await _wait_for(lambda: (r := store.usage_rows()) and len(r) == 2 and r)
        assert sorted(r.key_id or "-" for r in rows) == ["-", rec.id]


async def test_streamed_request_settles_too(store):
    key, rec = store.create_key(budget=100, budget_kind="tokens", rpm=100, tpm=1000)
    app = create_app(_config(), _network(), make_plugin_host(), store=store)
    async with AsyncTestClient(app) as client:
        r = await client.post(
            "/v1/chat/completions",
            json={"model": "fake-model", "messages": PROMPT, "stream": True},
            headers=_auth(key),
        )
        assert r.status_code == 200
        assert r.text.rstrip().endswith("data: [DONE]")
        await _wait_for(lambda: store.find_key(rec.id).spent == 7)
        assert store.find_key(rec.id).reserved == 0


def test_full_buffer_drops_rows_but_keeps_settlements(tmp_path):
    store = AccountingStore.open(f"sqlite:///{tmp_path / 'w.db'}")
    dropped = []
    worker = AccountingWorker(
        store,
        KeyCache(),
        flush_interval_s=60,
        key_refresh_s=60,
        buffer_rows=100,
        stale_after_s=600,
        on_dropped=lambda: dropped.append(1),
    )
    _, rec = store.create_key(budget=1000, budget_kind="tokens")
    for i in range(105):
        row = UsageRow(request_id=str(i), at=1.0, key_id=rec.id, model="m", peer_id="p", duration_ms=1.0)
        worker.submit(row, Settlement(key_id=rec.id, reservation_id=None, reserved=0, spent=1, tokens=1, at=1.0))
    assert len(dropped) == 5
    assert worker.pending() == 100 + 105
    worker.start()
    worker.stop()
    assert len(store.usage_rows(limit=1000)) == 100
    assert store.find_key(rec.id).spent == 105
    store.close()


class SigningNetwork(LocalNetwork):
    """LocalNetwork whose node signs receipts like a real node agent; ``inflate`` makes it lie."""

    def __init__(self, node_key, inflate: int = 0) -> None:
        super().__init__()
        self.node_key = node_key
        self.inflate = inflate
        self.asked = []

    async def infer(self, peer_id, request):
        self.asked.append(request.want_receipt)
        frames = super().infer(peer_id, request)
        if not request.want_receipt:
            async for f in frames:
                yield f
            return
        tally = ReceiptTally(self.node_key, peer_id, request)
        async for f in self._lie(frames):
            if isinstance(f, Done):
                yield tally.receipt()
            tally.see(f)
            yield self._shift(f, -self.inflate)

    async def _lie(self, frames):
        # the receipt is signed over inflated counts; the usage frame the gateway relays is not
        async for f in frames:
            yield self._shift(f, self.inflate)

    @staticmethod
    def _shift(frame, by):
        if not isinstance(frame, UsageFrame) or not by:
            return frame
        return UsageFrame(
            prompt_tokens=frame.prompt_tokens,
            completion_tokens=frame.completion_tokens + by,
            total_tokens=frame.total_tokens + by,
        )


@pytest.mark.parametrize("inflate", [0, 50], ids=["honest", "inflating"])
async def test_receipts_are_requested_checked_countersigned_and_flagged(tmp_path, inflate):
    store = AccountingStore.open(f"sqlite:///{tmp_path / 'r.db'}")
    node_key, gateway_key = generate_identity(), generate_identity()
    net = SigningNetwork(node_key, inflate=inflate)
    peer = peer_id_of(node_key)
    net.add_node(peer, FakeBackend(chunks=4), [AdvertisedModel(name="fake-model", backend="fake")])
    key, rec = store.create_key()
    app = create_app(_config(), net, make_plugin_host(), store=store, signing_key=gateway_key)
    async with AsyncTestClient(app) as client:
        for stream in (False, True):
            r = await client.post(
                "/v1/chat/completions",
                json={"model": "fake-model", "messages": PROMPT, "stream": stream},
                headers=_auth(key),
            )
            assert r.status_code == 200
        rows = await _wait_for(lambda: (got := store.usage_rows(key_id=rec.id)) and len(got) == 2 and got)
    assert net.asked == [True, True]
    for row in rows:
        assert row.receipt is not None
        assert row.receipt_mismatch is bool(inflate)
        checked = verify_line(row.receipt.encode())  # both signatures hold either way
        assert checked.receipt.node == peer
        assert checked.gateway == peer_id_of(gateway_key)
        assert checked.flags == ([] if not inflate else ["tokens_differ_from_usage"])
        assert (row.prompt_tokens, row.completion_tokens) == (3, 4)  # the gateway bills what it relayed
    assert store.receipts(peer_id=peer) == [r.receipt for r in sorted(rows, key=lambda r: r.at)]
    store.close()


async def test_embeddings_are_billed_their_input_tokens_with_an_agreeing_receipt(tmp_path):
    """An embeddings answer's usage has no completion_tokens: it is still billed and its receipt agrees."""
    store = AccountingStore.open(f"sqlite:///{tmp_path / 'e.db'}")
    node_key = generate_identity()
    net = SigningNetwork(node_key)
    net.add_node(peer_id_of(node_key), FakeBackend(), [AdvertisedModel(name="fake-model", backend="fake")])
    key, rec = store.create_key(budget=100, budget_kind="tokens")
    app = create_app(_config(), net, make_plugin_host(), store=store, signing_key=generate_identity())
    async with AsyncTestClient(app) as client:
        r = await client.post(
            "/v1/embeddings", json={"model": "fake-model", "input": ["a b", "c d e"]}, headers=_auth(key)
        )
        assert r.status_code == 200
        assert r.json()["usage"] == {"prompt_tokens": 5, "total_tokens": 5}  # OpenAI's embeddings shape
        rows = await _wait_for(lambda: store.usage_rows(key_id=rec.id))
        await _wait_for(lambda: store.find_key(rec.id).spent == 5)
    (row,) = rows
    assert (row.prompt_tokens, row.completion_tokens) == (5, 0)
    assert row.receipt is not None
    assert not row.receipt_mismatch
    assert verify_line(row.receipt.encode()).flags == []
    store.close()


async def test_a_request_refused_before_routing_releases_its_reservation(store):
    key, rec = store.create_key(budget=1000, budget_kind="tokens")
    app = create_app(_config(), _network(), make_plugin_host(), store=store)
    async with AsyncTestClient(app) as client:
        r = await client.post(
            "/v1/chat/completions", json={"model": "no-such-model", "messages": PROMPT}, headers=_auth(key)
        )
        assert r.status_code == 404
        rows = await _wait_for(lambda: store.usage_rows(key_id=rec.id))
        assert rows[0].status == "failed"
        assert rows[0].peer_id is None
        await _wait_for(lambda: store.find_key(rec.id).reserved == 0)
        assert store.find_key(rec.id).spent == 0


class NegativeUsageNetwork(LocalNetwork):
    """A node that reports a negative completion count, which would refund the key's budget if billed.

    Frames go through the wire's msgpack encoding and the gateway's frame decoder, as over libp2p.
    """

    async def infer(self, peer_id, request):
        async for f in super().infer(peer_id, request):
            if isinstance(f, UsageFrame):
                f = UsageFrame(prompt_tokens=f.prompt_tokens, completion_tokens=-1000, total_tokens=-997)  # noqa: PLW2901
            try:
                yield decode_response(msgspec.msgpack.encode(f))
            except FrameError as exc:
                raise MalformedResponse(str(exc)) from None


async def test_a_negative_token_count_from_a_node_refunds_nothing(tmp_path):
    store = AccountingStore.open(f"sqlite:///{tmp_path / 'n.db'}")
    net = NegativeUsageNetwork()
    net.add_node("peerA", FakeBackend(chunks=4), [AdvertisedModel(name="fake-model", backend="fake")])
    key, rec = store.create_key(budget=100, budget_kind="tokens")
    app = create_app(_config(), net, make_plugin_host(), store=store)
    async with AsyncTestClient(app) as client:
        r = await client.post(
            "/v1/chat/completions", json={"model": "fake-model", "messages": PROMPT}, headers=_auth(key)
        )
        assert r.status_code == 502  # a malformed answer, not a crash of the gateway
        (row,) = await _wait_for(lambda: store.usage_rows(key_id=rec.id))
        await _wait_for(lambda: store.find_key(rec.id).reserved == 0)
    assert row.status == "failed"
    assert store.find_key(rec.id).spent >= 0
    store.close()


def test_billing_clamps_token_counts_even_without_the_wire_bound():
    from tooti.gateway.metering import _bounded

    assert (_bounded(-5), _bounded(7), _bounded(10**12)) == (0, 7, 10_000_000)
