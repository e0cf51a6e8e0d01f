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
