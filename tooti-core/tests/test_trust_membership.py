"""Membership certificates and the admission policy, with real Ed25519 keys."""

from __future__ import annotations

import pytest

from tooti.config.model import AdmissionSection, GatewaySection
from tooti.trust.admission import Admission
from tooti.trust.membership import (
    Authority,
    CertificateError,
    decode_certificate,
    issue_certificate,
    parse_public_key,
    verify_certificate,
)
from tooti.trust.revocation import RevocationList, append_revocation

PEER = "12D3KooWRBy97UB99e3J6hiPesre1MZeuNQvfan4gBziswrRJsNK"
OTHER = "12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo"


@pytest.fixture
def authority():
    return Authority.generate()


def _keys(*authorities):
    return {a.public_key: parse_public_key(a.public_key) for a in authorities}


def test_issue_verify_round_trip(authority):
    text = issue_certificate(authority, PEER, "acme gpu pool", models=("smollm2",), valid_days=1)
    cert = verify_certificate(text, _keys(authority), peer_id=PEER)
    assert cert.operator == "acme gpu pool"
    assert cert.allows_model("smollm2")
    assert not cert.allows_model("gpt-4o")
    assert decode_certificate(text) == cert


def test_forged_foreign_expired_and_mangled_certificates_fail(authority):
    text = issue_certificate(authority, PEER, "op", valid_days=1, now=1_000_000)
    keys = _keys(authority)
    with pytest.raises(CertificateError, match="another peer"):
        verify_certificate(text, keys, peer_id=OTHER, now=1_000_001)
    with pytest.raises(CertificateError, match="expired"):
        verify_certificate(text, keys, peer_id=PEER, now=1_000_000 + 86_400)
    with pytest.raises(CertificateError, match="does not trust"):
        verify_certificate(text, _keys(Authority.generate()), peer_id=PEER, now=1_000_001)
    # A member who edits its own certificate (say, to add models) breaks the signature.
    prefix, _payload, sig = text.split(".")
    other = issue_certificate(authority, OTHER, "op", valid_days=1, now=1_000_000)
    with pytest.raises(CertificateError, match="bad signature"):
        verify_certificate(f"{prefix}.{other.split('.')[1]}.{sig}", keys, peer_id=OTHER, now=1_000_001)
    for junk in ("", "tooti-cert-1", "x.y.z", "tooti-cert-1.!!!.???", "a" * 5000):
        with pytest.raises(CertificateError):
            verify_certificate(junk, keys, peer_id=PEER)


def test_authority_key_file_round_trip(tmp_path, authority):
    path = tmp_path / "authority.key"
    authority.save(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert Authority.load(path).public_key == authority.public_key
    with pytest.raises(FileExistsError):
        authority.save(path)


def test_allowlist_admits_only_listed_peers():
    admission = Admission(AdmissionSection(mode="allowlist", allow=[PEER]))
    assert admission.admits(PEER, None)
    verdict = admission.verdict(OTHER, None)
    assert not verdict.admitted
    assert verdict.reason == "not on the allow list"


def test_membership_admits_certified_peers_and_honours_revocation(tmp_path, authority):
    revoked = tmp_path / "revoked.txt"
    section = AdmissionSection(mode="membership", authorities=[authority.public_key], revocation_file=str(revoked))
    admission = Admission(section)
    admission.revocations.check_every_s = 0.0
    text = issue_certificate(authority, PEER, "op")
    assert admission.verdict(PEER, text).reason == "member (op)"
    assert not admission.admits(PEER, None)
    assert not admission.admits(OTHER, text)  # a stolen certificate is useless under another key
    assert not admission.admits(PEER, issue_certificate(Authority.generate(), PEER, "op"))
    append_revocation(revoked, decode_certificate(text).serial, "left the pool")
    assert admission.verdict(PEER, text).reason == "certificate revoked"
    assert len(RevocationList(revoked)) == 1


def test_config_errors_name_the_key(authority):
    with pytest.raises(ValueError, match=r"gateway\.admission\.allow is empty"):
        GatewaySection(admission=AdmissionSection(mode="allowlist"))
    with pytest.raises(ValueError, match=r"gateway\.admission\.authorities is empty"):
        GatewaySection(admission=AdmissionSection(mode="membership"))
    with pytest.raises(ValueError, match=r"gateway\.admission\.authorities"):
        GatewaySection(admission=AdmissionSection(mode="membership", authorities=["ed25519:short"]))
    GatewaySection(admission=AdmissionSection(mode="membership", authorities=[authority.public_key]))


def test_authority_cli_create_issue_inspect_revoke(tmp_path):
    from typer.testing import CliRunner

    from tooti.cli import app

    runner = CliRunner()
    key, cert_file, revoked = tmp_path / "authority.key", tmp_path / "node.cert", tmp_path / "revoked.txt"
    created = runner.invoke(app, ["authority", "create", "--key", str(key)])
    assert created.exit_code == 0, created.output
    public = created.output.strip().splitlines()[-1]
    assert public.startswith("ed25519:")
    assert runner.invoke(app, ["authority", "create", "--key", str(key)]).exit_code == 1  # never overwrite
    issued = runner.invoke(
        app, ["authority", "issue", PEER, "-o", "acme", "--key", str(key), "-m", "smollm2", "--out", str(cert_file)]
    )
    assert issued.exit_code == 0, issued.output
    shown = runner.invoke(app, ["authority", "inspect", str(cert_file), "-a", public])
    assert shown.exit_code == 0, shown.output
    assert "acme" in shown.output
    assert "smollm2" in shown.output
    assert "valid" in shown.output
    assert runner.invoke(app, ["authority", "inspect", str(cert_file), "-a", Authority.generate().public_key]).exit_code
    serial = decode_certificate(cert_file.read_text().strip()).serial
    assert runner.invoke(app, ["authority", "revoke", serial, "--list", str(revoked)]).exit_code == 0
    assert RevocationList(revoked).revoked(serial)
