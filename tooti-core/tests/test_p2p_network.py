"""Real libp2p hosts on 127.0.0.1 in one trio loop: discovery, heartbeats, staleness, DHT, inference."""

from __future__ import annotations

from contextlib import aclosing, asynccontextmanager

import pytest
import trio

from tooti.config.model import Config, HeartbeatSection, ListenSection, NetworkSection, NodeSection
from tooti.errors import BackendUnavailable
from tooti.node.agent import run_node
from tooti.p2p.identity import generate_identity
from tooti.p2p.runtime import P2PRuntime, RuntimeSettings
from tooti.testing import FakeBackend, eventually_trio
from tooti.wire.infer import ChunkFrame, Done, ErrorFrame, InferRequest, UsageFrame

INTERVAL = 0.3


@pytest.fixture
def anyio_backend():
    return "trio"


def _config(tmp_path, name, bootstrap=(), **node):
    return Config(
        node=NodeSection(name=name, identity_key_file=str(tmp_path / f"{name}.key"), **node),
        listen=ListenSection(host="127.0.0.1", tcp_port=0),
        network=NetworkSection(bootstrap_peers=list(bootstrap)),
        heartbeat=HeartbeatSection(interval_sec=INTERVAL),
    )


def _gateway(bootstrap):
    return P2PRuntime(
        generate_identity(),
        RuntimeSettings(bootstrap_peers=list(bootstrap), heartbeat_interval=INTERVAL, bootstrap_interval=1.0),
    )


def _req(stream=True, model="fake-model"):
    return InferRequest(
        request_id="t1", model=model, stream=stream, body={"messages": [{"role": "user", "content": "hi"}]}
    )


async def _collect(runtime, peer, request):
    async with aclosing(runtime.request(peer, request)) as frames:
        return [f async for f in frames]


@pytest.mark.anyio
async def test_three_nodes_discovered_through_bootstrap_then_stale_after_kill(tmp_path):
    backends = [FakeBackend(models=(f"m{i}", "shared")) for i in range(3)]
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            first = await nursery.start(run_node, _config(tmp_path, "n0"), backends[0])
            boot = first.addrs
            started = [first]
            scopes, exited = [], []
            for i in (1, 2):
                scope, done = trio.CancelScope(), trio.Event()
                scopes.append(scope)
                exited.append(done)

                async def node(i=i, scope=scope, done=done, task_status=trio.TASK_STATUS_IGNORED):
                    try:
                        with scope:
                            await run_node(_config(tmp_path, f"n{i}", boot), backends[i], task_status=task_status)
                    finally:
                        done.set()

                started.append(await nursery.start(node))
            gateway = _gateway(boot)
            await nursery.start(gateway.run)
            peers = {s.peer_id for s in started}
            registry = gateway.registry
            await eventually_trio(lambda: {v.peer_id for v in registry.snapshot()} == peers, timeout=30)

            views = {v.peer_id: v for v in registry.snapshot()}
            n2 = started[2].peer_id
            assert views[n2].serves() == {"m2", "shared"}
            assert views[n2].name == "n2"
            assert views[n2].addrs
            assert registry.models()["shared"] == sorted(peers)
            assert registry.dropped == 0

            # Streamed inference to a node the gateway is not directly connected to at first.
            frames = await _collect(gateway, n2, _req(model="shared"))
            assert isinstance(frames[-1], Done)
            assert sum(isinstance(f, ChunkFrame) for f in frames) == backends[2].chunks + 1
            assert any(isinstance(f, UsageFrame) for f in frames)

            # DHT: providers of a model, found by a host that did not announce it.
            async def providers_found():
                found = set(await gateway.find_providers("m1"))
                return found if started[1].peer_id in found else None

            assert started[1].peer_id in await eventually_trio(providers_found, timeout=30, interval=0.2)

            # Stop n2: it leaves the registry within 3 intervals of its last heartbeat.
            scopes[1].cancel()
            stopped = trio.current_time()
            await eventually_trio(lambda: n2 not in {v.peer_id for v in registry.snapshot()}, timeout=30)
            assert trio.current_time() - stopped <= 3 * INTERVAL + 0.5
            await exited[1].wait()  # its host is closed: requests to it fail fast
            with pytest.raises(BackendUnavailable):
                await _collect(gateway, n2, _req())
            nursery.cancel_scope.cancel()


@pytest.mark.anyio
async def test_dht_protocol_is_private_and_unauthorized_gateway_refused(tmp_path):
    other = _gateway([])
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            node = await nursery.start(
                run_node, _config(tmp_path, "n0", allowed_gateway_peers=["12D3KooWNotThisOne"]), FakeBackend()
            )
            assert "/tooti/kad/1.0.0" in node.runtime.protocols()
            assert "/ipfs/kad/1.0.0" not in node.runtime.protocols()
            assert "/tooti/infer/1.0.0" in node.runtime.protocols()
            await nursery.start(other.run)
            await other.connect(node.addrs[0])
            frames = await _collect(other, node.peer_id, _req())
            assert len(frames) == 1
            assert isinstance(frames[0], ErrorFrame)
            assert frames[0].code == "unauthorized"
            assert node.service.rejected == 1
            nursery.cancel_scope.cancel()


@pytest.mark.anyio
async def test_runtime_cycles_leak_no_file_descriptors_or_tasks(tmp_path):
    from pathlib import Path

    def fds():
        return len(list(Path("/proc/self/fd").iterdir()))

    def tasks():
        stack, count = [trio.lowlevel.current_root_task()], 0
        while stack:
            task = stack.pop()
            count += 1
            stack.extend(t for n in task.child_nurseries for t in n.child_tasks)
        return count

    async def cycle():
        node = _gateway([])
        peer = _gateway([])
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            await nursery.start(peer.run)
            await peer.connect(node.listen_addrs()[0])
            nursery.cancel_scope.cancel()

    with trio.fail_after(30):
        await cycle()  # warm-up: lazy imports, resolver files
        before_fds = fds()
        before_tasks = tasks()
        for _ in range(3):
            await cycle()
        assert fds() == before_fds
        assert tasks() == before_tasks


@pytest.mark.anyio
async def test_20_heartbeats_per_second_through_a_line_all_arrive():
    """Gossipsub's default spam limit (10/s per forwarding peer and topic) would drop half of these.

    A relay forwards many nodes' heartbeats; here one publisher stands in for them, so tooti's own
    per-signer rate limit is lifted to 40/s on A, B and C (it is tested in test_p2p_heartbeat_defence).
    """
    from tooti.p2p.heartbeat import Heartbeat, encode_heartbeat
    from tooti.p2p.heartbeat_rate import HeartbeatRateLimit

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            a, b = _gateway([]), _gateway([])
            await nursery.start(b.run)
            await nursery.start(a.run)
            c = _gateway(b.listen_addrs())
            for relay in (a, b, c):  # A validates its own messages too
                relay.registry.rate_limit = HeartbeatRateLimit(interval_sec=0.05)
            await nursery.start(c.run)
            await a.connect(b.listen_addrs()[0])
            await c.bootstrap_once()
            assert a.peer_id not in c.connected_peers()  # line: A - B - C

            async def heard_through_the_mesh():
                await a.publish(encode_heartbeat(Heartbeat(node_id=a.peer_id)))
                return c.registry.get(a.peer_id) is not None

            await eventually_trio(heard_through_the_mesh, timeout=30, interval=0.1)  # wait for the mesh
            before = c.registry.accepted
            for i in range(40):
                await a.publish(encode_heartbeat(Heartbeat(node_id=a.peer_id, uptime_s=float(i))))
                await trio.sleep(0.05)  # paced at the relays' rate limit (0.05 s): every one is forwarded
            await eventually_trio(lambda: c.registry.accepted >= before + 40, timeout=30)
            assert c.registry.get(a.peer_id).age_s < 5
            nursery.cancel_scope.cancel()


@pytest.mark.anyio
async def test_cancelled_requests_leave_the_connection_usable(tmp_path):
    """Regression for py-libp2p bugs 1 and 2: cancel at random points, then a request still works."""
    client = _gateway([])
    backend = FakeBackend(models=("fake-model",), chunks=6, chunk_delay_sec=0.002)
    with trio.fail_after(40):
        async with trio.open_nursery() as nursery:
            node = await nursery.start(run_node, _config(tmp_path, "c0"), backend)
            await nursery.start(client.run)
            await client.connect(node.addrs[0])
            for i in range(30):
                with trio.move_on_after(0.0005 * (i % 10)):
                    await _collect(client, node.peer_id, _req())
            for _ in range(3):
                frames = await _collect(client, node.peer_id, _req())
                assert isinstance(frames[-1], Done)
            assert node.peer_id in client.connected_peers()
            nursery.cancel_scope.cancel()


@pytest.mark.anyio
async def test_a_streamed_answer_costs_the_reader_no_window_update_per_frame(tmp_path, monkeypatch):
    """py-libp2p bug 9 (docs/p2p.md): yamux credited every read back with its own WINDOW_UPDATE.

    Credit now goes back once half the 256 KiB window is used, so a few KiB of frames, read one
    by one, need no update at all; with 0.8.1's rule every read sent one (an extra encrypted frame
    each way per token).
    """
    import libp2p.stream_muxer.yamux.yamux as yamux

    updates = 0
    send_window_update = yamux.YamuxStream.send_window_update

    async def counting(self, *args, **kwargs):
        nonlocal updates
        updates += 1
        return await send_window_update(self, *args, **kwargs)

    monkeypatch.setattr(yamux.YamuxStream, "send_window_update", counting)
    client = _gateway([])
    backend = FakeBackend(models=("fake-model",), chunks=40, chunk_delay_sec=0.002)
    with trio.fail_after(40):
        async with trio.open_nursery() as nursery:
            node = await nursery.start(run_node, _config(tmp_path, "w0", write_window_ms=0.0), backend)
            await nursery.start(client.run)
            await client.connect(node.addrs[0])
            await _collect(client, node.peer_id, _req())  # warm: stream opened, identify done
            before = updates
            frames = await _collect(client, node.peer_id, _req())
            assert sum(isinstance(f, ChunkFrame) for f in frames) >= 40  # read frame by frame
            assert updates - before <= 2
            nursery.cancel_scope.cancel()


@asynccontextmanager
async def _connected_pair(proto, handler, *, timeout):
    """Two running hosts, the second serving ``proto`` with ``handler``, the first connected to it."""
    writer = _gateway([])
    reader = _gateway([])
    with trio.fail_after(timeout):
        async with trio.open_nursery() as nursery:
            await nursery.start(reader.run)
            await nursery.start(writer.run)
            reader.host.set_stream_handler(proto, handler)
            await writer.connect(reader.listen_addrs()[0])
            yield writer, reader
            nursery.cancel_scope.cancel()


@pytest.mark.anyio
async def test_concurrent_writes_of_every_size_arrive_whole_on_one_connection(caplog):
    """py-libp2p bug 10 (docs/p2p.md): writes that fit the send window skip the library's locks.

    Several streams of one connection write at once, small writes (the lean path) interleaved with
    writes larger than a yamux frame and than the 256 KiB send window (the library's own path,
    which waits for window credit); every byte must arrive, in order, on its own stream, and no
    write may overrun the receiver's window.
    """
    import logging

    from libp2p.custom_types import TProtocol

    proto = TProtocol("/tooti-test/bytes/1.0.0")
    received: dict[int, bytearray] = {}
    done = trio.Event()

    async def sink(stream):
        buf = bytearray()
        while True:
            try:
                data = await stream.read(65536)
            except Exception:  # noqa: BLE001 - EOF in any of py-libp2p's forms ends the stream
                break
            if not data:
                break
            buf += data
        received[buf[0]] = buf
        if len(received) == 4:
            done.set()

    def payload(n: int) -> list[bytes]:
        sizes = [1, 300, 70_000, 12, 600_000, 5, 4_096] * 3
        return [bytes([n]) + bytes((n + i) % 251 for i in range(size)) for size in sizes]

    async with _connected_pair(proto, sink, timeout=60) as (writer, reader):
        caplog.set_level(logging.WARNING, logger="libp2p.stream_muxer.yamux.yamux")

        async def send(n: int) -> None:
            stream = await writer.host.new_stream(reader.host.get_id(), [proto])
            for piece in payload(n):
                await stream.write(piece)
                await trio.lowlevel.checkpoint()  # let the other writers interleave their pieces
            await stream.close()

        async with trio.open_nursery() as writers:
            for n in range(4):
                writers.start_soon(send, n)
        await done.wait()
    for n in range(4):
        assert received[n] == b"".join(payload(n))
    assert not [r for r in caplog.records if "exceeded receive window" in r.getMessage()]


@pytest.mark.anyio
async def test_lean_writes_charge_the_send_window():
    """py-libp2p bug 10: a write that skips the locks still spends send window, so a reader that
    does not read holds the writer back exactly as yamux's flow control says."""
    from libp2p.custom_types import TProtocol
    from libp2p.stream_muxer.yamux.yamux import DEFAULT_WINDOW_SIZE

    proto = TProtocol("/tooti-test/idle/1.0.0")
    release = trio.Event()

    async def idle(stream):
        await release.wait()  # reads nothing: no window credit goes back

    async with _connected_pair(proto, idle, timeout=30) as (writer, reader):
        stream = await writer.host.new_stream(reader.host.get_id(), [proto])
        muxed = stream.muxed_stream
        start = muxed.send_window  # the window less the protocol negotiation's bytes
        assert DEFAULT_WINDOW_SIZE - 1000 < start <= DEFAULT_WINDOW_SIZE
        for _ in range(100):
            await stream.write(b"x" * 1000)
        assert muxed.send_window == start - 100_000
        with trio.move_on_after(0.5) as blocked:  # more than the window: the write must wait
            await stream.write(b"y" * (start - 100_000 + 1))
        assert blocked.cancelled_caught
        release.set()
