"""Turning listen addresses into addresses other peers can dial."""

from __future__ import annotations

__all__ = ["dialable_addrs", "interface_ips"]

_UNSPECIFIED = ("/ip4/0.0.0.0/", "/ip6/::/")


def interface_ips() -> list[str]:
    """The IPv4 addresses of this host's interfaces (loopback included)."""
    import psutil  # type: ignore[import-untyped]  # installed with libp2p

    ips: list[str] = []
    for addrs in psutil.net_if_addrs().values():
        for addr in addrs:
            if addr.family.name == "AF_INET" and addr.address not in ips:
                ips.append(addr.address)
    return ips


def dialable_addrs(addrs: list[str]) -> list[str]:
    """Replace ``/ip4/0.0.0.0/…`` (listen on all interfaces) by one address per IPv4 interface."""
    out: list[str] = []
    for addr in addrs:
        if addr.startswith("/ip4/0.0.0.0/"):
            rest = addr[len("/ip4/0.0.0.0") :]
            out.extend(f"/ip4/{ip}{rest}" for ip in interface_ips())
        elif not addr.startswith(_UNSPECIFIED):
            out.append(addr)
    return list(dict.fromkeys(out))
