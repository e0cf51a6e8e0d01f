"""A design model folded into float32 matrix products on the raw voltages (the form
`_infer` runs), refused by name when its numbers overflow float32."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from passport.soh._base import _WIDTH_INDEX, KERNEL_CAUCHY, FloatArray, IntArray, SohModelError
from passport.soh._params import DesignModel
from passport.soh.features import COEF, FEATURE_NAMES, RESISTANCE


@dataclass(frozen=True, slots=True)
class Folded:
    """A design model folded into float32 matrix products on the raw voltages.

    With D = [U[c0] - u_ref, U[c1] - U[c0], ..., U[cq-1] - U[cq-2]] (the first required voltage
    about the centre of the voltage window, then the steps between consecutive required ones,
    taken in float64 and only then rounded to float32), X = [D, log10(width) - w_ref, 1] (and,
    for a row whose rating is not the design's, also D / rated_ah and 1 / rated_ah), the
    embedding is E = X @ G, carried with two spare columns [-gamma |e|^2, 1] so that
    -(offset + t) per centre, t = gamma |e - c|^2, is one product with the centres and the
    linear part plus intercept another. A Gaussian model's RBF is exp of that (offset 0); a
    Cauchy model's, 1 / (1 + t), is -1 divided by it (offset 1, folded into the centres'
    constant row). The largest of a row's -(offset + t) is minus its novelty plus offset
    (`_base._novelty`), which widens sigma.

    Precision: every feature is a short sum of voltage steps, so float32 rounding of the steps
    (mV to 100s of mV) costs ~1e-7 of a feature's own size, where rounding the voltages
    themselves (~1 V about u_ref) cost ~1e-7 of a volt and wrecked features that vary by
    microvolts. The fast path stays within 1e-4 of the float64 reference (`reference_estimate`)
    on the models tested for it: ~1e-5 on the dev designs, ~4e-5 on a synthetic-cell model.
    The worst seen is 3.1e-4 (0.03 SoH points), on a model of noise-free synthetic cells with a
    few odd ones (tests/test_soh_novelty.py), whose features vary by microvolts.

    Row independence: a row's path (G_fast for the design's own rating, else G_any) depends on
    that row only. What its neighbours can still change is float32 rounding: OpenBLAS's sgemm
    rounds a row's products a little differently by its position in a block (edge tiles, first
    block of M): up to ~1e-5 on an estimate (~4e-5 on the synthetic model), within the same 1e-4.
    Bit-identical results would need float64 products (3x slower on the RBF product)."""

    cols: IntArray
    span: tuple[int, int] | None  # cols as a contiguous range: a view instead of a copy
    u_ref: float  # centre of the voltage window (V)
    w_ref: float
    rated_ah: float
    G_fast: npt.NDArray[np.float32]  # (q + 2, r + 2): rows of the design's own rating
    G_any: npt.NDArray[np.float32]  # (2q + 3, r + 2): any rating
    minus_gamma: float
    centres_t: npt.NDArray[np.float32]  # (m, r + 2): [2 gamma C^T; 1; -gamma |c|^2 - offset]^T
    offset: float  # 1 for a Cauchy model, 0 for a Gaussian one
    rbf_weights: npt.NDArray[np.float32]
    linear: npt.NDArray[np.float32]  # (r + 2,): [linear weights, 0, intercept]
    lo_u: float  # accepted voltages
    hi_u: float
    lo_w: float
    hi_w: float
    lo_ah: float
    hi_ah: float
    clip: tuple[float, float]
    knots: FloatArray
    values: FloatArray
    novelty_knots: FloatArray  # empty: sigma not widened with novelty
    novelty_factors: FloatArray
    slope_covariance: npt.NDArray[np.float32]  # (r, r), or (0, 0): no slope term in sigma


def fold_design(m: DesignModel, rating_tolerance: float) -> Folded:
    """The folded form, refused by name when a parameter (finite in float64, as `_params`
    checks) overflows the float32 products: a hostile or corrupt model file, which would
    otherwise give infinite or NaN estimates with a numpy warning instead of an error."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        k = _fold(m, rating_tolerance)
    folded = (k.G_fast, k.G_any, k.centres_t, k.rbf_weights, k.linear, k.slope_covariance)
    if not (all(np.isfinite(a).all() for a in folded) and math.isfinite(k.minus_gamma)):
        raise SohModelError(
            f"design {m.design!r}: parameters too large for the estimator's float32 arithmetic"
        )
    return k


def _fold(m: DesignModel, rating_tolerance: float) -> Folded:
    idx = [FEATURE_NAMES.index(n) for n in m.feature_names]
    P = m.projection / m.feature_scale[:, None]  # (features - mean) @ P = z @ projection
    cols = np.array(m.u_columns, dtype=np.int64)
    q, r = len(cols), P.shape[1]
    u_mid = 0.5 * (m.u_window[0] + m.u_window[1])
    u_ref = np.full(q, u_mid)
    w_ref = float(np.log10(math.sqrt(m.width_range_ms[0] * m.width_range_ms[1])))
    Gv = np.zeros((q, r))  # voltage features
    Gr = np.zeros((q, r))  # resistances, still to be divided by rated_ah
    g_w = np.zeros(r)
    for row, j in enumerate(idx):
        if j == _WIDTH_INDEX:
            g_w = P[row].copy()
        elif RESISTANCE[j]:
            Gr += COEF[cols, j][:, None] * P[row][None, :]
        else:
            Gv += COEF[cols, j][:, None] * P[row][None, :]
    c = u_ref @ Gv + w_ref * g_w - m.feature_mean @ P  # constant part of E
    g_r = u_ref @ Gr  # ... and of the resistances, per 1/rated_ah
    # on voltage steps: U - u_ref = cumsum(D), so the rows for D are reverse cumulative sums
    Gv = np.cumsum(Gv[::-1], axis=0)[::-1]
    Gr = np.cumsum(Gr[::-1], axis=0)[::-1]

    def spare(rows: FloatArray, ones: bool) -> FloatArray:
        out = np.zeros((rows.shape[0], r + 2))
        out[:, :r] = rows
        if ones:
            out[-1, r + 1] = 1.0
        return out

    G_fast = spare(np.vstack([Gv + Gr / m.rated_ah, g_w, c + g_r / m.rated_ah]), True)
    G_any = spare(np.vstack([Gv, Gr, g_r, g_w, c]), True)
    mg = m.gamma
    C = m.centres
    offset = 1.0 if m.kernel == KERNEL_CAUCHY else 0.0
    constant = -mg * (C * C).sum(1)[None, :] - offset
    centres = np.vstack([2.0 * mg * C.T, np.ones((1, len(C))), constant])
    linear = np.concatenate([m.linear_weights, [0.0, m.intercept]])
    span = (int(cols[0]), int(cols[-1]) + 1) if q and np.all(np.diff(cols) == 1) else None
    f32 = np.float32
    return Folded(
        cols=cols,
        span=span,
        u_ref=u_mid,
        w_ref=w_ref,
        rated_ah=m.rated_ah,
        G_fast=np.ascontiguousarray(G_fast, dtype=f32),
        G_any=np.ascontiguousarray(G_any, dtype=f32),
        minus_gamma=-mg,
        centres_t=np.ascontiguousarray(centres.T, dtype=f32),
        offset=offset,
        rbf_weights=np.ascontiguousarray(m.rbf_weights, dtype=f32),
        linear=np.ascontiguousarray(linear, dtype=f32),
        lo_u=m.u_window[0],
        hi_u=m.u_window[1],
        lo_w=m.width_range_ms[0] * (1 - 1e-9),
        hi_w=m.width_range_ms[1] * (1 + 1e-9),
        lo_ah=m.rated_ah * (1 - rating_tolerance),
        hi_ah=m.rated_ah * (1 + rating_tolerance),
        clip=m.soh_clip,
        knots=m.sigma_knots,
        values=m.sigma_values,
        novelty_knots=m.novelty_knots,
        novelty_factors=m.novelty_factors,
        slope_covariance=np.ascontiguousarray(m.slope_covariance, dtype=f32),
    )
