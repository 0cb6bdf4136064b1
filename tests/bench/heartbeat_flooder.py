"""A rogue peer for the flood benchmark: publishes well-formed heartbeats at a high rate.

It is a real py-libp2p host (noise, yamux, signed gossipsub) that removed tooti's topic validator
and enlarged py-libp2p's outbound queue per peer (32 RPCs, excess dropped by the *sender*), so the
flood really leaves it, as from an attacker's patched library. One identity ("one peer" of issue
10) publishing ``--rate`` heartbeats a second (default 2,000, twice the flood issue 10 reported;
paced rather than spinning, so that its own CPU, on the core it shares with the load generator,
stays bounded). Whenever the gateway closes the connection it dials again twice a second and floods
again once it is back in the mesh. Prints what it published per second, how often it got back in,
how many dials it made and how long it was connected.
"""

from __future__ import annotations

import argparse
import contextlib
import functools

import trio
from libp2p.pubsub import pubsub as libp2p_pubsub
from libp2p.pubsub.rpc_queue import RpcQueue

from tooti.p2p.bootstrap import peer_id_of_addr
from tooti.p2p.heartbeat import HEARTBEAT_TOPIC, Heartbeat, encode_heartbeat
from tooti.p2p.identity import generate_identity
from tooti.p2p.runtime import P2PRuntime, RuntimeSettings
from tooti.testing import eventually_trio

REDIAL_SEC = 0.5
BATCH = 20


def _in_mesh(runtime: P2PRuntime, target: str) -> bool:
    assert runtime.pubsub is not None  # started
    mesh = runtime.pubsub.router.mesh.get(HEARTBEAT_TOPIC, ())  # type: ignore[attr-defined]
    return any(str(peer) == target for peer in mesh)


async def flood(addr: str, seconds: float, rate: float) -> None:
    """Connect to ``addr``, wait for the mesh, then flood for ``seconds``, redialling when cut off."""
    libp2p_pubsub.RpcQueue = functools.partial(RpcQueue, max_size=1_000_000)  # type: ignore[misc]
    target = peer_id_of_addr(addr)
    assert target is not None, "the address must end in /p2p/<peer id>"
    runtime = P2PRuntime(generate_identity(), RuntimeSettings(bootstrap_peers=[addr], heartbeat_interval=5.0))
    sent = rounds = dials = 0
    connected_s = 0.0
    async with trio.open_nursery() as nursery:
        await nursery.start(runtime.run)
        await runtime.bootstrap_once()
        assert runtime.pubsub is not None  # started above
        runtime.pubsub.remove_topic_validator(HEARTBEAT_TOPIC)
        data = encode_heartbeat(Heartbeat(node_id=runtime.peer_id, name="flood"))
        with contextlib.suppress(AssertionError):  # gossipsub grafts the mesh on its 1 s heartbeat
            await eventually_trio(lambda: _in_mesh(runtime, target), timeout=10)
        print("flooding", flush=True)  # noqa: T201 - the benchmark waits for this line
        end = trio.current_time() + seconds
        while trio.current_time() < end:
            if target in runtime.connected_peers() and _in_mesh(runtime, target):
                rounds += 1
                began, in_round = trio.current_time(), 0
                while target in runtime.connected_peers() and trio.current_time() < end:
                    for _ in range(BATCH):
                        await runtime.publish(data)
                    in_round += BATCH
                    await trio.sleep_until(began + in_round / rate)  # the flood's rate is what is measured
                sent += in_round
                connected_s += trio.current_time() - began
                continue
            await trio.sleep(REDIAL_SEC)  # the attacker's redial pace, a parameter of the attack
            dials += 1
            with trio.move_on_after(2):
                try:
                    await runtime.connect(addr)
                except Exception:  # noqa: BLE001, S112 - refused or closed: try again later
                    continue
                await eventually_trio(
                    lambda: target not in runtime.connected_peers() or _in_mesh(runtime, target), timeout=3
                )
        report = f"published_per_s {sent / seconds:.1f} rounds {rounds} dials {dials} connected_s {connected_s:.2f}"
        print(report, flush=True)  # noqa: T201
        nursery.cancel_scope.cancel()


def main() -> None:
    """Command line: ``heartbeat_flooder.py --addr /ip4/.../p2p/<id> --seconds 20 [--rate 2000]``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--addr", required=True)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=2000.0, help="heartbeats published per second")
    args = parser.parse_args()
    trio.run(flood, args.addr, args.seconds, args.rate)


if __name__ == "__main__":
    main()
