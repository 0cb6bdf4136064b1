"""Access control: API keys (off / optional / required), per-key rate limit, CORS, body size cap."""

from __future__ import annotations

import pytest
from litestar.testing import AsyncTestClient

from tooti.config.model import Config, GatewaySection
from tooti.gateway import create_app
from tooti.gateway.api_keys import KeyRing, generate_key, hash_key
from tooti.gateway.ratelimit import RateLimiter
from tooti.node.local import LocalNetwork
from tooti.testing import FakeBackend, make_plugin_host

pytestmark = pytest.mark.anyio

CHAT = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}
KEY = "tk_test_key_1"
OTHER = "tk_test_key_2"


@pytest.fixture
def anyio_backend():
    return "asyncio"


def app_for(**gateway):
    net = LocalNetwork()
    net.add_node("peerA", FakeBackend(), ["fake-model"])
    return create_app(Config(gateway=GatewaySection(**gateway)), net, make_plugin_host())


async def call(app, headers=None, path="/v1/chat/completions"):
    async with AsyncTestClient(app) as c:
        if path.endswith("completions"):
            return await c.post(path, json=CHAT, headers=headers or {})
        return await c.get(path, headers=headers or {})


def test_hash_key_format_and_ring():
    key = generate_key()
    assert key.startswith("tk_")
    assert generate_key() != key
    h = hash_key(key)
    assert h.startswith("sha256:")
    assert len(h) == len("sha256:") + 64
    ring = KeyRing([hash_key("other"), h])
    assert ring.check(key) == h
    assert ring.check(key + "x") is None
    assert len(ring) == 2


def test_rate_limiter_bucket():
    now = [0.0]
    rl = RateLimiter(60, clock=lambda: now[0])
    assert all(rl.acquire("a") == 0 for _ in range(60))
    wait = rl.acquire("a")
    assert 0 < wait <= 1.0
    assert rl.acquire("b") == 0  # separate clients, separate buckets
    now[0] += 1.0
    assert rl.acquire("a") == 0
    assert RateLimiter(0).acquire("a") == 0
    assert RateLimiter.retry_after_header(0.2) == "1"


async def test_auth_off_ignores_keys():
    app = app_for(auth_mode="off")
    assert (await call(app)).status_code == 200
    assert (await call(app, {"authorization": "Bearer wrong"})).status_code == 200


@pytest.mark.parametrize(
    ("mode", "headers", "status"),
    [
        ("required", {}, 401),
        ("required", {"authorization": f"Bearer {KEY}"}, 200),
        ("required", {"x-api-key": KEY}, 200),
        ("required", {"authorization": "Bearer nope"}, 401),
        ("required", {"authorization": f"Basic {KEY}"}, 401),
        ("optional", {}, 200),
        ("optional", {"authorization": f"Bearer {KEY}"}, 200),
        ("optional", {"x-api-key": "nope"}, 401),
    ],
)
async def test_auth_modes(mode, headers, status):
    app = app_for(auth_mode=mode, api_key_hashes=[hash_key(KEY)])
    r = await call(app, headers)
    assert r.status_code == status
    if status == 401:
        assert r.json()["error"]["type"] == "authentication_error"
        assert r.headers["www-authenticate"] == "Bearer"


async def test_auth_covers_v1_but_not_ops():
    app = app_for(auth_mode="required", api_key_hashes=[hash_key(KEY)])
    async with AsyncTestClient(app) as c:
        assert (await c.get("/v1/models")).status_code == 401
        assert (await c.get("/v1/network/nodes")).status_code == 401
        assert (await c.get("/health")).status_code == 200
        assert (await c.get("/ready")).status_code == 200


async def test_rate_limit_per_key():
    app = app_for(auth_mode="required", api_key_hashes=[hash_key(KEY), hash_key(OTHER)], rate_limit_rpm=3)
    async with AsyncTestClient(app) as c:
        statuses = [
            (await c.post("/v1/chat/completions", json=CHAT, headers={"x-api-key": KEY})).status_code for _ in range(4)
        ]
        assert statuses == [200, 200, 200, 429]
        r = await c.post("/v1/chat/completions", json=CHAT, headers={"x-api-key": KEY})
        assert r.json()["error"]["type"] == "rate_limit_exceeded"
        assert int(r.headers["retry-after"]) >= 1
        assert (await c.post("/v1/chat/completions", json=CHAT, headers={"x-api-key": OTHER})).status_code == 200
        assert "tooti_gateway_rate_limited_total 2.0" in (await c.get("/metrics")).text


async def test_rate_limit_without_auth_is_per_address():
    app = app_for(rate_limit_rpm=1)
    async with AsyncTestClient(app) as c:
        assert (await c.get("/v1/models")).status_code == 200
        assert (await c.get("/v1/models")).status_code == 429


async def test_cors_exact_origins():
    app = app_for(cors_allowed_origins=["https://app.example"])
    async with AsyncTestClient(app) as c:
        ok = await c.get("/v1/models", headers={"origin": "https://app.example"})
        assert ok.headers["access-control-allow-origin"] == "https://app.example"
        assert "x-tooti-node" in ok.headers["access-control-expose-headers"]
        bad = await c.get("/v1/models", headers={"origin": "https://evil.example"})
        assert "access-control-allow-origin" not in bad.headers
        pre = await c.options(
            "/v1/chat/completions",
            headers={
                "origin": "https://app.example",
                "access-control-request-method": "POST",
                "access-control-request-headers": "authorization, content-type",
            },
        )
        assert pre.status_code in (200, 204)
        assert pre.headers["access-control-allow-origin"] == "https://app.example"


async def test_no_cors_headers_when_not_configured():
    app = app_for()
    async with AsyncTestClient(app) as c:
        r = await c.get("/v1/models", headers={"origin": "https://app.example"})
        assert "access-control-allow-origin" not in r.headers


async def test_body_over_the_cap_is_413():
    app = app_for(max_body_bytes=2048)
    big = {**CHAT, "messages": [{"role": "user", "content": "x" * 4096}]}
    async with AsyncTestClient(app) as c:
        r = await c.post("/v1/chat/completions", json=big)
        assert r.status_code == 413
        assert r.json()["error"]["type"] == "invalid_request_error"
        assert (await c.post("/v1/chat/completions", json=CHAT)).status_code == 200


async def test_content_is_not_logged_by_default(caplog):
    import logging

    caplog.set_level(logging.DEBUG)
    private = "my-very-private-prompt"
    app = app_for()
    async with AsyncTestClient(app) as c:
        body = {**CHAT, "messages": [{"role": "user", "content": private}]}
        assert (await c.post("/v1/chat/completions", json=body)).status_code == 200
    assert private not in caplog.text
    assert "fake backend" not in caplog.text


async def test_content_is_logged_when_asked(caplog):
    import logging

    caplog.set_level(logging.INFO)
    app = app_for(log_content=True)
    async with AsyncTestClient(app) as c:
        body = {**CHAT, "messages": [{"role": "user", "content": "loggable-prompt"}]}
        assert (await c.post("/v1/chat/completions", json=body)).status_code == 200
    assert "loggable-prompt" in caplog.text
