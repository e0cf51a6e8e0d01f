"""`passport issue`: the OEM's end-of-line batch."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from cli._common import emit_json, err, handle_errors, progress_bar
from passport import issuance
from passport._fileio import read_bytes
from passport.errors import InputError
from passport.image import DEFAULT_PROFILE, PROFILES, profile_named
from passport.trust import keys
from passport.trust.store import load_certificates

_PROFILE_HELP = "Tag memory: " + ", ".join(f"{p.name} ({p.size} B)" for p in PROFILES.values())


@handle_errors
def issue(
    cells_csv: Annotated[
        Path | None,
        typer.Argument(help="CSV of cells, one per row ('-' reads stdin). See --example-csv."),
    ] = None,
    key: Annotated[Path | None, typer.Option(help="OEM private key (P-256 PEM).")] = None,
    cert: Annotated[
        Path | None, typer.Option(help="OEM certificate; records name it by its x5t.")
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory for the images.")] = Path(
        "passports"
    ),
    profile: Annotated[str, typer.Option(help=_PROFILE_HELP)] = DEFAULT_PROFILE,
    force: Annotated[bool, typer.Option(help="Overwrite existing images and cell keys.")] = False,
    password_file: Annotated[
        Path | None, typer.Option(help=f"Password of an encrypted key (or ${keys.PASSWORD_ENV}).")
    ] = None,
    example_csv: Annotated[
        bool, typer.Option("--example-csv", help="Print a valid example CSV and exit.")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Sign a birth record for every cell in CELLS_CSV and write one tag image per cell.

    For each row, `OUT/<id>.t5t` is the cell's NFC Type 5 memory image and, unless the row gives
    the cell's public key, `OUT/<id>.cell.pem` stands in for the key the cell's secure element
    would hold. The whole CSV is checked before anything is written.

    Example: passport issue cells.csv --key oem.pem --cert oem.cert.pem --out passports/
    """
    if example_csv:
        sys.stdout.write(issuance.example_csv())
        return
    if cells_csv is None:
        raise InputError("give a CSV of cells (or --example-csv to see the format)")
    if key is None or cert is None:
        raise InputError("--key and --cert (the OEM's signing key and certificate) are required")
    memory = profile_named(profile)
    source = "<stdin>" if str(cells_csv) == "-" else str(cells_csv)
    raw = sys.stdin.buffer.read() if source == "<stdin>" else read_bytes(cells_csv)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputError(f"line {line}: not UTF-8 text (byte {exc.start})", source=source) from None
    oem_key = keys.load_private(key, keys.read_password(password_file))
    certs = load_certificates(cert)
    if not certs:
        raise InputError("no certificate in the file", source=str(cert))
    rows = issuance.read_cells(text, source=source, issued_at=issuance.now_epoch())
    with progress_bar("issuing", len(rows)) as advance:
        summary = issuance.issue_batch(
            rows,
            oem_key=oem_key,
            oem_cert=certs[0],
            profile=memory,
            out_dir=out,
            overwrite=force,
            progress=advance,
            source=source,
        )
    result = {
        "issued": summary.issued,
        "out": summary.out_dir,
        "profile": summary.profile,
        "birth_bytes": {"min": min(summary.birth_bytes), "max": max(summary.birth_bytes)},
        "free_bytes_min": min(summary.free_bytes),
        "seconds": round(summary.seconds, 3),
        "cells_per_hour": round(summary.issued / summary.seconds * 3600)
        if summary.seconds
        else None,
    }
    if json_out:
        emit_json(result)
    err.print(
        f"issued {summary.issued} passports into {summary.out_dir} ({memory.name}, birth record "
        f"{min(summary.birth_bytes)}-{max(summary.birth_bytes)} B, "
        f"at least {result['free_bytes_min']} B free per tag) in {summary.seconds:.2f} s"
    )
