"""Which gateways a node serves (``node.admission``), and the certificate it announces.

``allowlist`` mode serves the gateways in ``node.admission.allow`` plus the older
``node.allowed_gateway_peers``; ``membership`` serves gateways whose request carries a certificate
signed by one of ``node.admission.authorities``; ``open`` with an empty ``allowed_gateway_peers`` serves anyone who
dials the node, bypassing every gateway's keys and limits, which ``tooti node start`` says plainly.
A node's own membership certificate (``node.admission.certificate_file``) is announced in its
heartbeat, so gateways in ``membership`` mode admit it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from tooti.trust.admission import Admission
from tooti.trust.membership import read_certificate_file

if TYPE_CHECKING:
    from collections.abc import Callable

    from tooti.config.model import AdmissionSection, NodeSection
    from tooti.wire.infer import InferRequest

__all__ = ["allowed_gateways", "member_check", "open_to_anyone", "own_certificate"]

log = logging.getLogger(__name__)


def allowed_gateways(node: NodeSection) -> list[str]:
    """The gateway peer ids the node serves by id alone; empty = anyone (or, in membership mode, members)."""
    if node.admission.mode == "membership":
        return []  # member_check admits both certificate holders and these peers
    allowed = list(node.allowed_gateway_peers)
    if node.admission.mode == "allowlist":
        allowed += [p for p in node.admission.allow if p not in allowed]
    return allowed


def open_to_anyone(node: NodeSection) -> bool:
    """Whether any peer that dials the node gets answers."""
    return node.admission.mode == "open" and not allowed_gateways(node)


def own_certificate(section: AdmissionSection) -> str | None:
    """The node's certificate text from ``certificate_file``, announced in its heartbeat.

    Raises:
        ConfigError: the file cannot be read or does not hold a certificate; the message names the key.
    """
    if not section.certificate_file:
        return None
    return read_certificate_file(section.certificate_file, "node.admission.certificate_file")


def member_check(node: NodeSection) -> Callable[[str, InferRequest], bool] | None:
    """In ``membership`` mode, the per-request check of the calling gateway's certificate; else ``None``.

    The gateway's peer id comes from the libp2p connection (authenticated by the Noise handshake); its
    certificate travels in the request. Verdicts are cached per peer and certificate, so the Ed25519
    check runs once per gateway, not per request.
    """
    if node.admission.mode != "membership":
        return None
    admission = Admission(node.admission, extra_allow=tuple(node.allowed_gateway_peers))

    def admit(peer_id: str, request: InferRequest) -> bool:
        verdict = admission.verdict(peer_id, request.certificate)
        if not verdict.admitted:
            log.info("refusing gateway %s: %s", peer_id, verdict.reason)
        return verdict.admitted

    return admit
