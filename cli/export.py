"""`passport export`: the EU battery passport as an industry model's JSON, for one access tier."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from cli._common import err, handle_errors
from cli.verify import TrustOption, load_trust
from passport._fileio import read_bytes, write_atomic
from passport.errors import InputError
from passport.export import FORMATS, Tier, export_cell, export_passport
from passport.registry import Registry
from passport.registry.db import DB_ENV
from passport.writer import read_image


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
    trust: TrustOption = None,
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
    sheet = read_bytes(datasheet, limit=1 << 20) if datasheet else None
    registry = Registry(db, trust=bundle) if db is not None or os.environ.get(DB_ENV) else None
    if cell is not None:
        if registry is None:
            raise InputError(f"--cell reads the registry: give --db (or ${DB_ENV})")
        result = export_cell(
            registry, cell, bundle, sheet, fmt=fmt, tier=chosen, allow_unverified=allow_unverified
        )
    else:
        assert image_path is not None
        result = export_passport(
            read_image(image_path), bundle, sheet, fmt=fmt, tier=chosen,
            allow_unverified=allow_unverified, source=str(image_path), registry=registry,
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
