"""Sigma from inner out-of-fold errors: as a function of the estimate (`_sigma_curve`), and
widened as a row gets unlike the training rows (`_novelty_curve`)."""

from __future__ import annotations

import numpy as np

from passport.soh._base import Z90, FloatArray, _few_cells_factor


def _sigma_curve(
    estimate: FloatArray, truth: FloatArray, bins: int, n_cells: int
) -> tuple[FloatArray, FloatArray]:
    """Sigma as a function of the estimate from out-of-fold residuals: the mean |residual| in
    quantile bins of the estimate (shrunk towards the overall mean), scaled so that 90 % of the
    residuals fall within +/- Z90 sigma. Residuals of one cell move together, so a bin needs
    about 20 cells to say anything: fewer cells, fewer bins (down to a constant sigma)."""
    resid = np.abs(truth - estimate)
    bins = max(1, min(bins, n_cells // 20, len(estimate) // 50))
    edges = np.quantile(estimate, np.linspace(0.0, 1.0, bins + 1))
    which = np.clip(np.searchsorted(edges, estimate, side="right") - 1, 0, bins - 1)
    overall = float(resid.mean())
    prior_rows = len(estimate) / bins  # shrinkage: as strong as one bin's own data
    knots = np.empty(bins)
    level = np.empty(bins)
    for b in range(bins):
        in_bin = which == b
        n_b = int(in_bin.sum())
        knots[b] = float(np.median(estimate[in_bin])) if n_b else float(edges[b])
        level[b] = (resid[in_bin].sum() + prior_rows * overall) / (n_b + prior_rows)
    knots, unique = np.unique(knots, return_index=True)
    level = np.maximum(level[unique], 1e-4)
    shape = np.interp(estimate, knots, level)
    q90 = float(np.quantile(resid / shape, 0.9)) * _few_cells_factor(n_cells)
    values = np.maximum(level * q90 / Z90, 1e-4)
    return knots, values


def _increasing(y: FloatArray, w: FloatArray) -> FloatArray:
    """The weighted least-squares non-decreasing fit to y (pool adjacent violators): the
    weighted mean is kept, where a running maximum would raise it."""
    blocks: list[tuple[float, float, int]] = []  # (mean, weight, length)
    for v, wt in zip(y.tolist(), w.tolist(), strict=True):
        blocks.append((v, wt, 1))
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            (m2, w2, n2), (m1, w1, n1) = blocks.pop(), blocks.pop()
            total = w1 + w2
            mean = (m1 * w1 + m2 * w2) / total if total > 0 else 0.5 * (m1 + m2)
            blocks.append((mean, total, n1 + n2))
    return np.repeat([b[0] for b in blocks], [b[2] for b in blocks]).astype(np.float64)


def _novelty_curve(
    novelty: FloatArray,
    z: FloatArray,
    n_cells: int,
    quantiles: tuple[float, ...],
    min_cells: int,
) -> tuple[FloatArray, FloatArray]:
    """How much to widen sigma as a row gets unlike the training rows, from inner out-of-fold
    novelty and standardised errors z = (truth - estimate) / sigma: the mean |z| in novelty bins
    (edges at `quantiles`) over the overall mean |z|, shrunk towards 1 (a prior as strong as
    the smallest bin), made non-decreasing (`_increasing`) and never below 1.

    Widen only: the sigma curve is calibrated over all rows, so narrowing the ordinary rows to
    pay for the novel ones would rest on the few cells in the top bin (tried in session 6: it
    narrowed the ordinary rows of the small designs below 0.87 coverage). Knots at the bins'
    median novelty. Past the last knot sigma grows with novelty (`_base.novelty_factor`) even
    where the bins' errors do not stand out (factors of 1) and below `min_cells` cells (one
    knot, at the top bin's median): a row far beyond every training row (noisy voltages) is
    estimated 11-25 points off however clean the design's own errors were. Empty arrays (no
    widening at all) only without bins or rows."""
    empty = np.zeros(0)
    if not quantiles or len(z) == 0:
        return empty, empty
    edges = np.quantile(novelty, (0.0, *quantiles, 1.0))
    top = novelty[novelty >= edges[-2]]
    a = np.abs(z)
    overall = float(a.mean())
    if n_cells < min_cells or overall <= 0.0:
        return np.array([float(np.median(top))]), np.ones(1)
    bins = len(edges) - 1
    which = np.clip(np.searchsorted(edges, novelty, side="right") - 1, 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    prior_rows = max(1.0, float(np.diff((0.0, *quantiles, 1.0)).min()) * len(a))
    ratio = (np.bincount(which, a, bins) + prior_rows * overall) / (counts + prior_rows) / overall
    knots = np.array(
        [
            float(np.median(novelty[which == b])) if counts[b] else float(edges[b])
            for b in range(bins)
        ]
    )
    # weighted by rows + prior, the shrunk ratios average exactly 1: no widening unless some
    # bin's errors stand out
    factors = _increasing(ratio, (counts + prior_rows).astype(np.float64))
    factors = np.where(factors > 1.0 + 1e-9, factors, 1.0)
    knots, unique = np.unique(knots, return_index=True)
    return knots, factors[unique]
