"""What a p2p runtime listens on and whom it dials, and how a config file's sections map to it.

Its own module so that the parts of the runtime (peer keeper, topics) can name their settings
without importing the runtime that composes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tooti.p2p.bootstrap import TxtResolver, dns_txt_resolver

if TYPE_CHECKING:
    from tooti.config.model import Config

__all__ = ["RuntimeSettings", "settings_from_config"]


@dataclass
class RuntimeSettings:
    """What a runtime listens on and whom it dials."""

    listen_host: str = "127.0.0.1"
    tcp_port: int = 0
    bootstrap_peers: list[str] = field(default_factory=list)
    heartbeat_interval: float = 5.0
    bootstrap_interval: float = 30.0
    mdns: bool = False
    dial_scopes: list[str] = field(default_factory=list)
    """Address scopes peers' addresses are dialled in (see :mod:`tooti.p2p.dial_policy`); empty = default."""
    target_peers: int = 8
    """Connections the peer keeper maintains (pinned gateways come on top)."""
    known_peers_file: Path | None = None
    """Where the peers this host knew are saved between runs; ``None`` = not saved."""
    gateways: list[str] = field(default_factory=list)
    """Gateways (``…/p2p/<id>``) this host always keeps a connection to (a node behind NAT is served over it)."""
    announce_addrs: list[str] = field(default_factory=list)
    """Addresses announced instead of the listen addresses (port forwarding, a public IP); empty = listen addresses."""
    publish_presence: bool = False
    """Publish gateway presence records (gateways), so nodes learn to keep a connection to this host."""
    resolver: TxtResolver = dns_txt_resolver


def settings_from_config(
    config: Config, *, identity_file: Path | None = None, gateway: bool = False
) -> RuntimeSettings:
    """Runtime settings from a config's ``listen``, ``network`` and ``heartbeat`` sections.

    Args:
        config: the whole config.
        identity_file: the host's key file; known peers are saved next to it (``<stem>.peers.json``)
            unless ``network.known_peers_file`` names another file. Without either, nothing is saved.
        gateway: the host is a gateway: it publishes presence records.
    """
    known: Path | None = None
    if config.network.remember_peers:
        if config.network.known_peers_file:
            known = Path(config.network.known_peers_file).expanduser()
        elif identity_file is not None:
            known = identity_file.with_suffix(".peers.json")
    return RuntimeSettings(
        known_peers_file=known,
        publish_presence=gateway,
        listen_host=config.listen.host,
        tcp_port=config.listen.tcp_port,
        bootstrap_peers=list(config.network.bootstrap_peers),
        heartbeat_interval=config.heartbeat.interval_sec,
        bootstrap_interval=min(30.0, max(1.0, 2 * config.heartbeat.interval_sec)),
        mdns=config.network.mdns,
        dial_scopes=list(config.network.dial_scopes),
        target_peers=config.network.target_peers,
        gateways=list(config.network.gateways),
        announce_addrs=list(config.listen.announce_addrs),
    )
