"""Which gateways a node serves (``node.admission``), and the certificate it announces.

``allowlist`` mode serves the gateways in ``node.admission.allow`` plus the older
``node.allowed_gateway_peers``; ``open`` with an empty ``allowed_gateway_peers`` serves anyone who
dials the node, bypassing every gateway's keys and limits, which ``tooti node start`` says plainly.
A node's own membership certificate (``node.admission.certificate_file``) is announced in its
heartbeat, so gateways in ``membership`` mode admit it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tooti.errors import ConfigError
from tooti.trust.membership import CertificateError, decode_certificate

if TYPE_CHECKING:
    from tooti.config.model import AdmissionSection, NodeSection

__all__ = ["allowed_gateways", "open_to_anyone", "own_certificate"]


def allowed_gateways(node: NodeSection) -> list[str]:
    """The gateway peer ids the node serves; empty = anyone."""
    allowed = list(node.allowed_gateway_peers)
    if node.admission.mode == "allowlist":
        allowed += [p for p in node.admission.allow if p not in allowed]
    return allowed


def open_to_anyone(node: NodeSection) -> bool:
    """Whether any peer that dials the node gets answers."""
    return node.admission.mode == "open" and not allowed_gateways(node)


def own_certificate(section: AdmissionSection) -> str | None:
    """The node's certificate text from ``certificate_file`` (checked for form, not signature).

    Raises:
        ConfigError: the file cannot be read or does not hold a certificate; the message names the key.
    """
    if not section.certificate_file:
        return None
    path = Path(section.certificate_file).expanduser()
    try:
        text = path.read_text(encoding="utf-8").strip()
        decode_certificate(text)
    except (OSError, CertificateError) as exc:
        raise ConfigError(f"node.admission.certificate_file {path}: {exc}") from None
    return text
