"""A rogue peer for the flood benchmark: publishes well-formed heartbeats as fast as it can.

It is a real py-libp2p host (noise, yamux, signed gossipsub) that removed tooti's topic validator
and enlarged py-libp2p's outbound queue per peer (32 RPCs, excess dropped by the *sender*), so the
flood really leaves it, as from an attacker's patched library. Prints the heartbeats it published
per second at the end.
"""

from __future__ import annotations

import argparse
import functools

import trio
from libp2p.pubsub import pubsub as libp2p_pubsub
from libp2p.pubsub.rpc_queue import RpcQueue

from tooti.p2p.heartbeat import HEARTBEAT_TOPIC, Heartbeat, encode_heartbeat
from tooti.p2p.identity import generate_identity
from tooti.p2p.runtime import P2PRuntime, RuntimeSettings


async def flood(addr: str, seconds: float) -> None:
    """Connect to ``addr``, let the mesh form, then publish for ``seconds``."""
    libp2p_pubsub.RpcQueue = functools.partial(RpcQueue, max_size=1_000_000)  # type: ignore[misc]
    runtime = P2PRuntime(generate_identity(), RuntimeSettings(bootstrap_peers=[addr], heartbeat_interval=5.0))
    async with trio.open_nursery() as nursery:
        await nursery.start(runtime.run)
        await runtime.bootstrap_once()
        assert runtime.pubsub is not None  # started above
        runtime.pubsub.remove_topic_validator(HEARTBEAT_TOPIC)
        data = encode_heartbeat(Heartbeat(node_id=runtime.peer_id, name="flood"))
        await trio.sleep(2.0)  # gossipsub grafts the mesh on its 1 s heartbeat
        print("flooding", flush=True)  # noqa: T201 - the benchmark waits for this line
        sent = 0
        end = trio.current_time() + seconds
        while trio.current_time() < end:
            await runtime.publish(data)
            sent += 1
            if sent % 32 == 0:
                await trio.sleep(0)
        print(f"published_per_s {sent / seconds:.1f}", flush=True)  # noqa: T201
        nursery.cancel_scope.cancel()


def main() -> None:
    """Command line: ``heartbeat_flooder.py --addr /ip4/.../p2p/<id> --seconds 20``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--addr", required=True)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    trio.run(flood, args.addr, args.seconds)


if __name__ == "__main__":
    main()
