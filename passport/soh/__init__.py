"""State of health from a seconds-long pulse test, with an honest uncertainty.

The intake line measures the turning-point voltages U1..U41 of a pulse protocol (or records the
raw trace, from which `extract` takes them). A per-design model (`SohModel`, trained on reference
cells with measured capacity, saved as versioned JSON) turns them into SoH = capacity / rated
capacity with a calibrated standard deviation; the ohmic resistance divided by the birth
record's initial resistance is the resistance growth; `check_claims` weighs what the passport
claims against the measurement.

Everything works on numpy arrays and in chunks: `estimate_csv` streams a table of any size with
bounded memory and writes one output row per input row, in input order. Values that cannot be
estimated get a per-row error code, never a number:

- ``bad-row``: a number in the row does not parse;
- ``no-model``: the model file has no model for the row's design;
- ``missing-features``: a voltage (or the rating or pulse width) the design's model needs is
  empty;
- ``out-of-range``: the voltages or pulse width lie outside what the model was trained on;
- ``time-goes-backwards``: (traces) a cell's samples are not in time order;
- ``incomplete-trace``: (traces) the trace does not reach the turning points the model needs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from passport._fileio import read_bytes, write_atomic
from passport.errors import InputError
from passport.soh.check import Ageing, CheckResult, check_claims
from passport.soh.combine import combine
from passport.soh.features import U_COLUMNS, features, ohmic_resistance, physical_cell
from passport.soh.io import (
    CLAIM_COLUMNS,
    ERR_BAD_ROW,
    EstimateWriter,
    PulseChunk,
    read_all,
    read_pulse_csv,
)
from passport.soh.model import (
    ERR_MISSING,
    ERR_NO_MODEL,
    ERR_OUT_OF_RANGE,
    MODEL_FORMAT,
    MODEL_VERSION,
    SohModel,
)
from passport.soh.trace_io import TraceChunk, is_trace_header, read_trace_csv, sniff_header
from passport.soh.traces import Extracted, extract

__all__ = [
    "ERR_BAD_ROW",
    "ERR_INCOMPLETE_TRACE",
    "ERR_MISSING",
    "ERR_NO_MODEL",
    "ERR_OUT_OF_RANGE",
    "MODEL_FORMAT",
    "MODEL_VERSION",
    "U_COLUMNS",
    "Ageing",
    "CheckResult",
    "Estimate",
    "EstimateSummary",
    "Extracted",
    "SohModel",
    "check_claims",
    "combine",
    "estimate",
    "estimate_csv",
    "estimate_traces",
    "extract",
    "features",
    "fit_csv",
    "load_model",
    "model_summary",
    "ohmic_resistance",
    "physical_cell",
    "resistance_growth",
    "save_model",
]

ERR_INCOMPLETE_TRACE = "incomplete-trace"
MODEL_FILE_LIMIT = 64 * 1024 * 1024

FloatArray = npt.NDArray[np.float64]
StrArray = npt.NDArray[np.object_]


@dataclass(frozen=True, slots=True)
class Estimate:
    """Per row: SoH (fraction) and its standard deviation, ohmic resistance (ohm), and the
    error code ("" when fine; then soh and soh_sigma are NaN)."""

    soh: FloatArray
    soh_sigma: FloatArray
    resistance_ohm: FloatArray
    error: StrArray


def estimate(
    model: SohModel,
    design: StrArray | list[str],
    U: FloatArray,
    rated_ah: FloatArray,
    width_ms: FloatArray,
) -> Estimate:
    """Estimate every row. No state of charge needed; rows of different designs may mix."""
    # a numpy array keeps its dtype (fixed-width strings are matched vectorised), a list
    # becomes an object array (converting it to fixed-width strings would cost more)
    names = design if isinstance(design, np.ndarray) else np.asarray(design, dtype=object)
    soh, sigma, error = model.predict(
        names, np.asarray(U), np.asarray(rated_ah), np.asarray(width_ms)
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        resistance = ohmic_resistance(U, rated_ah)
    return Estimate(soh, sigma, resistance, error)


def resistance_growth(resistance_ohm: FloatArray, initial_uohm: FloatArray) -> FloatArray:
    """Measured ohmic resistance / the birth record's initial resistance (micro-ohm); NaN where
    the initial value is unknown or not positive. The birth record states how it was measured:
    compare like with like (a DC pulse step is not a 1 kHz AC value)."""
    initial = np.asarray(initial_uohm, dtype=np.float64) * 1e-6
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(initial > 0, np.asarray(resistance_ohm) / initial, np.nan)


# --------------------------------------------------------------------------------------------
# Model files


def save_model(model: SohModel, path: str | os.PathLike[str]) -> None:
    """JSON (never pickle), written atomically."""
    write_atomic(path, model.to_json().encode("utf-8"))


def load_model(path: str | os.PathLike[str]) -> SohModel:
    """Raises `InputError` naming the file for anything that is not a model we can use."""
    label = str(path)
    data = read_bytes(path, limit=MODEL_FILE_LIMIT)
    try:
        return SohModel.from_dict(
            json.loads(data.decode("utf-8"), parse_constant=_no_constant, parse_float=_finite)
        )
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"not a model file (not JSON: {exc})", source=label) from None
    except InputError as exc:
        raise exc.at(label) from None
    except (ValueError, TypeError, KeyError, AttributeError, IndexError, RecursionError) as exc:
        raise InputError(f"not a usable model file: {exc}", source=label) from None


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number a model may hold")


def _finite(text: str) -> float:
    value = float(text)
    if not np.isfinite(value):
        raise ValueError(f"{text} overflows")
    return value


def model_summary(model: SohModel) -> dict[str, dict[str, object]]:
    """Per design: what it was trained on and its cross-validated accuracy (points)."""
    out: dict[str, dict[str, object]] = {}
    for name, m in model.models.items():
        s = m.summary
        out[name] = {
            "kind": s.kind,
            "cells": s.n_cells,
            "rows": s.n_rows,
            "cv_mae_points": round(100 * s.cv_mae, 3),
            "cv_p95_points": round(100 * s.cv_p95, 3),
            "cv_coverage_90": round(s.cv_coverage, 3),
            "soh_range": [s.soh_min, s.soh_max],
        }
    return out


def fit_csv(path: str | os.PathLike[str]) -> SohModel:
    """Train one model covering every design in a reference table (needs the `soh` column)."""
    table = read_all(path)
    label = str(path)
    bad = table.error != ""
    if bad.any():
        first = int(table.line[np.flatnonzero(bad)[0]])
        raise InputError(f"{int(bad.sum())} rows do not parse (first: line {first})", source=label)
    if np.isnan(table.soh).all():
        raise InputError("no 'soh' values: training needs measured capacities", source=label)
    keep = ~np.isnan(table.soh)
    groups = np.array(
        [f"{d}/{physical_cell(d, c)}" for d, c in zip(table.design, table.cell_id, strict=True)],
        dtype=object,
    )
    try:
        return SohModel.fit(
            table.design[keep], table.U[keep], table.rated_ah[keep], table.width_ms[keep],
            table.soh[keep], groups[keep],
        )  # fmt: skip
    except InputError as exc:
        raise exc.at(label) from None
    except ValueError as exc:
        raise InputError(str(exc), source=label) from None


# --------------------------------------------------------------------------------------------
# Streaming tables


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

    def add(self, error: StrArray, flagged: int = 0) -> None:
        self.rows += len(error)
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
) -> EstimateSummary:
    """Stream a pulse-feature table (or a long-format trace file, told apart by its header) to
    an output CSV, one row per input row (per cell for traces), in input order. `out=None`
    writes to stdout. Optional claim columns (`claimed_soh`, ...) add the passport check.
    `design` fills an empty or absent design column of a trace file."""
    header = {h.strip() for h in sniff_header(source)}
    claims = [c for c in CLAIM_COLUMNS if c in header]
    traces = is_trace_header(list(header))
    extra = (("width_ms", "rated_ah") if traces else ()) + (CHECK_OUTPUT if claims else ())
    writer = EstimateWriter(out, extra=extra)
    summary = EstimateSummary(kind="traces" if traces else "features")
    try:
        chunks: Iterator[PulseChunk] = (
            _trace_rows(source, design) if traces else read_pulse_csv(source)
        )
        for chunk in chunks:
            columns = _estimate_chunk(
                model, chunk, ageing, threshold, bool(claims), summary, traces=traces
            )
            if traces:
                columns["width_ms"] = chunk.width_ms
                columns["rated_ah"] = chunk.rated_ah
            writer.write(columns)
            if on_progress is not None:
                on_progress(len(chunk))
    except BaseException:
        writer.abort()
        raise
    writer.close()
    return summary


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
    columns: dict[str, npt.NDArray[np.generic]] = {
        "line": chunk.line,
        "cell_id": chunk.cell_id,
        "design": chunk.design,
        "soh": soh,
        "soh_sigma": sigma,
        "resistance_mohm": np.where(ok, est.resistance_ohm * 1e3, np.nan),
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
    summary.add(error, flagged)
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
