"""Membership certificates: an authority's Ed25519 signature over a node's (or gateway's) peer id.

A network operator creates an *authority* key once and keeps it offline; for each member it issues a
certificate binding the member's libp2p peer id to an operator name, an expiry and, optionally, the
models it may serve. A gateway in ``membership`` mode uses only nodes whose certificate verifies
against one of its configured authority public keys, and a node in ``membership`` mode serves only
gateways holding one. Unlike a shared secret, one member can be revoked (see
:mod:`tooti.trust.revocation`) without re-keying everyone.

Text forms (copy-paste friendly, no whitespace):

* authority public key: ``ed25519:<base64url of the 32 raw bytes>``;
* certificate: ``tooti-cert-1.<base64url payload>.<base64url signature>``; the payload is the
  JSON of :class:`Certificate` and the signature covers exactly those bytes.
"""

from __future__ import annotations

import base64
import os
import secrets
import time
from typing import TYPE_CHECKING, Annotated

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "CERT_PREFIX",
    "MAX_CERTIFICATE_CHARS",
    "Authority",
    "Certificate",
    "CertificateError",
    "decode_certificate",
    "issue_certificate",
    "parse_public_key",
    "read_certificate_file",
    "verify_certificate",
]

CERT_PREFIX = "tooti-cert-1"
KEY_PREFIX = "ed25519:"
MAX_CERTIFICATE_CHARS = 4096
"""A certificate travels in every heartbeat; anything longer is rejected unread."""
_MAX_MODELS = 64
_Name = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]


class CertificateError(ValueError):
    """A certificate or key is malformed, forged, expired or for someone else; the message says which."""


class Certificate(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """What an authority vouches for."""

    peer_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    operator: _Name
    serial: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    """Random id; the revocation list names serials (or peer ids)."""
    issued_at: int
    """Unix seconds."""
    expires_at: int
    """Unix seconds; the certificate is invalid from then on."""
    models: Annotated[tuple[_Name, ...], msgspec.Meta(max_length=_MAX_MODELS)] = ()
    """Models the member may serve; empty = any."""
    authority: Annotated[str, msgspec.Meta(max_length=64)]
    """The signing authority's public key text (tells a verifier which key to check against)."""

    def allows_model(self, model: str) -> bool:
        """Whether the member may serve ``model`` under this certificate."""
        return not self.models or model in self.models


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError):
        raise CertificateError("not base64url") from None


def public_key_text(key: Ed25519PublicKey) -> str:
    """``ed25519:<base64url>`` of a public key."""
    return KEY_PREFIX + _b64(key.public_bytes(Encoding.Raw, PublicFormat.Raw))


def parse_public_key(text: str) -> Ed25519PublicKey:
    """Parse ``ed25519:<base64url>``; raises :class:`CertificateError` naming what is wrong."""
    if not text.startswith(KEY_PREFIX):
        raise CertificateError(f"authority key must start with {KEY_PREFIX!r}")
    raw = _unb64(text[len(KEY_PREFIX) :])
    if len(raw) != 32:
        raise CertificateError("authority key must be 32 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


class Authority:
    """An authority's private key. Keep the file offline; only its public key goes into configs."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key

    @classmethod
    def generate(cls) -> Authority:
        """A new random authority."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def load(cls, path: Path) -> Authority:
        """Read a key file written by :meth:`save` (32 raw bytes, base64url, one line)."""
        raw = _unb64(path.read_text().strip())
        if len(raw) != 32:
            raise CertificateError(f"{path} is not an authority key file")
        return cls(Ed25519PrivateKey.from_private_bytes(raw))

    def save(self, path: Path) -> None:
        """Write the private key with mode 0600; refuses to overwrite an existing file."""
        raw = self._key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(_b64(raw) + "\n")

    @property
    def public_key(self) -> str:
        """The public key text to put in ``gateway.admission.authorities``."""
        return public_key_text(self._key.public_key())

    def sign(self, payload: bytes) -> bytes:
        """An Ed25519 signature of ``payload``."""
        return self._key.sign(payload)


def issue_certificate(
    authority: Authority,
    peer_id: str,
    operator: str,
    *,
    valid_days: float = 365.0,
    models: tuple[str, ...] = (),
    now: float | None = None,
) -> str:
    """Sign a certificate for ``peer_id`` and return its text form."""
    issued = int(time.time() if now is None else now)
    cert = Certificate(
        peer_id=peer_id,
        operator=operator,
        serial=secrets.token_hex(8),
        issued_at=issued,
        expires_at=issued + int(valid_days * 86400),
        models=tuple(models),
        authority=authority.public_key,
    )
    payload = msgspec.json.encode(cert)
    return f"{CERT_PREFIX}.{_b64(payload)}.{_b64(authority.sign(payload))}"


def _split(text: str) -> tuple[bytes, bytes]:
    if len(text) > MAX_CERTIFICATE_CHARS:
        raise CertificateError("certificate too long")
    parts = text.strip().split(".")
    if len(parts) != 3 or parts[0] != CERT_PREFIX:
        raise CertificateError(f"not a {CERT_PREFIX} certificate")
    return _unb64(parts[1]), _unb64(parts[2])


def decode_certificate(text: str) -> Certificate:
    """The certificate's content, **without** checking the signature (for ``inspect``)."""
    payload, _ = _split(text)
    try:
        return msgspec.json.decode(payload, type=Certificate)
    except msgspec.DecodeError as exc:
        raise CertificateError(f"malformed certificate: {exc}") from None


def verify_certificate(
    text: str, authorities: dict[str, Ed25519PublicKey], *, peer_id: str, now: float | None = None
) -> Certificate:
    """Check the signature, the subject and the expiry; return the certificate.

    Args:
        text: the certificate's text form.
        authorities: trusted authority keys by their text form.
        peer_id: who presented it (the heartbeat's verified signer, or the stream's remote peer).
        now: Unix seconds (tests).

    Raises:
        CertificateError: malformed, unknown authority, bad signature, another peer's, or expired.
    """
    payload, signature = _split(text)
    cert = decode_certificate(text)
    key = authorities.get(cert.authority)
    if key is None:
        raise CertificateError("signed by an authority this peer does not trust")
    try:
        key.verify(signature, payload)
    except InvalidSignature:
        raise CertificateError("bad signature") from None
    if cert.peer_id != peer_id:
        raise CertificateError("certificate belongs to another peer")
    if cert.expires_at <= (time.time() if now is None else now):
        raise CertificateError("certificate expired")
    return cert


def read_certificate_file(path_text: str, key: str) -> str:
    """A certificate file's text (checked for form, not signature: the peers who receive it verify).

    Raises:
        ConfigError: unreadable or not a certificate; the message names the config ``key``.
    """
    from pathlib import Path

    from tooti.errors import ConfigError

    path = Path(path_text).expanduser()
    try:
        text = path.read_text(encoding="utf-8").strip()
        decode_certificate(text)
    except (OSError, CertificateError) as exc:
        raise ConfigError(f"{key} {path}: {exc}") from None
    return text
