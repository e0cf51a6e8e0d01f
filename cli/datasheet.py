"""`passport datasheet`: sign and show OEM model data sheets (see `passport.datasheet`)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from cli._common import emit_json, err, handle_errors
from cli.verify import TRUST_ENV, load_trust
from passport._fileio import read_bytes, write_atomic
from passport.datasheet import (
    MAX_DATASHEET_BYTES,
    MAX_DOCUMENT_BYTES,
    DataSheet,
    datasheet_sha256,
    example_document,
    parse_document,
    sign_datasheet,
    unverified_datasheet,
    verify_datasheet,
)
from passport.errors import InputError, VerificationError
from passport.trust import keys
from passport.trust.store import load_certificates

app = typer.Typer(
    rich_markup_mode="markdown",  # docstring line breaks are reflowed to the terminal width
    help="OEM model data sheets: the signed JSON (materials, carbon footprint, due diligence...) "
    "that birth records name by SHA-256 in datasheet_sha256.\n\n"
    "Example: passport datasheet sign --example > sheet.json; passport datasheet sign "
    "sheet.json --key oem.pem --cert oem.cert.pem --out sheet.cose",
    no_args_is_help=True,
)

Json = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]


@app.command("sign")
@handle_errors
def sign(
    sheet: Annotated[
        Path | None,
        typer.Argument(help="The data sheet as JSON ('-' reads stdin). See --example."),
    ] = None,
    key: Annotated[Path | None, typer.Option(help="OEM private key (P-256 PEM).")] = None,
    cert: Annotated[
        Path | None, typer.Option(help="OEM certificate; the sheet names it by its x5t.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Signed data sheet to write (COSE).")
    ] = None,
    force: Annotated[bool, typer.Option(help="Overwrite OUT if it exists.")] = False,
    password_file: Annotated[
        Path | None, typer.Option(help=f"Password of an encrypted key (or ${keys.PASSWORD_ENV}).")
    ] = None,
    example: Annotated[
        bool, typer.Option("--example", help="Print a valid example data sheet and exit.")
    ] = False,
    json_out: Json = False,
) -> None:
    """Check SHEET (JSON), sign it as the OEM and write OUT; print its SHA-256.

    The SHA-256 printed is what the issuance CSV's datasheet_sha256 column takes, so every
    birth record names this exact sheet. SHEET is an object with model, manufacturer,
    revision, issued (YYYY-MM-DD) and fields (any JSON object); format and version may be left
    out.

    Example: passport datasheet sign acme-lfp-35.json --key oem.pem --cert oem.cert.pem
    --out acme-lfp-35.cose
    """
    if example:
        sys.stdout.write(example_document())
        return
    if sheet is None:
        raise InputError("give the data sheet JSON (or --example to see the format)")
    if key is None or cert is None or out is None:
        raise InputError(
            "--key, --cert (the OEM's signing key and certificate) and --out are required"
        )
    source = "<stdin>" if str(sheet) == "-" else str(sheet)
    data = (
        sys.stdin.buffer.read(MAX_DOCUMENT_BYTES + 1)
        if source == "<stdin>"
        else read_bytes(sheet, limit=MAX_DOCUMENT_BYTES)
    )
    document = parse_document(data, source=source)
    oem_key = keys.load_private(key, keys.read_password(password_file))
    certs = load_certificates(cert)
    if not certs:
        raise InputError("no certificate in the file", source=str(cert))
    try:
        raw = sign_datasheet(document, oem_key, certs[0])
    except InputError as exc:
        raise exc.at(str(key)) from None
    write_atomic(out, raw, overwrite=force)
    digest = datasheet_sha256(raw).hex()
    if json_out:
        emit_json({"out": str(out), "sha256": digest, "bytes": len(raw), **_summary(document)})
    else:
        sys.stdout.write(digest + "\n")
    err.print(
        f"signed {document.model} revision {document.revision} into {out} ({len(raw)} B); "
        f"put datasheet_sha256={digest} in the issuance CSV",
        markup=False,
    )


@app.command("show")
@handle_errors
def show(
    sheet: Annotated[Path, typer.Argument(help="Signed data sheet (COSE) to show.")],
    trust: Annotated[
        Path | None,
        typer.Option(
            help=f"Trust bundle: verify the signer (or ${TRUST_ENV}).", show_default=False
        ),
    ] = None,
    expect_sha256: Annotated[
        str | None,
        typer.Option(help="The SHA-256 (hex) a birth record names: the sheet must be it."),
    ] = None,
    json_out: Json = False,
) -> None:
    """Print a signed data sheet; with a trust bundle, verify it first (exit 1 if it fails).

    Without --trust (and without $PASSPORT_TRUST) the sheet is decoded but its signature and
    signer are NOT checked, and the output says so.

    Example: passport datasheet show acme-lfp-35.cose --trust trust/
    """
    raw = read_bytes(sheet, limit=MAX_DATASHEET_BYTES)
    source = str(sheet)
    expected = _hex32(expect_sha256, "--expect-sha256") if expect_sha256 else None
    verify = trust is not None or bool(os.environ.get(TRUST_ENV))
    result: dict[str, Any] = {"path": source, "sha256": datasheet_sha256(raw).hex()}
    if verify:
        checked = verify_datasheet(
            raw, load_trust(trust, None), source=source, expect_sha256=expected
        )
        document = checked.sheet
        result.update(verified=True, signer=checked.signer.subject)
    else:
        if expected is not None and expected != datasheet_sha256(raw):
            raise VerificationError(
                f"data sheet SHA-256 is {result['sha256']}, expected {expected.hex()}",
                rule="datasheet.hash-mismatch",
                source=source,
            )
        try:
            document = unverified_datasheet(raw, source=source)
        except VerificationError as exc:
            # Unchecked display: a file that does not decode is unreadable input (exit 2).
            raise InputError(f"{exc.reason} [{exc.rule}]", source=source) from None
        result.update(verified=False, signer=None)
    result["sheet"] = document.to_dict()
    if json_out:
        emit_json(result)
    else:
        _print(result, document)
    if result["verified"]:
        err.print(f"OK: {source}: signed by {result['signer']}", markup=False)
    else:
        err.print(
            f"UNVERIFIED: {source}: signature and signer not checked (give --trust DIR)",
            markup=False,
        )


def _print(result: dict[str, Any], document: DataSheet) -> None:
    signer = (
        f"{result['signer']} (verified)"
        if result["verified"]
        else "UNVERIFIED (no trust bundle: signature and signer not checked)"
    )
    lines = [
        f"model: {document.model}",
        f"manufacturer: {document.manufacturer}",
        f"revision: {document.revision}",
        f"issued: {document.issued.isoformat()}",
        f"sha256: {result['sha256']}",
        f"signer: {signer}",
        "fields: "
        + json.dumps(document.to_dict()["fields"], indent=2, ensure_ascii=False, sort_keys=True),
    ]
    sys.stdout.write("\n".join(lines) + "\n")


def _summary(document: DataSheet) -> dict[str, Any]:
    return {
        "model": document.model,
        "manufacturer": document.manufacturer,
        "revision": document.revision,
        "issued": document.issued.isoformat(),
    }


def _hex32(text: str, option: str) -> bytes:
    try:
        value = bytes.fromhex(text.strip())
    except ValueError:
        value = b""
    if len(value) != 32:
        raise InputError(f"{option} takes a SHA-256 as 64 hex digits")
    return value
