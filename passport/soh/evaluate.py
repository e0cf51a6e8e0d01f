"""How a model does on a recycler's own reference cells: stream a feature table with measured
`soh`, estimate every row and score it per design (MAE, P95, bias, 90 % coverage), beside what
the model's training claimed (its cross-validated figures), and the rows unlike its training
cells (`SohModel.far_from_training`) with their own MAE. Before a line trusts a model (and the
passport check built on its sigma), its owner can see whether their cells behave like the cells
it was trained on, and whether the line's voltages are as clean as the reference data's.

Memory is bounded on any table size: absolute errors go into a histogram of 0.01-point bins,
so P95 is within 0.005 points of the exact figure."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from passport.errors import InputError
from passport.soh._base import Z90, FloatArray
from passport.soh.combine import combine_runs, run_keys, run_starts, trailing_run_start
from passport.soh.features import physical_cell
from passport.soh.io import read_pulse_csv
from passport.soh.model import SohModel
from passport.soh.rows import estimate
from passport.soh.tables import PER_CELL_MAX_ROWS
from passport.soh.trace_io import is_trace_header, sniff_header

ERR_NO_TRUTH = "no-soh"  # the row has no measured SoH to compare with
ERR_BAD_TRUTH = "soh-out-of-range"  # measured SoH not in (0, 2]: a percentage, or a typo

_BIN = 1e-4  # histogram bin of |error|, fraction (0.01 SoH points)
_BINS = 20_000  # up to 2.0 (200 points); anything larger lands in the last bin


@dataclass
class _Design:
    rows: int = 0
    estimated: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    cells: set[str] = field(default_factory=set)
    sum_abs: float = 0.0
    sum_err: float = 0.0
    sum_sigma: float = 0.0
    within: int = 0
    far: int = 0  # scored rows unlike the training cells (`SohModel.far_from_training`)
    sum_abs_far: float = 0.0
    hist: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(_BINS, np.int64))

    def count(self, codes: npt.NDArray[np.object_]) -> None:
        values, counts = np.unique(codes.astype(str), return_counts=True)
        for code, n in zip(values.tolist(), counts.tolist(), strict=True):
            self.errors[code] = self.errors.get(code, 0) + n

    def add(
        self,
        truth: FloatArray,
        soh: FloatArray,
        sigma: FloatArray,
        far: npt.NDArray[np.bool_] | None = None,
    ) -> None:
        err = soh - truth
        absolute = np.abs(err)
        if far is not None:
            self.far += int(far.sum())
            self.sum_abs_far += float(absolute[far].sum())
        self.estimated += len(err)
        self.sum_abs += float(absolute.sum())
        self.sum_err += float(err.sum())
        self.sum_sigma += float(sigma.sum())
        self.within += int((absolute <= Z90 * sigma).sum())
        bins = np.minimum((absolute / _BIN).astype(np.int64), _BINS - 1)
        self.hist += np.bincount(bins, minlength=_BINS)

    def p95(self) -> float:
        """np.quantile's default (linear between the two order statistics around 0.95 (n-1)),
        each order statistic taken at its bin's middle."""
        h = 0.95 * (self.estimated - 1)
        lo = math.floor(h)
        cum = np.cumsum(self.hist)
        a, b = (
            int(np.searchsorted(cum, k, side="right"))
            for k in (lo, min(lo + 1, self.estimated - 1))
        )
        mid_a, mid_b = (a + 0.5) * _BIN, (b + 0.5) * _BIN
        return mid_a + (h - lo) * (mid_b - mid_a)


@dataclass(frozen=True, slots=True)
class Evaluation:
    """Per design (SoH points, x100 of the fractions): measured figures and the model's own."""

    source: str
    rows: int
    designs: dict[str, dict[str, Any]]
    mean: dict[str, float]  # over the designs that got estimates, as bench/soh_accuracy.py
    mean_per_cell: dict[str, float] | None = None  # the same for the per-cell figures

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "input": self.source,
            "rows": self.rows,
            "designs": self.designs,
            "mean_over_designs": self.mean,
        }
        if self.mean_per_cell is not None:
            out["mean_per_cell"] = self.mean_per_cell
        return out


def evaluate_csv(
    model: SohModel,
    source: str | os.PathLike[str],
    *,
    per_cell: bool = False,
    on_progress: Callable[[int], None] | None = None,
) -> Evaluation:
    """Score `model` on a feature table (CSV or Parquet) with a measured `soh` column (fraction).
    Rows that cannot be estimated are counted by error code, as are rows without a usable
    measured SoH (`no-soh`, `soh-out-of-range`); only the others are scored. `per_cell` also
    scores each run of consecutive rows of one cell id (the pulse widths of one test; with a
    soc_pct column, of one soc_pct too: `run_keys`) as one estimate, combined from its scored
    rows as `passport intake` measures a cell (`combine_runs`), against the mean measured SoH
    of those rows: `per_cell` per design.
    `on_progress(n)`: n more input lines read."""
    label = str(source)
    header = {h.strip() for h in sniff_header(source)}
    if is_trace_header(list(header)):
        raise InputError(
            "a trace file has no measured SoH: evaluation needs a feature table with 'soh'",
            source=label,
        )
    chunks = read_pulse_csv(source)
    if "soh" not in header:
        next(chunks, None)  # the reader names a worse fault first: an empty file, no columns
        raise InputError(
            "no 'soh' column: evaluation needs each row's measured SoH (a fraction)",
            source=label,
        )
    by_design: dict[str, _Design] = {}
    by_cell: dict[str, _Design] = {}
    held: dict[str, npt.NDArray[Any]] | None = None
    rows = 0
    read_to = 1
    for chunk in chunks:
        rows += len(chunk)
        est = estimate(model, chunk.design, chunk.U, chunk.rated_ah, chunk.width_ms)
        far = model.far_from_training(chunk.design, est.soh_sigma)
        error = np.where(chunk.error != "", chunk.error, est.error).astype(object)
        truth = chunk.soh
        usable = error == ""
        error[usable & np.isnan(truth)] = ERR_NO_TRUTH
        error[usable & ~np.isnan(truth) & ~((truth > 0) & (truth <= 2))] = ERR_BAD_TRUTH
        ok = error == ""
        for name in np.unique(chunk.design.astype(str)).tolist():
            mine = chunk.design == name
            acc = by_design.setdefault(name, _Design())
            acc.rows += int(mine.sum())
            acc.count(error[mine & ~ok])
            scored = mine & ok
            acc.add(truth[scored], est.soh[scored], est.soh_sigma[scored], far[scored])
            acc.cells.update(physical_cell(name, c) for c in chunk.cell_id[scored].tolist())
        if per_cell:
            columns = {
                "_run": run_keys(chunk.cell_id, chunk.soc_pct),
                "design": chunk.design.astype(object),
                "soh": np.where(ok, est.soh, np.nan),
                "sigma": np.where(ok, est.soh_sigma, np.nan),
                "truth": np.where(ok, truth, np.nan),
            }
            if held is not None:
                columns = {k: np.concatenate([held[k], v]) for k, v in columns.items()}
            last = trailing_run_start(columns["_run"], PER_CELL_MAX_ROWS)
            held = {k: v[last:] for k, v in columns.items()}
            _score_runs({k: v[:last] for k, v in columns.items()}, model, by_cell)
        if on_progress is not None and len(chunk):
            on_progress(int(chunk.line[-1]) - read_to)
            read_to = int(chunk.line[-1])
    if held is not None:
        _score_runs(held, model, by_cell)
    designs = {name: _report(name, acc, model) for name, acc in sorted(by_design.items())}
    if per_cell:
        for name, d in designs.items():
            acc = by_cell.get(name, _Design())
            d["per_cell"] = _figures(acc)
            if acc.estimated:
                d["per_cell"]["rows_per_cell"] = round(acc.rows / acc.estimated, 2)
    scored = [d for d in designs.values() if d["estimated"]]
    keys = ("mae", "p95", "coverage_90", "mean_sigma")
    mean = {
        k: round(float(np.mean([d[k] for d in scored])), 3) if scored else math.nan for k in keys
    }
    mean_cells = None
    if per_cell:
        cells = [d["per_cell"] for d in scored]
        mean_cells = {
            k: round(float(np.mean([c[k] for c in cells])), 3) if cells else math.nan for k in keys
        }
    return Evaluation(label, rows, designs, mean, mean_cells)


def _points(x: float) -> float:
    return round(100.0 * x, 3)


def _score_runs(
    columns: dict[str, npt.NDArray[Any]], model: SohModel, by_cell: dict[str, _Design]
) -> None:
    """Each complete run of consecutive rows of one test (`run_keys`), combined, as one scored
    estimate."""
    ids = columns["_run"]
    if not len(ids):
        return
    rho = np.array([model.row_correlation(d) for d in columns["design"].tolist()])
    soh, sigma, count = combine_runs(ids, columns["soh"], columns["sigma"], rho)
    start = run_starts(ids)
    run = np.cumsum(start) - 1
    truth = columns["truth"]
    known = np.isfinite(truth)
    run_truth = np.bincount(run, np.where(known, truth, 0.0)) / np.maximum(
        np.bincount(run, known), 1
    )
    first = np.flatnonzero(start)
    scored = count[first] > 0  # runs with at least one scored row (estimate and measured SoH)
    designs = columns["design"][first]
    for name in np.unique(designs[scored].astype(str)).tolist():
        mine = scored & (designs == name)
        acc = by_cell.setdefault(name, _Design())
        acc.rows += int(count[first][mine].sum())
        acc.add(run_truth[mine], soh[first][mine], sigma[first][mine])
        acc.cells.update(physical_cell(name, c) for c in ids[first][mine].tolist())


def _figures(acc: _Design) -> dict[str, Any]:
    n = acc.estimated
    if not n:
        return {"estimated": 0}
    return {
        "estimated": n,
        "mae": _points(acc.sum_abs / n),
        "p95": _points(acc.p95()),
        "bias": _points(acc.sum_err / n),
        "coverage_90": round(acc.within / n, 3),
        "mean_sigma": _points(acc.sum_sigma / n),
    }


def _report(name: str, acc: _Design, model: SohModel) -> dict[str, Any]:
    out: dict[str, Any] = {
        "rows": acc.rows,
        "estimated": acc.estimated,
        "cells": len(acc.cells),
        "errors": dict(sorted(acc.errors.items())),
    }
    if acc.estimated:
        out.update({k: v for k, v in _figures(acc).items() if k != "estimated"})
        # rows unlike the training cells: many of them, and a high MAE among them, mean a line
        # with noisier voltages than the reference data (or cells the reference set lacks)
        out["unlike_training"] = {
            "rows": acc.far,
            "share": round(acc.far / acc.estimated, 4),
            "mae": _points(acc.sum_abs_far / acc.far) if acc.far else None,
        }
    own = model.models.get(name)
    if own is not None:
        s = own.summary
        out["model_cv"] = {
            "cells": s.n_cells,
            "mae": _points(s.cv_mae) if math.isfinite(s.cv_mae) else None,
            "p95": _points(s.cv_p95) if math.isfinite(s.cv_p95) else None,
            "coverage_90": round(s.cv_coverage, 3) if math.isfinite(s.cv_coverage) else None,
        }
    return out
