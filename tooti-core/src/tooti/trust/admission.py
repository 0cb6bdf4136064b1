"""The admission policy: may this peer take part at all? (``gateway.admission`` / ``node.admission``).

Checked before anything else, so a peer that is not admitted never receives a user request, from its
first heartbeat on: it is not in the gateway's node list, not in ``/v1/models``, not a routing
candidate and not probed. Verdicts are cached per peer and recomputed only when the peer presents a
different certificate or the revocation list changes, so the per-heartbeat and per-request cost is
one dictionary lookup (an Ed25519 verification costs ~50 µs, once per certificate).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Literal

import msgspec

from tooti.trust.membership import Certificate, CertificateError, parse_public_key, verify_certificate
from tooti.trust.revocation import RevocationList

if TYPE_CHECKING:
    from collections.abc import Callable

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from tooti.config.model import AdmissionSection

__all__ = ["Admission", "AdmissionVerdict"]

_MAX_CACHE = 10_000


class AdmissionVerdict(msgspec.Struct, frozen=True):
    """Whether a peer is admitted, why (for logs and tables), and its verified certificate if any."""

    admitted: bool
    reason: str
    certificate: Certificate | None = None


class Admission:
    """One process's admission policy.

    Args:
        section: the ``admission`` config section.
        extra_allow: more admitted peer ids (a node's older ``allowed_gateway_peers``).
        clock: wall clock in Unix seconds, for certificate expiry (tests).
    """

    def __init__(
        self,
        section: AdmissionSection,
        *,
        extra_allow: tuple[str, ...] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.mode: Literal["open", "allowlist", "membership"] = section.mode
        if self.mode == "open" and extra_allow:
            self.mode = "allowlist"
        self.allow = frozenset((*section.allow, *extra_allow))
        try:
            self.authorities: dict[str, Ed25519PublicKey] = {t: parse_public_key(t) for t in section.authorities}
        except CertificateError as exc:
            raise ValueError(f"admission.authorities: {exc}") from None
        self.revocations = RevocationList(section.revocation_file)
        self._clock = clock
        self._cache: dict[str, tuple[str | None, int, AdmissionVerdict]] = {}

    @property
    def is_open(self) -> bool:
        """Everyone is admitted (nothing to filter)."""
        return self.mode == "open"

    def verdict(self, peer_id: str, certificate: str | None) -> AdmissionVerdict:
        """Decide for ``peer_id`` (already authenticated by libp2p) presenting ``certificate``."""
        if self.mode == "open":
            return _OPEN
        self.revocations.refresh()
        if peer_id in self.allow:
            return _REVOKED if self.revocations.revoked(peer_id) else _LISTED
        if self.mode == "allowlist":
            return _NOT_LISTED
        hit = self._cache.get(peer_id)
        if hit is not None and hit[0] == certificate and hit[1] == self.revocations.version:
            verdict = hit[2]
        else:
            verdict = self._check(peer_id, certificate)
            if len(self._cache) >= _MAX_CACHE:
                self._cache.clear()
            self._cache[peer_id] = (certificate, self.revocations.version, verdict)
        cert = verdict.certificate
        if cert is not None and cert.expires_at <= self._clock():
            return AdmissionVerdict(admitted=False, reason="certificate expired")
        return verdict

    def _check(self, peer_id: str, certificate: str | None) -> AdmissionVerdict:
        if not certificate:
            return AdmissionVerdict(admitted=False, reason="no membership certificate")
        try:
            cert = verify_certificate(certificate, self.authorities, peer_id=peer_id, now=self._clock())
        except CertificateError as exc:
            return AdmissionVerdict(admitted=False, reason=f"certificate rejected: {exc}")
        if self.revocations.revoked(cert.serial, peer_id):
            return AdmissionVerdict(admitted=False, reason="certificate revoked")
        return AdmissionVerdict(admitted=True, reason=f"member ({cert.operator})", certificate=cert)

    def admits(self, peer_id: str, certificate: str | None) -> bool:
        """Shorthand for ``verdict(...).admitted``."""
        return self.verdict(peer_id, certificate).admitted


_OPEN = AdmissionVerdict(admitted=True, reason="open admission")
_LISTED = AdmissionVerdict(admitted=True, reason="allow-listed")
_NOT_LISTED = AdmissionVerdict(admitted=False, reason="not on the allow list")
_REVOKED = AdmissionVerdict(admitted=False, reason="revoked")
