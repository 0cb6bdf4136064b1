"""``tooti authority``: run a membership network — create the authority key, issue, revoke, inspect.

The authority's private key signs certificates and should live offline (on the operator's laptop, not
on a gateway); gateways and nodes only need its public key (``admission.authorities``) and the
revocation list file (``admission.revocation_file``). See docs/security.md.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Membership certificates: create an authority, issue, revoke, inspect.", no_args_is_help=True)

_Key = Annotated[Path, typer.Option("--key", "-k", help="The authority's private key file.")]


@app.command()
def create(key: _Key = Path("authority.key")) -> None:
    """Create an authority key (mode 0600) and print its public key for ``admission.authorities``."""
    from tooti.cli._common import console, fail
    from tooti.trust.membership import Authority

    authority = Authority.generate()
    try:
        authority.save(key)
    except FileExistsError:
        fail(f"{key} exists; refusing to overwrite an authority key")
    console.print(f"authority key written to {key} (keep it offline)")
    console.print("public key, for gateway.admission.authorities and node.admission.authorities:")
    typer.echo(authority.public_key)


@app.command()
def issue(
    peer_id: Annotated[str, typer.Argument(help="The member's peer id (`tooti node id`).")],
    operator: Annotated[str, typer.Option("--operator", "-o", help="Who runs the member.")],
    key: _Key = Path("authority.key"),
    days: Annotated[float, typer.Option("--days", help="Validity in days.", min=0.001)] = 365.0,
    model: Annotated[list[str] | None, typer.Option("--model", "-m", help="A model it may serve (repeat).")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write the certificate to this file.")] = None,
) -> None:
    """Issue a certificate for ``PEER_ID`` (printed, or written to ``--out`` for ``admission.certificate_file``)."""
    from tooti.cli._common import fail
    from tooti.trust.membership import Authority, CertificateError, issue_certificate

    try:
        authority = Authority.load(key)
        text = issue_certificate(authority, peer_id, operator, valid_days=days, models=tuple(model or ()))
    except (OSError, CertificateError, ValueError) as exc:
        fail(f"cannot issue: {exc}")
    if out is not None:
        out.write_text(text + "\n")
    typer.echo(text)


@app.command()
def revoke(
    serial_or_peer: Annotated[str, typer.Argument(help="A certificate serial or a peer id.")],
    revocation_file: Annotated[Path, typer.Option("--list", "-l", help="The revocation list file.")] = Path(
        "revoked.txt"
    ),
    note: Annotated[str, typer.Option("--note", help="Why (kept as a comment).")] = "",
) -> None:
    """Add a serial or peer id to the revocation list gateways and nodes read (no restart needed)."""
    from tooti.cli._common import console, fail
    from tooti.trust.revocation import append_revocation

    try:
        append_revocation(revocation_file, serial_or_peer, note)
    except (OSError, ValueError) as exc:
        fail(str(exc))
    console.print(f"revoked {serial_or_peer} in {revocation_file}; distribute the file to gateways and nodes")


@app.command()
def inspect(
    certificate: Annotated[str, typer.Argument(help="Certificate text, or a file holding it.")],
    authority: Annotated[
        list[str] | None, typer.Option("--authority", "-a", help="Verify against this public key (repeat).")
    ] = None,
) -> None:
    """Show what a certificate says and, with ``--authority``, whether it verifies."""
    from tooti.cli._common import console, fail
    from tooti.trust.membership import CertificateError, decode_certificate, parse_public_key, verify_certificate

    text = certificate
    path = Path(certificate)
    if len(certificate) < 1024 and path.is_file():
        text = path.read_text().strip()
    try:
        cert = decode_certificate(text)
    except CertificateError as exc:
        fail(str(exc))

    def when(ts: int) -> str:
        return dt.datetime.fromtimestamp(ts, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")

    console.print(f"peer id:   {cert.peer_id}", highlight=False)
    console.print(f"operator:  {cert.operator}", highlight=False)
    console.print(f"serial:    {cert.serial}", highlight=False)
    console.print(f"issued:    {when(cert.issued_at)}", highlight=False)
    console.print(f"expires:   {when(cert.expires_at)}", highlight=False)
    console.print(f"models:    {', '.join(cert.models) or 'any'}", highlight=False)
    console.print(f"authority: {cert.authority}", highlight=False)
    if authority:
        try:
            keys = {a: parse_public_key(a) for a in authority}
            verify_certificate(text, keys, peer_id=cert.peer_id)
        except CertificateError as exc:
            fail(f"does not verify: {exc}")
        console.print("[green]valid[/green]: signed by a given authority and not expired")
