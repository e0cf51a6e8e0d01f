"""`passport ca`: a demo PKI with real certificates and CRLs."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer

from cli._common import emit_json, err, handle_errors
from passport.errors import InputError
from passport.trust.ca import REASONS, CertificateAuthority
from passport.trust.roles import Role, parse_role
from passport.units import parse_time

app = typer.Typer(
    rich_markup_mode="markdown",  # docstring line breaks are reflowed to the terminal width
    help="A demo PKI: root CA, OEM and services CAs, one certificate per actor role, CRLs, "
    "and the trust bundle (DIR/trust) every verifying command takes.",
    no_args_is_help=True,
)


def _when(text: str | None, what: str) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(parse_time(text, what=what), dt.UTC) if text else None


@app.command("init")
@handle_errors
def init(
    directory: Annotated[Path, typer.Argument(help="Directory to create the PKI in.")],
    not_before: Annotated[
        str | None,
        typer.Option(help="Start of validity (ISO time); early enough for histories you sign."),
    ] = None,
    days: Annotated[int, typer.Option(min=1, help="Validity of actor certificates.")] = 3650,
    force: Annotated[bool, typer.Option(help="Replace an existing CA in DIRECTORY.")] = False,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print what was issued as JSON.")
    ] = False,
) -> None:
    """Create a complete demo PKI and trust bundle.

    `DIRECTORY/keys/<role>.key.pem` and `.cert.pem` for oem, integrator, tester, repurposer and
    recycler; DIRECTORY/trust/ (roots, intermediates, certs, crls, policy.toml) for verifiers.

    Example: passport ca init pki && passport verify --trust pki/trust images/
    """
    issued = CertificateAuthority(directory).init(
        not_before=_when(not_before, "--not-before"), days=days, force=force
    )
    if json_out:
        emit_json(
            {
                "trust": str(Path(directory) / "trust"),
                "actors": [
                    {"name": i.name, "role": i.role, "serial": format(i.serial, "x"),
                     "key": str(i.key_path), "certificate": str(i.cert_path)}
                    for i in issued
                ],
            }
        )  # fmt: skip
    err.print(
        f"created a PKI in {directory}: trust bundle {Path(directory) / 'trust'}", markup=False
    )
    for i in issued:
        err.print(f"  {i.role:<11} {i.key_path}  {i.cert_path}", markup=False)


@app.command("issue")
@handle_errors
def issue(
    directory: Annotated[Path, typer.Argument(help="A directory made by `passport ca init`.")],
    name: Annotated[str, typer.Argument(help="File name of the new actor (letters, digits, - _).")],
    role: Annotated[str, typer.Option(help=", ".join(r.value for r in Role))],
    cn: Annotated[str | None, typer.Option(help="Common name in the certificate.")] = None,
    days: Annotated[int | None, typer.Option(min=1, help="Validity in days.")] = None,
    not_before: Annotated[str | None, typer.Option(help="Start of validity (ISO time).")] = None,
    force: Annotated[bool, typer.Option(help="Re-issue an existing actor name.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Issue a key and certificate for a new actor and add it to the trust bundle."""
    try:
        actor_role = parse_role(role)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    issued = CertificateAuthority(directory).issue(
        name, actor_role, common_name=cn, days=days,
        not_before=_when(not_before, "--not-before"), force=force,
    )  # fmt: skip
    if json_out:
        emit_json(
            {"name": issued.name, "role": issued.role, "serial": format(issued.serial, "x"),
             "key": str(issued.key_path), "certificate": str(issued.cert_path)}
        )  # fmt: skip
    err.print(
        f"issued {issued.role} {issued.name}: {issued.key_path}, {issued.cert_path}", markup=False
    )


@app.command("revoke")
@handle_errors
def revoke(
    directory: Annotated[Path, typer.Argument(help="A directory made by `passport ca init`.")],
    actor: Annotated[str, typer.Argument(help="Actor name or certificate serial (hex).")],
    reason: Annotated[str, typer.Option(help=", ".join(REASONS))] = "key_compromise",
    at: Annotated[
        str | None, typer.Option(help="Revocation time (ISO 8601 or epoch s); default now.")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Revoke an actor's certificate and re-sign its CA's CRL in the trust bundle.

    Records the actor signed after AT fail verification. Records claiming an earlier time pass
    when the reason is superseded, cessation_of_operation or affiliation_changed; for
    key_compromise (or unspecified) only a registry receipt proving they were logged before AT
    makes them pass (see policy.toml).
    """
    result = CertificateAuthority(directory).revoke(actor, reason=reason, at=_when(at, "--at"))
    if json_out:
        emit_json(result)
    err.print(
        f"revoked {result['name']} (serial {result['serial']}) as of {result['at']}: {reason}",
        markup=False,
    )


@app.command("list")
@handle_errors
def listing(
    directory: Annotated[Path, typer.Argument(help="A directory made by `passport ca init`.")],
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List issued actor certificates and their revocations."""
    rows = CertificateAuthority(directory).listing()
    if json_out:
        emit_json(rows)
        return
    for row in rows:
        state = f"revoked {row['revoked']} ({row['reason']})" if row["revoked"] else "valid"
        err.print(f"{row['name']:<14} {row['role']:<11} {row['serial']}  {state}", markup=False)
