"""`passport export`: the EU battery passport as an industry model's JSON, for one access tier."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from cli._common import err, handle_errors
from cli.verify import load_trust
from passport._fileio import read_bytes, write_atomic
from passport.errors import DecodeError, InputError
from passport.export import FORMATS, Tier, export_passport
from passport.image import Image
from passport.records import Birth
from passport.registry import Registry
from passport.registry.db import DB_ENV


@handle_errors
def export(
    image_path: Annotated[Path, typer.Argument(metavar="IMAGE", help="The cell's tag image.")],
    fmt: Annotated[
        str, typer.Option("--format", help=f"Document model: {', '.join(FORMATS)}.")
    ] = "catenax",
    tier: Annotated[
        str,
        typer.Option(help="Who reads it: public, legitimate-interest or authority (Annex XIII)."),
    ] = "public",
    trust: Annotated[Path | None, typer.Option(help="The trust bundle directory.")] = None,
    datasheet: Annotated[
        Path | None,
        typer.Option(help="The model's signed data sheet (.cose); else looked up in --db."),
    ] = None,
    db: Annotated[
        str | None,
        typer.Option("--db", help=f"A registry holding the data sheet (${DB_ENV})."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the JSON here (default stdout).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite --out.")] = False,
    allow_unverified: Annotated[
        bool,
        typer.Option(help="Export a passport that does not verify, marked UNVERIFIED inside."),
    ] = False,
) -> None:
    """Export a verified passport as the Catena-X battery passport (6.1.0) JSON for one tier.

    The passport must verify against the trust bundle, and the data sheet (materials, carbon
    footprint, documents) must be the OEM-signed one whose SHA-256 its birth record carries.
    A public export holds only Annex XIII(1) attributes; legitimate-interest adds the detailed
    composition, dismantling and safety information and the battery's own state of health and
    history (Annex XIII 2 and 4); authority adds the test reports (Annex XIII 3). Attributes
    without a value are listed on stderr. Exit 1 if the passport or the data sheet does not
    verify (nothing is written), 2 on bad usage or a missing data sheet.

    Example: passport export demo-out/images/01-09506000134352-21-D00001.t5t --trust
    demo-out/trust --db demo-out/passport.db --tier public --out passport.json
    """
    chosen = Tier.parse(tier)
    if out is not None and out.exists() and not force:
        raise InputError("already exists (use --force to overwrite)", source=str(out))
    bundle = load_trust(trust, None)
    try:
        image = Image.from_bytes(read_bytes(image_path, limit=1 << 20))
    except DecodeError as exc:
        raise exc.at(str(image_path)) from None
    raw: bytes | None = None
    if datasheet is not None:
        raw = read_bytes(datasheet, limit=1 << 20)
    elif db is not None or DB_ENV in os.environ:
        birth = image.birth.body
        assert isinstance(birth, Birth)
        raw = Registry(db).datasheet(birth.datasheet_sha256)
    result = export_passport(
        image, bundle, raw, fmt=fmt, tier=chosen, allow_unverified=allow_unverified,
        source=str(image_path),
    )  # fmt: skip
    if not result.verified:
        err.print(
            "[bold red]WARNING: this passport does NOT verify; the export is marked "
            "UNVERIFIED[/]: " + "; ".join(result.findings)
        )
    if result.missing:
        err.print(
            f"{len(result.missing)} attribute(s) without a value, left out: "
            + ", ".join(result.missing),
            markup=False,
        )
    text = json.dumps(result.document, indent=2, ensure_ascii=False) + "\n"
    if out is None:
        typer.echo(text, nl=False)
    else:
        write_atomic(out, text.encode("utf-8"))
        err.print(f"wrote {out} ({result.format}, {result.tier.label})", markup=False)
