"""Compiled inference: a design model folded into float32 matrix products on the raw voltages."""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from passport.soh._base import _WIDTH_INDEX, FloatArray, IntArray, SohModelError
from passport.soh._params import DesignModel, same_width
from passport.soh.features import COEF, FEATURE_NAMES, RESISTANCE

_CHUNK = 4_096  # rows per block at inference: the (rows x centres) matrix stays in cache

_OK, _RANGE, _MISSING, _NO_MODEL = range(4)


@dataclass(frozen=True, slots=True)
class _Compiled:
    """A design model folded into float32 matrix products on the raw voltages.

    With D = [U[c0] - u_ref, U[c1] - U[c0], ..., U[cq-1] - U[cq-2]] (the first required voltage
    about the centre of the voltage window, then the steps between consecutive required ones,
    taken in float64 and only then rounded to float32), X = [D, log10(width) - w_ref, 1] (and,
    for a row whose rating is not the design's, also D / rated_ah and 1 / rated_ah), the
    embedding is E = X @ G, carried with two spare columns [-gamma |e|^2, 1] so that the RBF
    exponents are one product with the centres and the linear part plus intercept another.
    The largest exponent of a row is minus its novelty (`_base._novelty`), which widens sigma.

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
    centres_t: npt.NDArray[np.float32]  # (m, r + 2): [2 gamma C^T; 1; -gamma |c|^2]^T
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


def _compile(m: DesignModel, rating_tolerance: float) -> _Compiled:
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


def _fold(m: DesignModel, rating_tolerance: float) -> _Compiled:
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
    centres = np.vstack([2.0 * mg * C.T, np.ones((1, len(C))), -mg * (C * C).sum(1)[None, :]])
    linear = np.concatenate([m.linear_weights, [0.0, m.intercept]])
    span = (int(cols[0]), int(cols[-1]) + 1) if q and np.all(np.diff(cols) == 1) else None
    f32 = np.float32
    return _Compiled(
        cols=cols,
        span=span,
        u_ref=u_mid,
        w_ref=w_ref,
        rated_ah=m.rated_ah,
        G_fast=np.ascontiguousarray(G_fast, dtype=f32),
        G_any=np.ascontiguousarray(G_any, dtype=f32),
        minus_gamma=-mg,
        centres_t=np.ascontiguousarray(centres.T, dtype=f32),
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


def _predict_block(
    k: _Compiled,
    U: FloatArray,
    rated_ah: FloatArray,
    width_ms: FloatArray,
) -> tuple[FloatArray, FloatArray, npt.NDArray[np.uint8]]:
    """Estimates for rows of one design (a block of at most _CHUNK rows); error as a code
    (index into _CODES). U holds only the design's columns `k.cols`. Rows of the design's own
    rating take the short product (G_fast), others the long one (G_any): chosen per row, so a
    row's estimate never depends on the ratings of the other rows in its block."""
    own = rated_ah == k.rated_ah
    if own.all() or not own.any():
        return _estimate_block(k, U, rated_ah, width_ms, bool(own.all()))
    n = len(U)
    soh, sigma = np.empty(n), np.empty(n)
    error = np.empty(n, dtype=np.uint8)
    for rows, fast in ((np.flatnonzero(own), True), (np.flatnonzero(~own), False)):
        soh[rows], sigma[rows], error[rows] = _estimate_block(
            k, U[rows], rated_ah[rows], width_ms[rows], fast
        )
    return soh, sigma, error


def _estimate_block(
    k: _Compiled,
    U: FloatArray,
    rated_ah: FloatArray,
    width_ms: FloatArray,
    fast: bool,
) -> tuple[FloatArray, FloatArray, npt.NDArray[np.uint8]]:
    n, q = len(U), len(k.cols)
    G = k.G_fast if fast else k.G_any
    X = np.empty((n, G.shape[0]), dtype=np.float32)
    # (hostile voltages, e.g. 1e308, overflow float32: such rows fail the window check below)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        # voltage steps, taken in float64 and then rounded (see _Compiled)
        np.subtract(U[:, 0], k.u_ref, out=X[:, 0], casting="same_kind")
        np.subtract(U[:, 1:], U[:, :-1], out=X[:, 1:q], casting="same_kind")
        inside = (width_ms >= k.lo_w) & (width_ms <= k.hi_w)
        if not fast:  # the fast path's rows have the design's own rating
            inside &= (rated_ah >= k.lo_ah) & (rated_ah <= k.hi_ah)
        # voltages: one flat min/max over the block (NaN propagates and fails the test), row
        # by row only when the block has a row outside the window
        if n and not (U.min() >= k.lo_u and U.max() <= k.hi_u):
            inside &= ((k.lo_u <= U) & (k.hi_u >= U)).all(1)
        lw = np.log10(width_ms) - k.w_ref
        if fast:
            X[:, q] = lw
            X[:, q + 1] = 1.0
        else:
            inv = 1.0 / rated_ah
            np.multiply(X[:, :q], inv[:, None], out=X[:, q : 2 * q], casting="same_kind")
            X[:, 2 * q] = inv
            X[:, 2 * q + 1] = lw
            X[:, 2 * q + 2] = 1.0
        # (rows, r + 2) = X @ G, then (rows, m) = E @ centres: on blocks of _CHUNK rows
        # both stay in cache (a third faster than transposed products on blocks of 32k)
        E = X @ G
        r = E.shape[1] - 2
        E[:, r] = k.minus_gamma * np.einsum("ij,ij->i", E[:, :r], E[:, :r])
        out = E @ k.linear
        nearest = None
        if len(k.rbf_weights):
            # (m, rows): -gamma |e - c|^2, transposed so that the nearest centre of each row
            # is an element-wise max over contiguous rows of centres (a max along each row of
            # the untransposed product costs five times as much); the product costs the same
            Dt = k.centres_t @ E.T
            if len(k.novelty_knots):
                nearest = Dt.max(axis=0)  # -novelty
            np.exp(Dt, out=Dt)
            out += k.rbf_weights @ Dt
    soh = out.astype(np.float64)
    np.maximum(soh, k.clip[0], out=soh)  # np.clip, without its wrapper's cost
    np.minimum(soh, k.clip[1], out=soh)
    sigma = np.interp(soh, k.knots, k.values)
    if nearest is not None:
        sigma *= np.interp(-nearest, k.novelty_knots, k.novelty_factors)
    if len(k.slope_covariance):  # e S e^T per row: about r^2 flops, r = 23-44 features
        e = E[:, :r]
        with np.errstate(invalid="ignore", over="ignore"):  # hostile rows: NaN, refused below
            sigma = np.sqrt(sigma * sigma + np.einsum("ij,ij->i", e @ k.slope_covariance, e))
    error = np.zeros(n, dtype=np.uint8)
    if not inside.all():
        bad = ~inside
        missing = bad.copy()
        missing[bad] = ~(
            np.isfinite(U[bad]).all(1)
            & np.isfinite(rated_ah[bad])
            & np.isfinite(width_ms[bad])
            & (rated_ah[bad] > 0)
            & (width_ms[bad] > 0)
        )
        error[bad] = _RANGE
        error[missing] = _MISSING
        soh[bad] = np.nan
        sigma[bad] = np.nan
    return soh, sigma, error


def _design_codes(design: npt.NDArray[Any], names: list[str]) -> npt.NDArray[np.int16]:
    """Index into `names` per row, len(names) for any other design. A fixed-width string array
    is compared per name (vectorised); an object array is mapped by one dict look-up per row
    (much faster than np.unique, which sorts)."""
    if design.dtype.kind == "U":
        codes = np.full(len(design), len(names), dtype=np.int16)
        for i, name in enumerate(names):
            codes[design == name] = i
        return codes
    # interned keys: rows read by passport.soh.io hold the same objects, so each look-up is an
    # identity check instead of a string comparison
    lookup = {sys.intern(name): i for i, name in enumerate(names)}
    values = design.tolist()  # (astype(object) would first copy the array)
    try:  # a plain dict's own __getitem__: twice as fast as a defaultdict's
        return np.fromiter(map(lookup.__getitem__, values), dtype=np.int16, count=len(design))
    except (KeyError, TypeError):  # another design, or an unhashable entry (never a design)
        other = len(names)
        return np.array(
            [lookup.get(v, other) if isinstance(v, str) else other for v in values],
            dtype=np.int16,
        )


@dataclass(frozen=True, slots=True)
class _CompiledDesign:
    """A design's all-widths model and its per-width models (pulse width in ms, model)."""

    pooled: _Compiled
    by_width: tuple[tuple[float, _Compiled], ...]


def compile_design(m: DesignModel, rating_tolerance: float) -> _CompiledDesign:
    return _CompiledDesign(
        _compile(m, rating_tolerance),
        tuple((s.width_range_ms[0], _compile(s, rating_tolerance)) for s in m.by_width),
    )


def _run(
    k: _Compiled,
    U: FloatArray,
    rated_ah: FloatArray,
    width_ms: FloatArray,
    order: IntArray,
    span: tuple[int, int],
    out: tuple[FloatArray, FloatArray, npt.NDArray[np.uint8]],
) -> None:
    """Rows order[lo:hi] (span) of one model, in blocks of gathered rows, into out[lo:hi]."""
    for lo in range(span[0], span[1], _CHUNK):
        hi = min(lo + _CHUNK, span[1])
        rows = order[lo:hi]
        Ub = U.take(rows, axis=0)  # whole rows: faster than gathering a column range
        Ub = Ub[:, k.span[0] : k.span[1]] if k.span is not None else Ub[:, k.cols]
        s, sd, err = _predict_block(k, Ub, rated_ah[rows], width_ms[rows])
        out[0][lo:hi], out[1][lo:hi], out[2][lo:hi] = s, sd, err


def predict_rows(
    compiled: Mapping[str, _CompiledDesign],
    design: npt.NDArray[Any],
    U: FloatArray,
    rated_ah: FloatArray,
    width_ms: FloatArray,
) -> tuple[FloatArray, FloatArray, npt.NDArray[np.uint8]]:
    """(soh, sigma, code) for rows of any designs; code _NO_MODEL where the design has none.

    Each row goes to one model: its design's model for its pulse width, or else the design's
    all-widths model. One model for all rows (the common case: one design per call, no
    per-width models) runs on slices. Otherwise one pass maps the design names to integer
    codes (then the widths of designs with per-width models to their model), a stable sort of
    the model codes makes each model's rows a contiguous run of the permutation, the runs are
    estimated in blocks of gathered rows and the results scattered back. A row gets the same
    estimate either way up to float32 rounding (the block it sits in may differ)."""
    n = len(design)
    soh = np.full(n, np.nan)
    sigma = np.full(n, np.nan)
    code = np.full(n, _NO_MODEL, dtype=np.uint8)
    if n == 0:
        return soh, sigma, code
    first = design[0]
    if bool((design[:256] == first).all()) and bool((design == first).all()):
        one = compiled.get(str(first))
        if one is None:
            return soh, sigma, code
        if not one.by_width:
            k = one.pooled
            for start in range(0, n, _CHUNK):
                rows = slice(start, min(start + _CHUNK, n))
                Ub = U[rows, k.span[0] : k.span[1]] if k.span is not None else U[rows][:, k.cols]
                soh[rows], sigma[rows], code[rows] = _predict_block(
                    k, Ub, rated_ah[rows], width_ms[rows]
                )
            return soh, sigma, code
        names = [str(first)]
        codes = np.zeros(n, dtype=np.int16)
    else:
        names = list(compiled)
        codes = _design_codes(design, names)
    models: list[_Compiled] = []
    first_model = np.empty(len(names) + 1, dtype=np.int16)
    for i, name in enumerate(names):
        first_model[i] = len(models)
        models.append(compiled[name].pooled)
        models.extend(k for _, k in compiled[name].by_width)
    first_model[-1] = len(models)  # no model
    which = first_model[codes]
    for i, name in enumerate(names):
        if compiled[name].by_width:
            own = np.flatnonzero(codes == i) if len(names) > 1 else np.arange(n)
            w = width_ms[own]
            for j, (width, _) in enumerate(compiled[name].by_width, start=1):
                which[own[same_width(w, width)]] = first_model[i] + j
    order = np.argsort(which, kind="stable")
    ends = np.cumsum(np.bincount(which, minlength=len(models) + 1))
    out = (np.full(n, np.nan), np.full(n, np.nan), np.full(n, _NO_MODEL, dtype=np.uint8))
    for i, k in enumerate(models):
        _run(k, U, rated_ah, width_ms, order, (int(ends[i - 1]) if i else 0, int(ends[i])), out)
    soh[order], sigma[order], code[order] = out
    return soh, sigma, code
