"""`passport demo`: the main job, end to end, on the SQLite default."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cli._common import EXIT_FAILED, emit_json, err, handle_errors
from cli.intake import _print_summary, _stages
from passport.demo import MIN_CELLS, run_demo


@handle_errors
def demo(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Directory for everything it makes.")
    ] = Path("demo-out"),
    cells: Annotated[
        int, typer.Option(min=MIN_CELLS, help="How many cells the OEM issues.")
    ] = 2000,
    years: Annotated[int, typer.Option(min=2, max=30, help="Years of cell life to write.")] = 5,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Run what the product is for, end to end, and check it behaves.

    Builds a demo PKI; issues a batch of cells across four designs modelled on real ones;
    writes years of life into their tags (cell telemetry, laboratory tests, abuse, accidents)
    and registers them; then sends them to a recycler with trouble on the way (tampered,
    cloned, forked and overstated passports). The recycler's intake line pulse-tests every
    cell, and `passport intake` verifies, registers, measures, checks the claims, grades and
    signs. Every planted case must end up where the policy says (exit 1 if not).

    It leaves DIR/trust/, DIR/keys/, DIR/images/, DIR/reference.csv, DIR/model,
    DIR/tests.csv, DIR/passport.db and DIR/intake/ (results.csv, results.json, report.html,
    images/) so that every step can be re-run by hand (README: "The demo").
    """
    with _stages(not json_out) as stage:
        report = run_demo(out, cells=cells, years=years, stage=stage)
    if json_out:
        emit_json(report.to_dict())
    designs = ", ".join(f"{n} x {m}" for m, n in report.designs.items())
    err.print(
        f"fleet: {report.cells} cells ({designs}); signed history entries: "
        + ", ".join(f"{n} by {who}" for who, n in report.entries.items())
        + f"; {report.evicted} records evicted behind checkpoints; registry "
        f"{report.out_dir}/passport.db holds {report.registry_records} records, "
        f"{report.registry_alerts} alerts",
        markup=False,
    )
    table = Table(title="planted cases", title_justify="left")
    table.add_column("case")
    table.add_column("cells", justify="right")
    table.add_column("expected")
    table.add_column("")
    for name, outcome in report.outcomes.items():
        table.add_row(name, str(len(outcome["got"])), outcome["expected"],
                      "[green]ok[/]" if outcome["ok"] else "[red]WRONG[/]")  # fmt: skip
    err.print(table)
    if report.intake is not None:
        _print_summary(report.intake)
    err.print(
        f"measured SoH vs the cells' true SoH: MAE {report.soh_mae_points} points", markup=False
    )
    err.print(
        f"[green]demo as expected[/] in {report.seconds:.0f} s"
        if report.as_expected
        else "[red]demo did NOT behave as expected[/]"
    )
    if report.intake is not None:
        err.print(f"report: {report.intake.outputs['report_html']}", markup=False)
    if not report.as_expected:
        raise typer.Exit(EXIT_FAILED)
