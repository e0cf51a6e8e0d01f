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
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from passport._fileio import read_bytes, write_atomic
from passport.errors import InputError
from passport.soh.check import Ageing, CheckResult, check_claims
from passport.soh.combine import combine, combine_runs
from passport.soh.evaluate import Evaluation, evaluate_csv
from passport.soh.features import U_COLUMNS, features, ohmic_resistance, physical_cell
from passport.soh.io import ERR_BAD_ROW, read_all, row_tests
from passport.soh.model import (
    ERR_MISSING,
    ERR_NO_MODEL,
    ERR_OUT_OF_RANGE,
    MODEL_FORMAT,
    MODEL_VERSION,
    DesignModel,
    FitSettings,
    SohModel,
)
from passport.soh.rows import Estimate, estimate, resistance_growth
from passport.soh.tables import (
    ERR_INCOMPLETE_TRACE,
    EstimateSummary,
    estimate_csv,
    estimate_traces,
    trace_chunk_to_rows,
)
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
    "Evaluation",
    "Extracted",
    "SohModel",
    "calibrate_csv",
    "check_claims",
    "combine",
    "combine_runs",
    "estimate",
    "estimate_csv",
    "estimate_traces",
    "evaluate_csv",
    "extract",
    "features",
    "fit_csv",
    "load_model",
    "model_summary",
    "ohmic_resistance",
    "physical_cell",
    "resistance_growth",
    "save_model",
    "trace_chunk_to_rows",
]

MODEL_FILE_LIMIT = 64 * 1024 * 1024

FloatArray = npt.NDArray[np.float64]
StrArray = npt.NDArray[np.object_]


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
    """Per design: what it was trained on, its cross-validated accuracy (points), what input
    it accepts (rating, pulse widths, voltage window, the U columns it needs) and how far its
    sigma widens for rows unlike the training rows (`novelty_widening_max`, the factor at the
    last novelty knot, past which it grows in proportion to novelty, even from a factor of 1;
    `novelty_growth`: whether it has knots at all; without them, never;
    `kernel`: the radial basis function of its kernel models, null for a linear model;
    `slope_uncertainty`: sigma carries the slopes' own uncertainty, growing with a row's
    distance from the calibration rows, without bound)."""
    out: dict[str, dict[str, object]] = {}
    for name, m in model.models.items():
        s = m.summary
        out[name] = {
            "kind": s.kind,
            "kernel": m.kernel if len(m.centres) else None,
            "cells": s.n_cells,
            "rows": s.n_rows,
            "cv_mae_points": round(100 * s.cv_mae, 3),
            "cv_p95_points": round(100 * s.cv_p95, 3),
            "cv_coverage_90": round(s.cv_coverage, 3),
            "soh_range": [s.soh_min, s.soh_max],
            "rated_ah": m.rated_ah,
            "width_range_ms": list(m.width_range_ms),
            "width_models_ms": [w.width_range_ms[0] for w in m.by_width],
            "u_window_v": list(m.u_window),
            "u_columns": [U_COLUMNS[i] for i in m.u_columns],
            "row_correlation": round(m.row_correlation, 3),
            "novelty_widening_max": round(m.widest_novelty_factor(), 3),
            "novelty_growth": any(len(k.novelty_knots) for k in (m, *m.by_width)),
            "slope_uncertainty": bool(len(m.slope_covariance)),
            "warnings": _warnings(m, model.settings),
        }
    return out


def _warnings(m: DesignModel, settings: FitSettings) -> list[str]:
    """What a user must know before trusting a design's estimates. Cells of one SoH band teach
    little about other cells, however many they are. From 3 to `compare_below` - 1 cells such
    a design is held to the pooled prior's slopes with their uncertainty in sigma
    (`_choose._choose_model`), yet some designs' band draws of 8-12 cells still covered only
    0.73-0.85 of their other cells; from `compare_below` cells on it keeps its kernel model,
    whose sigma covered 0.02-0.58 of them (20-40 cells of one end of a design's range;
    docs/soh-accuracy.md)."""
    s = m.summary
    if settings.narrow_band(s.soh_max - s.soh_min):
        return [
            f"its {s.n_cells} cells span SoH {s.soh_min:.2f}-{s.soh_max:.2f} only: estimates of "
            "cells outside that band are extrapolations its sigma does not fully allow for (add "
            "cells across the SoH range the line will see)"
        ]
    return []


@dataclass(frozen=True, slots=True)
class _Reference:
    """A reference table's rows with a measured SoH, as training takes them."""

    design: StrArray
    U: FloatArray
    rated_ah: FloatArray
    width_ms: FloatArray
    soh: FloatArray
    groups: StrArray  # design/physical cell
    tests: StrArray | None


def _reference(path: str | os.PathLike[str], what: str) -> _Reference:
    table = read_all(path)
    label = str(path)
    bad = table.error != ""
    if bad.any():
        first = int(table.line[np.flatnonzero(bad)[0]])
        raise InputError(f"{int(bad.sum())} rows do not parse (first: line {first})", source=label)
    if np.isnan(table.soh).all():
        raise InputError(f"no 'soh' values: {what} needs measured capacities", source=label)
    keep = ~np.isnan(table.soh)
    groups = np.array(
        [f"{d}/{physical_cell(d, c)}" for d, c in zip(table.design, table.cell_id, strict=True)],
        dtype=object,
    )
    tests = row_tests(table)
    return _Reference(
        table.design[keep], table.U[keep], table.rated_ah[keep], table.width_ms[keep],
        table.soh[keep], groups[keep], None if tests is None else tests[keep],
    )  # fmt: skip


def fit_csv(
    path: str | os.PathLike[str], *, on_progress: Callable[[int, int, str], None] | None = None
) -> SohModel:
    """Train one model covering every design in a reference table (needs the `soh` column).
    `on_progress(done, total, design)`: see `SohModel.fit`."""
    ref = _reference(path, "training")
    try:
        return SohModel.fit(
            ref.design, ref.U, ref.rated_ah, ref.width_ms, ref.soh, ref.groups, tests=ref.tests,
            on_progress=on_progress,
        )  # fmt: skip
    except InputError as exc:
        raise exc.at(str(path)) from None
    except ValueError as exc:
        raise InputError(str(exc), source=str(path)) from None


def calibrate_csv(
    model: SohModel,
    path: str | os.PathLike[str],
    *,
    replace: bool = False,
    on_progress: Callable[[int, int, str], None] | None = None,
) -> SohModel:
    """A copy of `model` with every design of a calibration table (measured `soh`, a few cells
    each) calibrated through the model's pooled prior (`SohModel.calibrate_new_design`); the
    other designs' models are kept as they are. A design the model already has is refused
    unless `replace`: refitting it from a few cells would throw away what it was trained on.
    `on_progress(done, total, design)` after each design."""
    label = str(path)
    if model.prior is None:
        raise InputError(
            "the model has no pooled prior (it was trained on one design): refit it with "
            "'passport soh fit' on a table holding the new design too",
            source=label,
        )
    ref = _reference(path, "calibration")
    names = sorted(set(ref.design.tolist()))
    known = [d for d in names if d in model.models]
    if known and not replace:
        raise InputError(
            f"the model already has {', '.join(known)} (use --replace to recalibrate it from "
            "these cells alone)",
            source=label,
        )
    for i, name in enumerate(names):
        rows = ref.design == name
        try:
            model = model.calibrate_new_design(
                name, ref.U[rows], ref.rated_ah[rows], ref.width_ms[rows], ref.soh[rows],
                ref.groups[rows], tests=None if ref.tests is None else ref.tests[rows],
            )  # fmt: skip
        except InputError as exc:
            raise exc.at(label) from None
        except ValueError as exc:
            raise InputError(f"{name}: {exc}", source=label) from None
        if on_progress is not None:
            on_progress(i + 1, len(names), name)
    return model
