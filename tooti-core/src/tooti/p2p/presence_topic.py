"""The gateway presence topic of one host: accepting signed records, and publishing them on gateways.

The records themselves (format, bounds, the book of gateways heard) are :mod:`tooti.p2p.presence`.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import trio

from tooti.p2p.presence import PRESENCE_TOPIC, GatewayPresence, PresenceError, decode_presence, encode_presence

if TYPE_CHECKING:
    from collections.abc import Callable

    from libp2p.peer.id import ID
    from libp2p.pubsub.pubsub import Pubsub
    from trio_typing import TaskStatus

    from tooti.p2p.presence import GatewayBook

__all__ = ["PresenceTopic"]

log = logging.getLogger(__name__)


class PresenceTopic:
    """Subscribes to ``/tooti/gateway/1``, records valid records in ``book``, publishes when asked.

    Args:
        book: the gateways heard (the peer keeper pins them).
        own_id: this host's peer id (its own records are not recorded).
    """

    def __init__(self, book: GatewayBook, own_id: str) -> None:
        self.book = book
        self.own_id = own_id

    def validate(self, forwarder: ID, message: Any) -> bool:
        """Topic validator of gateway presence records: signed by the gateway they name, bounded."""
        from libp2p.peer.id import ID

        try:
            record = decode_presence(message.data, str(ID(message.from_id).to_base58()))
        except PresenceError as exc:
            self.book.refused += 1
            log.info("dropped presence record via %s: %s", forwarder, exc)
            return False
        if record.peer_id != self.own_id:
            if record.peer_id not in self.book.gateways():
                log.info("heard of gateway %s at %s", record.peer_id, ", ".join(record.addrs))
            self.book.record(record)
        return True

    async def serve(self, pubsub: Pubsub, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Install the validator and subscribe (then ``started``), then drain the subscription forever."""
        pubsub.set_topic_validator(PRESENCE_TOPIC, self.validate, is_async_validator=False)
        subscription = await pubsub.subscribe(PRESENCE_TOPIC)
        task_status.started()
        while True:
            await subscription.get()

    async def publish_loop(self, pubsub: Pubsub, addrs: Callable[[], list[str]], interval: float) -> None:
        """Gateways: say every ``interval`` that this host is a gateway and where to dial it."""
        while True:
            record = GatewayPresence(peer_id=self.own_id, addrs=tuple(addrs()), timestamp_ms=int(time.time() * 1000))
            await pubsub.publish(PRESENCE_TOPIC, encode_presence(record))
            await trio.sleep(interval)
