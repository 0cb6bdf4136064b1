"""The heartbeat topic of one host: the validator that records heartbeats, publishing, and pruning.

Every runtime subscribes (so it relays, and gateways fill their registry). The topic validator is
the one place a heartbeat is decoded, checked and recorded (:meth:`Registry.receive`); a signer the
rate limit reports as flooding is handed to ``on_flood`` (the ban gate).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import trio

from tooti.p2p.heartbeat import HEARTBEAT_TOPIC

if TYPE_CHECKING:
    from collections.abc import Callable

    from libp2p.peer.id import ID
    from libp2p.pubsub.pubsub import Pubsub
    from trio_typing import TaskStatus

    from tooti.p2p.registry import Registry

__all__ = ["HeartbeatTopic"]

log = logging.getLogger(__name__)


class HeartbeatTopic:
    """Subscribes to, validates, publishes on and prunes ``/tooti/heartbeat/1``.

    Args:
        registry: where accepted heartbeats go.
        own_id: this host's peer id (its own heartbeats are not recorded).
        on_flood: called with a flooding signer's raw peer id.
    """

    def __init__(self, registry: Registry, own_id: str, on_flood: Callable[[bytes], None]) -> None:
        self.registry = registry
        self.own_id = own_id
        self.on_flood = on_flood
        self.pubsub: Pubsub | None = None

    def validate(self, forwarder: ID, message: Any) -> bool:
        """Gossipsub topic validator: the one place a heartbeat is decoded, checked and recorded.

        Refused heartbeats (over the sender's rate limit, malformed, out of bounds, spoofed) are
        neither recorded nor forwarded, and count as invalid messages in the forwarder's gossipsub
        score, so a peer that keeps flooding is cut off by libp2p before signature checks.
        """
        from libp2p.peer.id import ID

        def signer() -> str:
            return str(ID(message.from_id).to_base58())

        if self.registry.receive(message.data, signer, sender=message.from_id, own=self.own_id):
            return True
        if self.registry.rate_limit.flooding(message.from_id):
            self.on_flood(bytes(message.from_id))
        return False

    async def serve(self, pubsub: Pubsub, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Install the validator and subscribe (then ``started``), then drain the subscription forever.

        The validator already recorded every accepted heartbeat; draining keeps the queue empty.
        """
        pubsub.set_topic_validator(HEARTBEAT_TOPIC, self.validate, is_async_validator=False)
        subscription = await pubsub.subscribe(HEARTBEAT_TOPIC)
        self.pubsub = pubsub
        task_status.started()
        while True:
            await subscription.get()

    async def publish(self, data: bytes) -> None:
        """Publish an encoded heartbeat."""
        if self.pubsub is None:
            raise RuntimeError("runtime not started")
        await self.pubsub.publish(HEARTBEAT_TOPIC, data)

    async def prune_loop(self, interval: float) -> None:
        """Every ``interval``: forget nodes whose heartbeats stopped (silent deaths)."""
        while True:
            await trio.sleep(interval)
            for peer in self.registry.prune():
                log.info("node %s went stale", peer)
