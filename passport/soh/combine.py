"""Several estimates of one cell from one visit (the pulse widths of one test) -> one estimate.

Most of a row's error is a bias of the cell that every row of it repeats, so averaging the rows
removes only part of it. How much is the model's `row_correlation` (rho: the correlation of two
rows' standardised errors within a cell, measured out of fold on the training cells): the
combined sigma is that of a weighted mean of errors correlated by rho; with rho = 1 (a model
file from before rho) it is the weighted mean of the rows' sigmas.
`python bench/soh_accuracy.py` reports the per-test figures.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def _check_rho(rho: npt.ArrayLike) -> FloatArray:
    r = np.asarray(rho, dtype=np.float64)
    if not (np.isfinite(r).all() and (r >= 0).all() and (r <= 1).all()):
        raise ValueError("combine needs a row correlation in [0, 1]")
    return r


def combine(soh: npt.ArrayLike, sigma: npt.ArrayLike, rho: float = 1.0) -> tuple[float, float]:
    """(soh, sigma) of rows of one cell: the inverse-variance weighted mean of the estimates;
    sigma^2 = rho (sum w sigma)^2 + (1 - rho) sum w^2 sigma^2 with normalised weights w, the
    variance of that mean when every two rows' errors correlate by rho (rho = 1: the weighted
    mean of the sigmas). One row is returned unchanged. Every input must be a finite estimate
    with a positive sigma (rows with an error are left out by the caller)."""
    s = np.asarray(soh, dtype=np.float64).ravel()
    sd = np.asarray(sigma, dtype=np.float64).ravel()
    if s.shape != sd.shape or len(s) == 0:
        raise ValueError("combine needs as many sigmas as estimates, at least one")
    if not (np.isfinite(s).all() and np.isfinite(sd).all() and (sd > 0).all()):
        raise ValueError("combine needs finite estimates and positive finite sigmas")
    mean, spread, _ = combine_runs(np.full(len(s), "cell", dtype=object), s, sd, rho)
    return float(mean[0]), float(spread[0])


def combine_runs(
    cell_id: npt.ArrayLike,
    soh: npt.ArrayLike,
    sigma: npt.ArrayLike,
    rho: npt.ArrayLike = 1.0,
) -> tuple[FloatArray, FloatArray, npt.NDArray[np.int64]]:
    """`combine` over every run of consecutive rows with the same (non-empty) cell id, given to
    each row of the run: (soh, sigma, rows combined). `rho` is one value or one per row (its
    design's); a run takes the largest of its usable rows' (the cautious one). Rows without an
    estimate (NaN) are left out of their run's figure; a run with none gets NaN and 0. A run
    of one usable row gets that row's values exactly."""
    ids = np.asarray(cell_id, dtype=object)
    s = np.asarray(soh, dtype=np.float64)
    sd = np.asarray(sigma, dtype=np.float64)
    n = len(ids)
    r = np.broadcast_to(_check_rho(rho), (n,)) if n else np.empty(0)
    if not (s.shape == sd.shape == (n,)):
        raise ValueError("cell_id, soh and sigma must be 1-D of the same length")
    if n == 0:
        return np.empty(0), np.empty(0), np.empty(0, dtype=np.int64)
    run = np.cumsum(run_starts(ids)) - 1
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        ok = np.isfinite(s) & np.isfinite(sd) & (sd > 0)
        w = np.where(ok, 1.0 / (sd * sd), 0.0)
        s0 = np.where(ok, s, 0.0)
        d0 = np.where(ok, sd, 0.0)
        count = np.bincount(run, ok.astype(np.int64)).astype(np.int64)
        total = np.bincount(run, w)
        mean = np.bincount(run, w * s0) / total
        spread = np.bincount(run, w * d0) / total
        run_rho = np.zeros(len(count))
        np.maximum.at(run_rho, run[ok], r[ok])
        # sum (w_i / W)^2 sigma_i^2 = sum w_i / W^2 = 1 / W, as w_i = 1 / sigma_i^2
        var = run_rho * spread * spread + (1.0 - run_rho) / total
        spread = np.where(run_rho == 1.0, spread, np.sqrt(var))
        one = count == 1  # the sum of one value and zeros is that value
        mean = np.where(one, np.bincount(run, s0), mean)
        spread = np.where(one, np.bincount(run, d0), spread)
        none = count == 0
        mean[none] = np.nan
        spread[none] = np.nan
    return mean[run], spread[run], count[run]


def run_keys(cell_id: npt.ArrayLike, soc_pct: npt.ArrayLike | None = None) -> npt.NDArray[Any]:
    """What consecutive rows must share to be one test: the cell id, and where the table
    records the state of charge, the same `soc_pct` text too (a lab table lists a cell's tests
    at several states of charge one after another, and each is a test of its own; rows
    without one are joined by cell id alone). Never an input to the estimate. An empty cell
    id stays empty (a run of its own)."""
    ids = np.asarray(cell_id, dtype=object)
    if soc_pct is None:
        return ids
    socs = np.asarray(soc_pct, dtype=object).tolist()
    return np.array(
        [c if c == "" else f"{c}\x1f{s}" for c, s in zip(ids.tolist(), socs, strict=True)],
        dtype=object,
    )


def run_starts(cell_id: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    """True where a run of consecutive rows of one cell id starts (an empty id is a run of its
    own)."""
    ids = np.asarray(cell_id, dtype=object)
    start = np.ones(len(ids), dtype=bool)
    start[1:] = (ids[1:] != ids[:-1]) | (ids[1:] == "")
    return start


def trailing_run_start(cell_id: npt.ArrayLike, max_rows: int) -> int:
    """Where the last run of consecutive rows of one (non-empty) cell id starts: a stream holds
    those rows back until the next chunk shows whether the run goes on. A run of `max_rows` or
    more is not held (the length of what is held stays bounded): len(cell_id) is returned."""
    ids = np.asarray(cell_id, dtype=object)
    last = max(0, len(ids) - 1)
    while last > 0 and ids[last - 1] == ids[-1] != "":
        last -= 1
    return len(ids) if len(ids) - last >= max_rows else last
