"""`passport soh`: state of health from a pulse test, for the intake line."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, cast

import typer
from rich import box
from rich.table import Table

from cli._common import emit_json, err, handle_errors, progress_bar, progress_steps
from passport.errors import InputError
from passport.soh import (
    Ageing,
    calibrate_csv,
    estimate_csv,
    evaluate_csv,
    fit_csv,
    load_model,
    model_summary,
    save_model,
)
from passport.soh.check import DEFAULT_THRESHOLD
from passport.soh.io import is_parquet, parquet_rows

app = typer.Typer(
    rich_markup_mode="markdown",  # docstring line breaks are reflowed to the terminal width
    help="State of health (capacity / rated capacity) from a seconds-long pulse test, with a "
    "calibrated uncertainty, resistance and a check of what the passport claims.\n\n"
    "Input tables have the columns design, rated_ah, pulse_width_ms, cell_id and the "
    "turning-point voltages U1..U41 (see README: 'State of health'); the state of charge is "
    "not needed. Raw traces in the long format cell_id, t_s, current_a, voltage_v (optional "
    "design, and run to send a cell's protocol runs as separate blocks) are accepted too; "
    "CSV or Parquet.",
    no_args_is_help=True,
)

Json = Annotated[bool, typer.Option("--json", help="Print a JSON summary on stdout.")]
ModelPath = Annotated[
    Path, typer.Option("--model", "-m", help="Model file from 'passport soh fit'.")
]


def _designs(n: int) -> str:
    return f"{n} design" if n == 1 else f"{n} designs"


@app.command("fit")
@handle_errors
def fit(
    train: Annotated[
        Path,
        typer.Argument(
            metavar="TRAIN.csv", help="Reference table with a measured 'soh' column (fraction)."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Model file to write (JSON).")],
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing model.")] = False,
    json_out: Json = False,
) -> None:
    """Train one model file covering every design in TRAIN.

    Each design gets its own model; a design with few reference cells borrows strength from
    the others (pooled prior). The file records a training summary per design.
    """
    if out.exists() and not force:
        raise InputError("already exists (use --force to overwrite)", source=str(out))
    err.print(f"training on {train} ...", markup=False)
    with progress_steps("training designs") as advance:
        model = fit_csv(train, on_progress=advance)
    save_model(model, out)
    summary = model_summary(model)
    if json_out:
        emit_json({"model": str(out), "designs": summary})
    _print_designs(summary)
    err.print(f"wrote {out} ({_designs(len(summary))})", markup=False)


def _print_designs(summary: dict[str, dict[str, object]]) -> None:
    for design, info in summary.items():
        err.print(
            f"  {design}: {info['cells']} cells, {info['rows']} rows ({info['kind']}); "
            f"cross-validated MAE {info['cv_mae_points']} points, "
            f"90 % coverage {info['cv_coverage_90']}",
            markup=False,
        )
    _print_warnings(summary)


def _print_warnings(summary: dict[str, dict[str, object]]) -> None:
    for design, info in summary.items():
        for warning in cast(list[str], info.get("warnings", [])):
            err.print(f"  warning: {design}: {warning}", style="yellow", markup=False)


@app.command("estimate")
@handle_errors
def estimate(
    input_csv: Annotated[
        Path,
        typer.Argument(
            metavar="INPUT.csv",
            help="Pulse features or raw traces: CSV, or Parquet (needs pyarrow), told by content.",
        ),
    ],
    model_path: ModelPath,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Output CSV (default: stdout)."),
    ] = None,
    design: Annotated[
        str | None,
        typer.Option(help="Design of trace files that have no 'design' column."),
    ] = None,
    threshold: Annotated[
        float,
        typer.Option(help="Flag a passport claim when it exceeds the measurement by this z."),
    ] = DEFAULT_THRESHOLD,
    per_cell: Annotated[
        bool,
        typer.Option(
            "--per-cell",
            help="Also give every row its cell's SoH from all consecutive rows of that cell "
            "(the pulse widths of one test; with a soc_pct column, of one soc_pct too): "
            "cell_soh, cell_soh_sigma, cell_rows.",
        ),
    ] = False,
    json_out: Json = False,
) -> None:
    """Estimate SoH for every row of INPUT, in input order, with its standard deviation.

    Output columns: line, cell_id, design, soh, soh_sigma (fractions), resistance_mohm, error
    (empty when fine; otherwise no-model, missing-features, out-of-range, bad-row, ...). Input
    columns claimed_soh, claimed_soh_sigma, fec_since, days_since and initial_resistance_uohm
    add the passport check: resistance_growth, claim_z, claim_flagged, posterior_soh,
    posterior_sigma. A trace file gives one row per cell, or per cell and run when it has a
    run column (a cell's protocol runs as separate blocks), with width_ms and rated_ah. With
    --per-cell, consecutive rows of one cell_id (a test at several pulse widths, or a cell's
    runs; in a table with soc_pct, consecutive rows with the same soc_pct as well, so that a
    cell's tests at several states of charge stay apart) also get one combined SoH, as 'passport
    intake' measures a cell: inverse-variance mean of the rows that gave an estimate, its sigma
    narrowed only as far as the design's row correlation (stored in the model) allows. Streams
    in chunks: any input size, bounded memory. So on stdout a file that fails part-way (exit 2,
    e.g. a trace cell that comes back after other cells) leaves the rows before the failure;
    with --out the file appears only when every row is written. The summary counts the rows
    unlike the training cells (far_from_training: a sigma over twice the widest the design's
    cross-validation gave), the sign of noisy voltages or of cells the reference set lacks;
    each such row has unlike_training 1.
    """
    if threshold <= 0:
        raise typer.BadParameter("must be positive", param_hint="--threshold")
    model = load_model(model_path)
    if out is not None and out.resolve() == input_csv.resolve():
        raise InputError("--out would overwrite the input", source=str(out))
    total = _count_lines(input_csv)
    with progress_bar("estimating", total) as advance:
        summary = estimate_csv(
            model, input_csv, out, design=design, ageing=Ageing(), threshold=threshold,
            on_progress=advance, per_cell=per_cell,
        )  # fmt: skip
    data = summary.to_dict()
    if json_out:
        if out is None:
            err.print("[yellow]--json ignored: the estimates are on stdout[/]")
        else:
            emit_json({"output": str(out), **data})
    errors = ", ".join(f"{k} {v}" for k, v in data["errors"].items())  # type: ignore[attr-defined]
    err.print(
        f"{summary.rows} rows: {summary.estimated} estimated"
        + (f", {summary.flagged} claims flagged" if summary.flagged else "")
        + (
            f", {summary.far} unlike the training cells (noisy voltages, or cells the "
            "reference set lacks: their sigma says so)"
            if summary.far
            else ""
        )
        + (f"; errors: {errors}" if errors else "")
        + (f" -> {out}" if out is not None else ""),
        markup=False,
    )


@app.command("evaluate")
@handle_errors
def evaluate(
    table_path: Annotated[
        Path,
        typer.Argument(
            metavar="TABLE.csv",
            help="Your reference cells: a feature table (CSV or Parquet) with measured 'soh'.",
        ),
    ],
    model_path: ModelPath,
    per_cell: Annotated[
        bool,
        typer.Option(
            "--per-cell",
            help="Also score each run of consecutive rows of one cell_id (the pulse widths of "
            "one test; with a soc_pct column, of one soc_pct too) as one SoH, combined as "
            "'passport intake' measures a cell.",
        ),
    ] = False,
    json_out: Json = False,
) -> None:
    """Check a model on your own reference cells before the line relies on it.

    Estimates every row of TABLE and compares it with the measured 'soh' (a fraction), per
    design, in SoH points: MAE, P95 of the absolute error, bias (mean of estimate - measured)
    and the share of measured values within +/- 1.645 sigma ('cov90': about 0.9 when the
    model's sigma holds for your cells; the passport check relies on it). Beside them, what
    the model's training cross-validated ('CV'; '-' for a design without a model). Rows the
    model cannot estimate are counted by error code, rows without a usable 'soh' as no-soh or
    soh-out-of-range (a fraction is expected: 0.85, not 85). With --per-cell, each run of
    consecutive rows of one cell_id also counts as one estimate, combined as the intake combines
    a test's pulse widths, against the mean measured SoH of its rows. A table with soc_pct
    splits a cell's runs where soc_pct changes (each state of charge is a test of its own);
    without one, rows of different tests of a cell need another cell between them. A table
    sorted by width before state of charge has no two rows of a test in a row: it scores
    per row ('rows/run' 1.0). Cells the model was trained on score better
    than new cells will. Rows unlike the training cells (sigma over twice the widest the
    design's cross-validation gave) are counted per design with their MAE: many of them mean
    voltages noisier than the reference data's. Streams: any table size, bounded memory.
    """
    model = load_model(model_path)
    total = _count_lines(table_path)
    with progress_bar("evaluating", total) as advance:
        result = evaluate_csv(model, table_path, per_cell=per_cell, on_progress=advance)
    if json_out:
        emit_json({"model": str(model_path), **result.to_dict()})
    table = Table(title=f"{table_path}: {result.rows} rows", title_justify="left")
    table.add_column("design", no_wrap=True)
    for column in ("cells", "rows", "MAE", "P95", "bias", "cov90", "CV MAE", "CV cov90"):
        table.add_column(column, justify="right")
    for name, d in result.designs.items():
        cv = d.get("model_cv") or {}
        fig = ([f"{d[k]:.2f}" for k in ("mae", "p95", "bias")] + [f"{d['coverage_90']:.3f}"]
               if d["estimated"] else ["-"] * 4)  # fmt: skip
        own = [_figure(cv.get("mae"), ".2f"), _figure(cv.get("coverage_90"), ".3f")]
        table.add_row(name, str(d["cells"]), str(d["estimated"]), *fig, *own)
    err.print(table)
    for name, d in result.designs.items():
        if d["errors"]:
            why = ", ".join(f"{k} {v}" for k, v in d["errors"].items())
            err.print(f"{name}: not scored: {why}", markup=False)
        far = d.get("unlike_training") or {}
        if far.get("rows"):
            err.print(
                f"{name}: {far['rows']} rows ({100 * far['share']:.1f} %) unlike the training "
                f"cells, MAE {far['mae']:.2f} among them (noisy voltages, or cells the "
                "reference set lacks)",
                markup=False,
            )
    if not any(d["estimated"] for d in result.designs.values()):
        err.print("no row could be scored", markup=False)
        return
    _print_mean("mean over designs", result.mean)
    if result.mean_per_cell is not None:
        cells = Table(title="per cell: runs of consecutive rows of one test", title_justify="left")
        cells.add_column("design", no_wrap=True)
        for column in ("runs", "rows/run", "MAE", "P95", "bias", "cov90"):
            cells.add_column(column, justify="right")
        for name, d in result.designs.items():
            c = d["per_cell"]
            if c["estimated"]:
                cells.add_row(
                    name, str(c["estimated"]), f"{c['rows_per_cell']:.1f}",
                    *(f"{c[k]:.2f}" for k in ("mae", "p95", "bias")), f"{c['coverage_90']:.3f}",
                )  # fmt: skip
        err.print(cells)
        _print_mean("mean over designs, per cell", result.mean_per_cell)


@app.command("calibrate")
@handle_errors
def calibrate(
    table_path: Annotated[
        Path,
        typer.Argument(
            metavar="NEW.csv",
            help="Calibration cells of new designs: a feature table with measured 'soh'.",
        ),
    ],
    model_path: ModelPath,
    out: Annotated[Path, typer.Option("--out", "-o", help="Model file to write (JSON).")],
    replace: Annotated[
        bool,
        typer.Option(
            "--replace", help="Recalibrate designs the model already has from these cells alone."
        ),
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing --out.")] = False,
    json_out: Json = False,
) -> None:
    """Add new designs to a model from a few calibration cells each, without its training data.

    Each design in NEW is calibrated through the model's pooled prior (a linear model fitted
    across the designs the model was trained on): from 1 cell its coefficients lean on the
    prior; from 5 cells a kernel model is fitted too and whichever cross-validates better on
    these cells is kept. Calibrate with at least 3 cells (README: 'New designs'); expect a wide
    sigma until about 10. Pick cells across the SoH range the line will see: a design whose
    cells span less than 15 points of SoH gets a warning, since estimates of cells outside that
    band are extrapolations its sigma does not fully allow for; with 3-19 such cells it is held
    to the prior (no kernel model) and its sigma grows with a row's distance from them. The
    other designs are kept exactly as they are. Then check the result on cells you did not
    calibrate with: 'passport soh evaluate'.
    """
    if out.exists() and not force:
        raise InputError("already exists (use --force to overwrite)", source=str(out))
    model = load_model(model_path)
    with progress_steps("calibrating designs") as advance:
        updated = calibrate_csv(model, table_path, replace=replace, on_progress=advance)
    save_model(updated, out)
    added = sorted(d for d in updated.models if updated.models[d] is not model.models.get(d))
    summary = {d: info for d, info in model_summary(updated).items() if d in added}
    if json_out:
        emit_json({"model": str(out), "calibrated": summary})
    _print_designs(summary)
    err.print(
        f"wrote {out} ({_designs(len(updated.models))}, {len(added)} calibrated)", markup=False
    )


@app.command("show")
@handle_errors
def show(
    model_path: Annotated[
        Path, typer.Argument(metavar="MODEL", help="Model file from 'passport soh fit'.")
    ],
    json_out: Json = False,
) -> None:
    """What a model file covers, before a line relies on it.

    Per design: the cells and rows it was trained on and their SoH range, its cross-validated
    MAE and 90 % coverage (points), what input it accepts (rated capacity, pulse widths, the
    voltage window, the U columns it needs; other rows get out-of-range, missing-features or
    no-model), the widths with a model of their own, the row correlation that --per-cell and
    the intake use to combine a cell's rows, and how far sigma widens for a row unlike every
    training row ('wider': the factor at the most novel rows the cross-validation saw, as in
    'x1.36+', growing in proportion to novelty beyond them; '-' never; 'slopes' for a design
    calibrated from cells of one SoH band, whose sigma grows with a row's distance from them).
    Also the designs its pooled prior was fitted on ('passport soh calibrate' needs one).
    """
    model = load_model(model_path)
    summary = model_summary(model)
    prior = [] if model.prior is None else list(model.prior.designs)
    if json_out:
        emit_json({"model": str(model_path), "designs": summary, "prior_designs": prior})
    # no vertical rules, one space between columns: nine columns fit an 80-column terminal
    table = Table(
        title=f"{model_path}: {_designs(len(summary))}",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        collapse_padding=True,
        pad_edge=False,
    )
    table.add_column("design", no_wrap=True)
    for column in ("Ah", "widths ms", "volts", "needs", "cells", "CV MAE", "cov90", "wider"):
        table.add_column(column, justify="right", no_wrap=True)
    for name, m in model.models.items():
        lo_w, hi_w = m.width_range_ms
        widths = f"{lo_w:g}-{hi_w:g}" if lo_w != hi_w else f"{lo_w:g}"
        if m.by_width:
            widths += f" ({len(m.by_width)} own)"
        needs = f"U{m.u_columns[0] + 1}-U{m.u_columns[-1] + 1}" if m.u_columns else "-"
        wider = m.widest_novelty_factor()  # not the JSON's 3 decimals: rounded once
        widens = f"x{wider:.2f}+" if summary[name]["novelty_growth"] else "-"
        if summary[name]["slope_uncertainty"]:
            widens = "slopes"
        table.add_row(
            name, f"{m.rated_ah:g}", widths, f"{m.u_window[0]:.2f}-{m.u_window[1]:.2f}", needs,
            str(m.summary.n_cells), f"{100 * m.summary.cv_mae:.2f}",
            f"{m.summary.cv_coverage:.3f}", widens,
        )  # fmt: skip
    err.print(table)
    _print_warnings(summary)
    err.print(
        "pooled prior: " + (", ".join(prior) if prior else "none (a one-design model)"),
        markup=False,
    )


def _print_mean(label: str, m: dict[str, float]) -> None:
    err.print(
        f"{label}: MAE {m['mae']:.2f}, P95 {m['p95']:.2f} points, "
        f"90 % coverage {m['coverage_90']:.3f}",
        markup=False,
    )


def _figure(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _count_lines(path: Path) -> int:
    """Rows for the progress bar; only on a terminal, and cheap (a byte count of newlines)."""
    if not err.is_terminal:
        return 0
    if is_parquet(path):
        return parquet_rows(path) or 0
    try:
        size = os.path.getsize(path)
        if size > 2 * 1024**3:
            return 0
        with open(path, "rb") as fh:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b"")) - 1
    except OSError:
        return 0
