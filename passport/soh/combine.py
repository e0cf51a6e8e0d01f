"""Several estimates of one cell from one visit (the pulse widths of one test) -> one estimate.

Most of a row's error is a bias of the cell that every row of it repeats, so averaging the rows
removes the scatter between them (a third of the error on the prismatic LFP designs of the dev
data, whose tests run four widths) but not that bias. The combined sigma therefore assumes the
rows' errors fully correlated: the weighted mean of their sigmas, never below the smallest of
them. `python bench/soh_accuracy.py` reports the per-test figures.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def combine(soh: npt.ArrayLike, sigma: npt.ArrayLike) -> tuple[float, float]:
    """(soh, sigma) of rows of one cell: inverse-variance weighted mean of the estimates, and the
    same weights' mean of the sigmas (the standard deviation of the weighted mean when the rows'
    errors are perfectly correlated). One row is returned unchanged. Every input must be a
    finite estimate with a positive sigma (rows with an error are left out by the caller)."""
    s = np.asarray(soh, dtype=np.float64).ravel()
    sd = np.asarray(sigma, dtype=np.float64).ravel()
    if s.shape != sd.shape or len(s) == 0:
        raise ValueError("combine needs as many sigmas as estimates, at least one")
    if not (np.isfinite(s).all() and np.isfinite(sd).all() and (sd > 0).all()):
        raise ValueError("combine needs finite estimates and positive finite sigmas")
    if len(s) == 1:
        return float(s[0]), float(sd[0])
    w = 1.0 / (sd * sd)
    w /= w.sum()
    return float(w @ s), float(w @ sd)


def combine_runs(
    cell_id: npt.ArrayLike, soh: npt.ArrayLike, sigma: npt.ArrayLike
) -> tuple[FloatArray, FloatArray, npt.NDArray[np.int64]]:
    """`combine` over every run of consecutive rows with the same (non-empty) cell id, given to
    each row of the run: (soh, sigma, rows combined). Rows without an estimate (NaN) are left
    out of their run's figure; a run with none gets NaN and 0. A run of one usable row gets
    that row's values exactly."""
    ids = np.asarray(cell_id, dtype=object)
    s = np.asarray(soh, dtype=np.float64)
    sd = np.asarray(sigma, dtype=np.float64)
    n = len(ids)
    if not (s.shape == sd.shape == (n,)):
        raise ValueError("cell_id, soh and sigma must be 1-D of the same length")
    if n == 0:
        return np.empty(0), np.empty(0), np.empty(0, dtype=np.int64)
    start = np.ones(n, dtype=bool)
    start[1:] = (ids[1:] != ids[:-1]) | (ids[1:] == "")
    run = np.cumsum(start) - 1
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        ok = np.isfinite(s) & np.isfinite(sd) & (sd > 0)
        w = np.where(ok, 1.0 / (sd * sd), 0.0)
        s0 = np.where(ok, s, 0.0)
        d0 = np.where(ok, sd, 0.0)
        count = np.bincount(run, ok.astype(np.int64)).astype(np.int64)
        total = np.bincount(run, w)
        mean = np.bincount(run, w * s0) / total
        spread = np.bincount(run, w * d0) / total
        one = count == 1  # the sum of one value and zeros is that value
        mean = np.where(one, np.bincount(run, s0), mean)
        spread = np.where(one, np.bincount(run, d0), spread)
        none = count == 0
        mean[none] = np.nan
        spread[none] = np.nan
    return mean[run], spread[run], count[run]
