"""`passport keys generate`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli._common import emit_json, err, handle_errors
from passport._fileio import write_atomic
from passport.errors import InputError
from passport.trust import keys

app = typer.Typer(
    help="Create and inspect key files.", no_args_is_help=True, rich_markup_mode="markdown"
)


@app.command("generate")
@handle_errors
def generate(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Private key file to write (PEM, mode 0600).")
    ],
    key_type: Annotated[
        str,
        typer.Option(
            "--type",
            "-t",
            help="ed25519 for a cell's key; p256 for actors (OEM, tester, recycler...).",
        ),
    ] = "ed25519",
    force: Annotated[bool, typer.Option(help="Overwrite existing files.")] = False,
    password_file: Annotated[
        Path | None,
        typer.Option(
            help=f"Encrypt the private key with the first line of this file "
            f"(or set ${keys.PASSWORD_ENV})."
        ),
    ] = None,
    cert_cn: Annotated[
        str | None,
        typer.Option(
            "--self-signed",
            help="Also write a self-signed certificate with this common name (p256 only), "
            "for trying the format before a PKI exists.",
        ),
    ] = None,
    cert_days: Annotated[int, typer.Option(help="Validity of the self-signed certificate.")] = 3650,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print what was written as JSON.")
    ] = False,
) -> None:
    """Generate a key pair: OUT (private, 0600) and OUT's .pub.pem (public).

    Example: passport keys generate --type p256 --out oem.pem --self-signed "ACME OEM"
    """
    if key_type not in keys.KEY_TYPES:
        raise InputError(f"--type: {key_type!r} is not one of {', '.join(keys.KEY_TYPES)}")
    password = keys.read_password(password_file)
    public_path = keys.public_path_for(out)
    cert_path = public_path.with_name(public_path.name.replace(".pub.pem", ".cert.pem"))
    key = keys.generate(key_type)
    cert = keys.self_signed_certificate(key, cert_cn, days=cert_days) if cert_cn else None  # type: ignore[arg-type]
    targets = [out, public_path] + ([cert_path] if cert is not None else [])
    existing = [str(p) for p in targets if p.exists()]
    if existing and not force:
        raise InputError(f"{', '.join(existing)} already exist (use --force to overwrite)")
    keys.save_private(key, out, password=password, overwrite=force)
    keys.save_public(key, public_path, overwrite=force)
    if cert is not None:
        write_atomic(cert_path, keys.cert_pem(cert), overwrite=force)
    written = {
        "type": key_type,
        "private_key": str(out),
        "public_key": str(public_path),
        "certificate": str(cert_path) if cert is not None else None,
        "encrypted": password is not None,
    }
    if json_out:
        emit_json(written)
    err.print(f"wrote {out} (private{', encrypted' if password else ''}) and {public_path}")
    if cert is not None:
        err.print(f"wrote {cert_path} (self-signed, CN={cert_cn})")
