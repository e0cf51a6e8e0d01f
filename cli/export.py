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
from passport.chain import Finding
from passport.errors import DecodeError, InputError
from passport.export import FORMATS, Tier, export_passport, export_records
from passport.image import Image
from passport.records import Birth
from passport.registry import Registry
from passport.registry.db import DB_ENV


@handle_errors
def export(
    image_path: Annotated[
        Path | None, typer.Argument(metavar="IMAGE", help="The cell's tag image (or --cell).")
    ] = None,
    cell: Annotated[
        str | None,
        typer.Option(
            help="Export from the registry (--db) instead of a tag: battery id, passport id or "
            "birth record SHA-256."
        ),
    ] = None,
    fmt: Annotated[
        str, typer.Option("--format", help=f"Document model: {', '.join(FORMATS)}.")
    ] = "catenax",
    tier: Annotated[
        str,
        typer.Option(help="Who reads it: public, legitimate-interest or authority (Art. 77(2))."),
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
    """Export a verified passport as Catena-X 6.1.0 or Battery Pass 1.2.0 JSON for one tier.

    The passport must verify against the trust bundle, and the data sheet (materials, carbon
    footprint, documents) must be the OEM-signed one whose SHA-256 its birth record carries.
    Tiers follow Art. 77(2): public holds Annex XIII point 1; legitimate-interest adds point 2
    (detailed composition, spare parts, dismantling, safety measures) and point 4 (the battery's
    state of health and history); authority adds point 2 and point 3 (test reports). Attributes
    without a value are listed on stderr. Exit 1 if the passport or the data sheet does not
    verify (nothing is written), 2 on bad usage or a missing data sheet.

    Examples: passport export demo-out/images/01-09506000134352-21-D00001.t5t --trust
    demo-out/trust --db demo-out/passport.db --tier public --out passport.json;
    passport export --cell https://id.gs1.org/01/09506000134352/21/D00001 --db
    demo-out/passport.db --trust demo-out/trust --tier legitimate-interest
    """
    chosen = Tier.parse(tier)
    if (image_path is None) == (cell is None):
        raise InputError("give a tag IMAGE or --cell ID (with --db), not both")
    if out is not None and out.exists() and not force:
        raise InputError("already exists (use --force to overwrite)", source=str(out))
    bundle = load_trust(trust, None)
    sheet: bytes | None = read_bytes(datasheet, limit=1 << 20) if datasheet else None
    if cell is not None:
        if db is None and not os.environ.get(DB_ENV):
            raise InputError(f"--cell reads the registry: give --db (or ${DB_ENV})")
        registry = Registry(db, trust=bundle)
        records, flagged = registry.history(cell)
        birth = records[0].body
        assert isinstance(birth, Birth)
        if sheet is None:
            sheet = registry.datasheet(birth.datasheet_sha256)
        result = export_records(
            records, bundle, sheet, fmt=fmt, tier=chosen, allow_unverified=allow_unverified,
            source=f"registry passport {cell}", receipts=registry.receipt_lookup(),
            extra_findings=[Finding("registry.flagged", None, "the registry has flagged this "
                                    "passport (fork or clone alert)")] if flagged else [],
        )  # fmt: skip
    else:
        assert image_path is not None
        try:
            image = Image.from_bytes(read_bytes(image_path, limit=1 << 20))
        except DecodeError as exc:
            raise exc.at(str(image_path)) from None
        if sheet is None and (db is not None or os.environ.get(DB_ENV)):
            tag_birth = image.birth.body
            assert isinstance(tag_birth, Birth)
            sheet = Registry(db).datasheet(tag_birth.datasheet_sha256)
        result = export_passport(
            image, bundle, sheet, fmt=fmt, tier=chosen, allow_unverified=allow_unverified,
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
