"""`passport demo`: the end-to-end job on a small batch."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from cli._common import EXIT_FAILED, emit_json, err, handle_errors, progress_bar
from passport.demo import run_demo


@handle_errors
def demo(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Directory for everything it makes.")
    ] = Path("demo-out"),
    cells: Annotated[int, typer.Option(min=2, help="How many cells to issue.")] = 12,
    years: Annotated[int, typer.Option(min=1, max=30, help="Years of cell history to write.")] = 4,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Run the end-to-end job on a small batch and check it behaves.

    Issues a batch, writes years of cell history (small tags evict behind checkpoints), tampers
    with one tag, and verifies them all: the tampered one must fail, the rest must pass. Then
    ingests them into a registry, and estimates every cell's state of health from a simulated
    pulse test, checking it against what the passport claims.
    """
    with progress_bar("writing histories", cells) as advance:
        report = run_demo(out, cells=cells, years=years, progress=advance)
    if json_out:
        emit_json(
            {
                "out": report.out_dir,
                "cells": report.cells,
                "profiles": report.profiles,
                "entries_by_signer": report.entries,
                "evicted_records": report.evicted,
                "verified_ok": report.verified_ok,
                "failed": report.failed,
                "tampered": report.tampered,
                "optimistic_bms": report.optimistic,
                "registry": asdict(report.registry) if report.registry else None,
                "soh": asdict(report.soh) if report.soh else None,
                "as_expected": report.as_expected,
                "seconds": round(report.seconds, 2),
            }
        )
    tags = ", ".join(f"{n} x {p}" for p, n in report.profiles.items())
    err.print(
        f"issued {report.cells} passports ({tags}); signed history entries: "
        + ", ".join(f"{n} by {who}" for who, n in report.entries.items())
        + f"; {report.evicted} records evicted behind checkpoints"
    )
    err.print(f"verified: {report.verified_ok} OK, {len(report.failed)} FAIL", markup=False)
    for path, reason in report.failed.items():
        err.print(f"  FAIL: {path}: {reason}", markup=False)
    err.print(f"tampered on purpose: {report.tampered}", markup=False)
    reg = report.registry
    if reg is not None:
        err.print(
            f"registry {reg.database}: {reg.stored} records stored, log size {reg.tree_size}, "
            f"rejected {len(reg.rejected_tags)} tag(s) and {len(reg.rejected_journals)} "
            f"journal(s); audit one record offline with: passport audit receipt "
            f"{report.out_dir}/record.cose {report.out_dir}/receipt.cose "
            f"--log-key {report.out_dir}/log.pub.pem",
            markup=False,
        )
    if report.soh is not None:
        soh = report.soh
        flagged = ", ".join(soh.flagged) if soh.flagged else "none"
        err.print(
            f"state of health: {soh.estimated} cells estimated from a pulse test (MAE "
            f"{soh.mae_points} points against their true SoH), passport claims flagged: "
            f"{flagged} (the cell whose BMS under-reports its fade: "
            f"{report.optimistic or 'none in this batch'}); see {soh.estimates}",
            markup=False,
        )
    err.print(
        f"[green]demo as expected[/] in {report.seconds:.1f} s; "
        f"try: passport show {report.tampered}"
        if report.as_expected
        else "[red]demo did NOT behave as expected[/]"
    )
    err.print(
        f"everything is in {report.out_dir}/: trust/ (the trust bundle), images/, keys/; try: "
        f"passport verify --trust {report.out_dir}/trust {report.out_dir}/images",
        markup=False,
    )
    if not report.as_expected:
        raise typer.Exit(EXIT_FAILED)
