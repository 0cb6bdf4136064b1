"""The explorer routes over LocalNetwork + FakeBackend: page headers, summary contents, admin key, prices.

The real-browser test against real nodes (one a real liar) is ``tests/test_explorer_browser.py``;
these check the contracts the page relies on, fast, including what must never be in the summary.
"""

from __future__ import annotations

import json

import pytest
from litestar.testing import AsyncTestClient

from tooti.accounting.store import AccountingStore
from tooti.api_key_format import generate_key, hash_key
from tooti.config.model import Config, GatewaySection, StoreSection, VerificationSection
from tooti.gateway import create_app
from tooti.network import AdvertisedModel
from tooti.network_capabilities import NetworkCapabilities
from tooti.node.local import LocalNetwork
from tooti.testing import FakeBackend, make_plugin_host

pytestmark = pytest.mark.anyio

CHAT = {"model": "fake-model", "messages": [{"role": "user", "content": "a secret prompt 7f3a"}]}


@pytest.fixture
def anyio_backend():
    return "asyncio"


def _network() -> LocalNetwork:
    net = LocalNetwork()
    net.add_node(
        "peerA",
        FakeBackend(chunks=4),
        [AdvertisedModel(name="fake-model", aliases=("fake",), context_length=2048, price_in_per_1k=0.5)],
    )
    net.add_node(
        "peerB",
        FakeBackend(chunks=4),
        [AdvertisedModel(name="fake-model", context_length=4096, price_in_per_1k=0.25, price_out_per_1k=1.0)],
    )
    return net


def _config(**gateway: object) -> Config:
    verification = VerificationSection(enabled=False)
    return Config(gateway=GatewaySection(verification=verification, **gateway))  # type: ignore[arg-type]


async def test_root_redirects_to_the_page_and_the_page_carries_a_strict_csp():
    async with AsyncTestClient(create_app(_config(), _network(), make_plugin_host())) as c:
        r = await c.get("/", follow_redirects=False)
        assert r.status_code == 302
        assert r.headers["location"] == "/explorer"
        kept = await c.get("/?poll=1", follow_redirects=False)
        assert kept.headers["location"] == "/explorer?poll=1"
        page = await c.get("/explorer")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp
        assert "unsafe-inline" not in csp
        assert "frame-ancestors 'none'" in csp
        assert "<table" in page.text
        assert '<script src="/explorer/app.js"' in page.text
        assert "<script>" not in page.text  # no inline script: the CSP would block it
        js = await c.get("/explorer/app.js")
        assert js.headers["content-type"].startswith("text/javascript")
        assert "innerHTML" not in js.text  # node-supplied text goes in with textContent only
        css = await c.get("/explorer/explorer.css")
        assert css.headers["content-type"].startswith("text/css")


async def test_summary_shows_models_nodes_and_counters_and_no_prompt():
    async with AsyncTestClient(create_app(_config(), _network(), make_plugin_host())) as c:
        assert (await c.post("/v1/chat/completions", json=CHAT)).status_code == 200
        assert (await c.post("/v1/chat/completions", json={**CHAT, "model": "nope"})).status_code == 404
        for _ in range(3):
            r = await c.get("/explorer/summary")
        assert r.status_code == 200
        assert r.headers["cache-control"] == "no-store"
        body = r.json()
        assert "7f3a" not in r.text
        assert [n["peer_id"] for n in body["nodes"]] == ["peerA", "peerB"]
        (model,) = body["models"]  # the alias is on its model's row, not a row of its own
        assert model["id"] == "fake-model"
        assert model["aliases"] == ["fake"]
        assert model["nodes"] == 2
        assert model["context_length"] == 4096
        assert model["pricing"] == {
            "input_per_1k": {"min": 0.25, "max": 0.5},
            "output_per_1k": {"min": 1.0, "max": 1.0},
        }
        g = body["gateway"]
        # The explorer's own polls are not user requests.
        assert g["requests_total"] == 2
        assert g["refused_total"] == 1
        assert g["errors_total"] == 0
        served = [n for n in body["nodes"] if n["measured"]["served"]]
        assert len(served) == 1
        assert served[0]["measured"]["ttft_ms"] is not None
        assert served[0]["reachability"]["answered_gateway"] is True
        # LocalNetwork does not declare connection_direction: not known, and not guessed.
        assert served[0]["reachability"]["direction_known"] is False
        assert served[0]["reachability"]["connection"] is None
        assert served[0]["reachability"]["connection_opened_by"] is None
        assert body["usage"]["shown"] is False
        assert "admin_key_hashes" in body["usage"]["reason"]


class _DirectedNetwork(LocalNetwork):
    """A LocalNetwork that declares who opened each connection (peerA dialled by the gateway)."""

    @property
    def capabilities(self) -> NetworkCapabilities:
        return NetworkCapabilities(connection_direction={"peerA": "outbound", "peerB": "inbound"}.get)


async def test_summary_shows_the_observed_connection_direction_beside_the_claimed_addresses():
    net = _DirectedNetwork()
    for peer in ("peerA", "peerB"):
        net.add_node(peer, FakeBackend(chunks=4), [AdvertisedModel(name="fake-model")])
    async with AsyncTestClient(create_app(_config(), net, make_plugin_host())) as c:
        rows = {n["peer_id"]: n["reachability"] for n in (await c.get("/explorer/summary")).json()["nodes"]}
    assert rows["peerA"]["direction_known"] is True
    assert rows["peerA"]["connection"] == "direct"
    assert rows["peerA"]["connection_opened_by"] == "gateway"
    assert rows["peerB"]["connection"] == "via the node's outbound connection"
    assert rows["peerB"]["connection_opened_by"] == "node"
    assert "claimed_addrs" in rows["peerA"]


async def test_models_list_carries_the_announced_price_range():
    async with AsyncTestClient(create_app(_config(), _network(), make_plugin_host())) as c:
        data = {m["id"]: m for m in (await c.get("/v1/models")).json()["data"]}
        assert data["fake-model"]["pricing"]["input_per_1k"] == {"min": 0.25, "max": 0.5}
        assert data["fake"]["pricing"] == {"input_per_1k": {"min": 0.5, "max": 0.5}}


async def test_summary_is_behind_the_api_key_but_the_page_is_not():
    key = generate_key()
    app = create_app(_config(auth_mode="required", api_key_hashes=[hash_key(key)]), _network(), make_plugin_host())
    async with AsyncTestClient(app) as c:
        assert (await c.get("/explorer")).status_code == 200
        assert (await c.get("/explorer/summary")).status_code == 401
        ok = await c.get("/explorer/summary", headers={"Authorization": f"Bearer {key}"})
        assert ok.status_code == 200


@pytest.fixture
def store(tmp_path):
    s = AccountingStore.open(f"sqlite:///{tmp_path / 'gw.db'}")
    yield s
    s.close()


async def test_usage_per_key_only_with_the_admin_key(store):
    admin = generate_key()
    user_key, record = store.create_key(name="alice")
    config = _config(
        auth_mode="optional",
        admin_key_hashes=[hash_key(admin)],
        store=StoreSection(key_refresh_sec=0.1, flush_interval_sec=0.05),
    )
    app = create_app(config, _network(), make_plugin_host(), store=store)
    async with AsyncTestClient(app) as c:
        auth = {"Authorization": f"Bearer {user_key}"}
        assert (await c.post("/v1/chat/completions", json=CHAT, headers=auth)).status_code == 200
        plain = (await c.get("/explorer/summary", headers={"Authorization": f"Bearer {user_key}"})).json()
        assert plain["usage"]["shown"] is False
        assert "keys" not in plain["usage"]
        wrong = await c.get("/explorer/summary", headers={"X-Tooti-Admin-Key": user_key})
        assert wrong.status_code == 401
        assert wrong.json()["error"]["code"] == "invalid_admin_key"
        got = None
        for _ in range(100):  # usage rows are written by the metering thread, a few ms later
            r = await c.get("/explorer/summary", headers={"X-Tooti-Admin-Key": admin})
            assert r.status_code == 200
            got = r.json()["usage"]
            if got["shown"] and got["keys"] and got["keys"][0]["requests"]:
                break
        assert got is not None
        assert got["shown"] is True
        (row,) = got["keys"]
        assert row["id"] == record.id
        assert row["name"] == "alice"
        assert row["requests"] == 1
        text = json.dumps(got)
        assert user_key not in text
        assert admin not in text
        assert record.key_hash not in text


async def test_admin_header_is_refused_when_no_admin_key_is_configured():
    async with AsyncTestClient(create_app(_config(), _network(), make_plugin_host())) as c:
        r = await c.get("/explorer/summary", headers={"X-Tooti-Admin-Key": generate_key()})
        assert r.status_code == 401


def test_admin_key_hashes_are_validated_like_api_key_hashes():
    with pytest.raises(ValueError, match="sha256"):
        GatewaySection(admin_key_hashes=["plaintext-admin-key"])
