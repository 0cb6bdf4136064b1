"""The gateway's HTTP edge against adversarial clients, on the real server (uvicorn + read guards).

Each test is a real client misbehaving on a real socket: slowloris headers, a trickled body, an
exabyte chunk header, pipelining, and bodies that broke a limit behind the gateway (deep nesting,
integers beyond 64 bits, huge strings, malformed tools). Every one of these failed before: the
connections stayed open, the bad bodies gave 500/502 and charged the node.
"""

from __future__ import annotations

import json
import logging
import socket
import time

import httpx
import pytest

from tooti.config.model import Config, GatewaySection, VerificationSection
from tooti.gateway import create_app
from tooti.gateway.server import ServerThread
from tooti.node.local import LocalNetwork
from tooti.testing import FakeBackend, make_plugin_host

HEAD_TIMEOUT = 5.0  # the default
BODY_TIMEOUT = 2.0


@pytest.fixture
def backend():
    return FakeBackend(chunks=4)


@pytest.fixture
def gateway(backend):
    network = LocalNetwork()
    network.add_node("peerA", backend, ["fake-model"])
    # No canaries: the fake backend gives one fixed reply, which a canary rightly quarantines; these
    # tests are about the HTTP server, not about trust.
    verification = VerificationSection(enabled=False)
    section = GatewaySection(head_timeout_sec=HEAD_TIMEOUT, body_timeout_sec=BODY_TIMEOUT, verification=verification)
    config = Config(gateway=section)
    app = create_app(config, network, make_plugin_host())
    server = ServerThread(app)
    server.start()
    yield server, app
    server.stop()


def _connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(15)
    return s


def _closed(s: socket.socket) -> bool:
    """Whether the server closed ``s`` (a read returns EOF or the connection was reset)."""
    s.setblocking(False)
    try:
        return s.recv(65536) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        s.setblocking(True)


def _chat(**extra) -> dict:
    return {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}], **extra}


def test_slowloris_connections_are_closed_while_others_are_served(gateway):
    server, _ = gateway
    socks = [_connect(server.port) for _ in range(200)]
    for s in socks:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
    t0 = time.monotonic()
    served = []
    with httpx.Client(base_url=server.base_url, timeout=5) as client:
        open_socks = list(socks)
        while open_socks and time.monotonic() - t0 < 12:
            for s in list(open_socks):
                try:
                    s.sendall(b"X-Slow: 1\r\n")  # a header line every half second: never complete
                except OSError:
                    open_socks.remove(s)
                    continue
                if _closed(s):
                    open_socks.remove(s)
            started = time.monotonic()
            assert client.post("/v1/chat/completions", json=_chat()).status_code == 200
            served.append(time.monotonic() - started)
            time.sleep(0.5)  # the slow-loris pace IS the attack under test: a header line every half second
    elapsed = time.monotonic() - t0
    for s in socks:
        s.close()
    assert not open_socks, f"{len(open_socks)} of 200 slow-header connections still open after {elapsed:.1f} s"
    assert elapsed < 10.0
    assert max(served) < 1.0, "other clients must be served meanwhile"


def test_a_trickled_body_is_cut_off(gateway):
    server, _ = gateway
    s = _connect(server.port)
    s.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
        b"content-length: 100000\r\n\r\n{"
    )
    t0 = time.monotonic()
    while time.monotonic() - t0 < BODY_TIMEOUT + 5:
        try:
            s.sendall(b" ")
        except OSError:
            break
        if _closed(s):
            break
        time.sleep(0.25)  # a body trickled a byte at a time IS the attack under test
    assert time.monotonic() - t0 < BODY_TIMEOUT + 2
    s.close()


def test_an_oversized_chunk_size_closes_the_connection_at_once(gateway):
    server, _ = gateway
    s = _connect(server.port)
    s.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
        b"transfer-encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFFFF\r\n{"
    )
    s.settimeout(3)
    t0 = time.monotonic()
    try:
        data = s.recv(65536)
    except OSError:
        data = b""
    assert data == b""
    assert time.monotonic() - t0 < 1.0
    s.close()


def test_pipelined_requests_are_answered_in_order(gateway):
    server, _ = gateway
    bodies = [_chat(stream=True), _chat(max_tokens=2), None]
    raw = b""
    for body in bodies:
        if body is None:
            raw += b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
        else:
            data = json.dumps(body).encode()
            raw += (
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\n\r\n%s" % (len(data), data)
            )
    s = _connect(server.port)
    s.sendall(raw)
    s.settimeout(3)
    received = b""
    try:
        while received.count(b"HTTP/1.1 200") < 3 or not received.rstrip().endswith(b"}"):
            chunk = s.recv(65536)
            if not chunk:
                break
            received += chunk
    except TimeoutError:
        pass
    s.close()
    stream_at = received.find(b"text/event-stream")
    whole_at = received.find(b'"chat.completion"')
    health_at = received.rfind(b"HTTP/1.1 200")
    assert received.count(b"HTTP/1.1 200") == 3
    assert 0 < stream_at < whole_at < health_at


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        (json.dumps(_chat(seed=2**70)).encode(), "seed"),
        (
            b'{"model": "fake-model", "messages": [{"role": "user", "content": "hi"}], "x": '
            + b"[" * 1000
            + b"]" * 1000
            + b"}",
            "body",
        ),
        (json.dumps(_chat(stop=["x" * (2 * 1024 * 1024 + 1)])).encode(), "stop[0]"),
        (json.dumps(_chat(tools=[{"type": "function"}])).encode(), "tools[0].function"),
        (json.dumps(_chat(tools={"a": 1})).encode(), "tools"),
    ],
    ids=["int-2^70", "nested-1000", "long-string", "tool-without-function", "tools-not-array"],
)
def test_bad_input_is_a_400_naming_the_field_and_charges_no_node(gateway, backend, caplog, raw, param):
    server, app = gateway
    caplog.set_level(logging.INFO)
    response = httpx.post(
        f"{server.base_url}/v1/chat/completions", content=raw, headers={"content-type": "application/json"}, timeout=10
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param
    assert "chat" not in backend.methods()  # never reached a node
    stats = app.state.gateway.observations.stats("peerA")
    assert not stats.failures
    assert stats.cooldown_until == 0.0
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert not loud, [r.getMessage() for r in loud]
    assert len([r for r in caplog.records if r.name.startswith("tooti")]) <= 1
