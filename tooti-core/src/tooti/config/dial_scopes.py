"""The values ``network.dial_scopes`` accepts: a scope name or a CIDR range.

Kept in ``config`` (the bottom layer) so that validating a config file never imports the p2p
runtime; :mod:`tooti.p2p.dial_policy` applies the scopes to the addresses peers announce.
"""

from __future__ import annotations

import ipaddress

__all__ = ["SCOPE_NAMES", "IPNetwork", "parse_scope"]

SCOPE_NAMES = ("public", "private", "loopback", "link-local")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_scope(value: str) -> str | IPNetwork:
    """A scope name, or a CIDR range; raises ``ValueError`` naming what is accepted."""
    if value in SCOPE_NAMES:
        return value
    try:
        return ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(f"dial scope {value!r} is neither one of {', '.join(SCOPE_NAMES)} nor a CIDR range") from None
