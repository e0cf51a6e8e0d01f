"""Streaming tables: a pulse-feature table or a long-format trace file of any size -> an
estimates CSV, chunk by chunk with bounded memory; the passport check and per-cell figures
on the way."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from passport.soh.check import Ageing, check_claims
from passport.soh.combine import combine_runs, run_keys, trailing_run_start
from passport.soh.features import U_COLUMNS
from passport.soh.io import CLAIM_COLUMNS, EstimateWriter, PulseChunk, read_pulse_csv
from passport.soh.model import ERR_MISSING, SohModel
from passport.soh.rows import Estimate, FloatArray, StrArray, estimate, resistance_growth
from passport.soh.trace_io import TraceChunk, is_trace_header, read_trace_csv, sniff_header
from passport.soh.traces import Extracted, extract

ERR_INCOMPLETE_TRACE = "incomplete-trace"


CHECK_OUTPUT = (
    "resistance_growth", "claim_z", "claim_flagged", "posterior_soh", "posterior_sigma",
)  # fmt: skip


@dataclass
class EstimateSummary:
    rows: int = 0
    estimated: int = 0
    flagged: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    kind: str = "features"
    far: int = 0  # estimated rows unlike the training cells (`model.FAR_SIGMA`)

    def add(self, error: StrArray, flagged: int = 0, far: int = 0) -> None:
        self.rows += len(error)
        self.far += far
        codes, counts = np.unique(error.astype(str), return_counts=True)
        for code, count in zip(codes.tolist(), counts.tolist(), strict=True):
            if code:
                self.errors[code] = self.errors.get(code, 0) + count
            else:
                self.estimated += count
        self.flagged += flagged

    def to_dict(self) -> dict[str, object]:
        return {
            "input": self.kind,
            "rows": self.rows,
            "estimated": self.estimated,
            "flagged": self.flagged,
            "far_from_training": self.far,
            "errors": dict(sorted(self.errors.items())),
        }


def estimate_csv(
    model: SohModel,
    source: str | os.PathLike[str],
    out: str | os.PathLike[str] | None,
    *,
    design: str | None = None,
    ageing: Ageing = Ageing(),
    threshold: float = 3.0,
    on_progress: Callable[[int], None] | None = None,
    per_cell: bool = False,
) -> EstimateSummary:
    """Stream a pulse-feature table (or a long-format trace file, told apart by its header) to
    an output CSV, one row per input row (per cell for traces), in input order. `out=None`
    writes to stdout. Optional claim columns (`claimed_soh`, ...) add the passport check.
    `design` fills an empty or absent design column of a trace file. `per_cell` adds the SoH
    of each run of consecutive rows with the same cell id (the widths of one test; in a table
    with soc_pct, the same soc_pct too: `run_keys`) from its rows that gave an estimate
    (`combine_runs`): cell_soh, cell_soh_sigma, cell_rows; a run
    is held back until the next chunk shows where it ends (at most PER_CELL_MAX_ROWS rows).
    `on_progress(n)` after each chunk: n more input lines read (the unit of a line count of the
    file, for traces too; a trace chunk's last block is counted with the next chunk)."""
    header = {h.strip() for h in sniff_header(source)}
    claims = [c for c in CLAIM_COLUMNS if c in header]
    traces = is_trace_header(list(header))
    runs = traces and "run" in header
    extra = (("run",) if runs else ()) + (("width_ms", "rated_ah") if traces else ())
    extra += CHECK_OUTPUT if claims else ()
    extra += PER_CELL_OUTPUT if per_cell else ()
    chunks: Iterator[PulseChunk] = _trace_rows(source, design) if traces else read_pulse_csv(source)
    # the first chunk is read before any output: a file refused at its header or first rows
    # leaves nothing behind, on stdout either
    first = next(chunks, None)
    writer = EstimateWriter(out, extra=extra)
    held: dict[str, npt.NDArray[np.generic]] | None = None
    summary = EstimateSummary(kind="traces" if traces else "features")
    read_to = 1  # the header
    try:
        for chunk in itertools.chain(() if first is None else (first,), chunks):
            columns = _estimate_chunk(
                model, chunk, ageing, threshold, bool(claims), summary, traces=traces
            )
            if traces:
                columns["width_ms"] = chunk.width_ms
                if chunk.run is not None:
                    columns["run"] = chunk.run
                columns["rated_ah"] = chunk.rated_ah
            if per_cell:
                # a trace cell's runs are the widths of one test; a table's tests are told
                # apart by soc_pct when it has one
                columns["_run"] = run_keys(chunk.cell_id, None if traces else chunk.soc_pct)
                if held is not None:
                    columns = {k: np.concatenate([held[k], v]) for k, v in columns.items()}
                last = trailing_run_start(columns["_run"], PER_CELL_MAX_ROWS)
                held = {k: v[last:] for k, v in columns.items()}
                columns = _with_cell_columns({k: v[:last] for k, v in columns.items()}, model)
            writer.write(columns)
            if on_progress is not None and len(chunk):
                last_line = int(chunk.line[-1])
                on_progress(last_line - read_to)
                read_to = last_line
        if held is not None and len(held["cell_id"]):
            writer.write(_with_cell_columns(held, model))
    except BaseException:
        writer.abort()
        raise
    writer.close()
    return summary


PER_CELL_OUTPUT = ("cell_soh", "cell_soh_sigma", "cell_rows")
PER_CELL_MAX_ROWS = 10_000


def _with_cell_columns(
    columns: dict[str, npt.NDArray[np.generic]], model: SohModel
) -> dict[str, npt.NDArray[np.generic]]:
    row_rho = np.array([model.row_correlation(d) for d in columns["design"].tolist()])
    soh, sigma, rows = combine_runs(columns["_run"], columns["soh"], columns["soh_sigma"], row_rho)
    return {**columns, "cell_soh": soh, "cell_soh_sigma": sigma, "cell_rows": rows}


def _estimate_chunk(
    model: SohModel,
    chunk: PulseChunk,
    ageing: Ageing,
    threshold: float,
    claims: bool,
    summary: EstimateSummary,
    *,
    traces: bool = False,
) -> dict[str, npt.NDArray[np.generic]]:
    est = estimate(model, chunk.design, chunk.U, chunk.rated_ah, chunk.width_ms)
    model_error = est.error
    if traces:  # a trace that stops early lacks turning points: say so in trace terms
        model_error = np.where(model_error == ERR_MISSING, ERR_INCOMPLETE_TRACE, model_error)
    error = np.where(chunk.error != "", chunk.error, model_error)
    ok = error == ""
    soh = np.where(ok, est.soh, np.nan)
    sigma = np.where(ok, est.soh_sigma, np.nan)
    with np.errstate(over="ignore"):  # a hostile row's huge resistance: inf, and not kept
        mohm = est.resistance_ohm * 1e3
    columns: dict[str, npt.NDArray[np.generic]] = {
        "line": chunk.line,
        "cell_id": chunk.cell_id,
        "design": chunk.design,
        "soh": soh,
        "soh_sigma": sigma,
        "resistance_mohm": np.where(ok, mohm, np.nan),
        "error": error,
    }
    flagged = 0
    c = chunk.claims
    if claims and "claimed_soh" in c:
        result = check_claims(
            soh, sigma, c["claimed_soh"], c.get("claimed_soh_sigma"), c.get("fec_since"),
            c.get("days_since"), ageing=ageing, threshold=threshold,
        )  # fmt: skip
        columns["claim_z"] = np.where(ok, result.z, np.nan)
        flag = ok & result.flagged
        columns["claim_flagged"] = np.where(
            ok & ~np.isnan(c["claimed_soh"]), flag.astype(np.int64).astype(str), ""
        )
        columns["posterior_soh"] = np.where(ok, result.posterior, np.nan)
        columns["posterior_sigma"] = np.where(ok, result.posterior_sigma, np.nan)
        flagged = int(flag.sum())
    initial = c.get("initial_resistance_uohm")
    if initial is not None:
        columns["resistance_growth"] = np.where(
            ok, resistance_growth(est.resistance_ohm, initial), np.nan
        )
    far = ok & model.far_from_training(chunk.design, sigma)
    columns["unlike_training"] = np.where(ok, far.astype(np.int64).astype(str), "")
    summary.add(error, flagged, int(far.sum()))
    return columns


def _trace_rows(source: str | os.PathLike[str], design: str | None) -> Iterator[PulseChunk]:
    """Trace chunks -> feature rows, one per cell."""
    for chunk in read_trace_csv(source):
        yield trace_chunk_to_rows(chunk, design)


def trace_chunk_to_rows(chunk: TraceChunk, design: str | None = None) -> PulseChunk:
    got = extract(chunk.code, chunk.t, chunk.current, chunk.voltage)
    m = len(chunk.cell_id)
    U = np.full((m, len(U_COLUMNS)), np.nan)
    width = np.full(m, np.nan)
    rated = np.full(m, np.nan)
    U[got.cell] = got.U
    width[got.cell] = got.width_ms
    rated[got.cell] = got.rated_ah
    error = np.array(chunk.error, dtype=object)
    incomplete = (error == "") & np.isnan(U[:, 0])
    error[incomplete] = ERR_INCOMPLETE_TRACE
    designs = np.array([d or (design or "") for d in chunk.design], dtype=object)
    return PulseChunk(
        np.asarray(chunk.line, dtype=np.int64), np.array(chunk.cell_id, dtype=object), designs,
        rated, width, U, np.full(m, np.nan), error,
        run=None if chunk.run is None else np.array(chunk.run, dtype=object),
    )  # fmt: skip


def estimate_traces(
    model: SohModel,
    design: StrArray | list[str],
    cell: npt.NDArray[np.generic],
    t: FloatArray,
    current: FloatArray,
    voltage: FloatArray,
) -> tuple[Extracted, Estimate]:
    """Raw traces (long format as arrays, cells grouped) -> turning points -> estimates.
    `design` has one entry per cell, in order of appearance."""
    got = extract(cell, t, current, voltage)
    return got, estimate(model, design, got.U, got.rated_ah, got.width_ms)
