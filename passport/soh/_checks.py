"""A design model's parameters checked whenever one is built (fitted or read from a file):
what every estimate relies on, refused with the field named (`_params.DesignModel`)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from passport.soh._base import KERNELS, SohModelError
from passport.soh.features import FEATURE_NAMES, N_U, WIDTH_FEATURE, required_columns

if TYPE_CHECKING:  # _params imports this module
    from passport.soh._params import DesignModel

ARRAYS = (
    "feature_mean", "feature_scale", "projection", "centres", "rbf_weights", "linear_weights",
    "sigma_knots", "sigma_values", "novelty_knots", "novelty_factors", "slope_covariance",
)  # fmt: skip


def check_design(m: DesignModel) -> None:
    """Everything the estimate relies on, refused with the field named: shapes consistent, every
    number finite, a known kernel, scales, sigmas, rating and gamma positive, knots increasing,
    ranges ordered, and the U columns the features need among `u_columns`."""
    where = f"design {m.design!r}"

    def fail(field: str, what: str) -> SohModelError:
        return SohModelError(f"{where}: {field} {what}")

    k, r = len(m.feature_names), m.linear_weights.shape[0] if m.linear_weights.ndim == 1 else -1
    shapes = {
        "linear_weights": m.linear_weights.ndim == 1,
        "feature_mean": m.feature_mean.shape == (k,),
        "feature_scale": m.feature_scale.shape == (k,),
        "projection": m.projection.shape == (k, r),
        "centres": m.centres.ndim == 2 and m.centres.shape[1] == r,
        "rbf_weights": m.rbf_weights.shape == (m.centres.shape[0] if m.centres.ndim else -1,),
        "sigma_knots": m.sigma_knots.ndim == 1 and len(m.sigma_knots) >= 1,
        "sigma_values": m.sigma_values.shape == m.sigma_knots.shape,
        "novelty_knots": m.novelty_knots.ndim == 1,
        "novelty_factors": m.novelty_factors.shape == m.novelty_knots.shape,
        "slope_covariance": m.slope_covariance.shape in ((0, 0), (r, r)),
    }
    for field, ok in shapes.items():
        if not ok:
            raise fail(field, "has a shape inconsistent with the other parameters")
    for field in ARRAYS:
        if not np.isfinite(getattr(m, field)).all():
            raise fail(field, "holds a non-finite number")
    for field in ("rated_ah", "gamma", "intercept"):
        if not math.isfinite(getattr(m, field)):
            raise fail(field, "is not a finite number")
    for field in ("width_range_ms", "u_window", "soh_clip"):
        lo, hi = getattr(m, field)
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise fail(field, "holds a non-finite number")
        if lo > hi or (field == "u_window" and lo == hi):
            raise fail(field, "is not an ordered range")
    if m.rated_ah <= 0:
        raise fail("rated_ah", "must be positive")
    if m.width_range_ms[0] <= 0:
        raise fail("width_range_ms", "must be positive")
    if not isinstance(m.kernel, str) or m.kernel not in KERNELS:
        raise fail("kernel", f"must be one of {', '.join(KERNELS)}, not {m.kernel!r}")
    if m.gamma < 0 or (len(m.centres) and m.gamma == 0):
        raise fail("gamma", "must be positive")
    if not np.all(m.feature_scale > 0):
        raise fail("feature_scale", "must be positive")
    if not np.all(m.sigma_values > 0):
        raise fail("sigma_values", "must be positive")
    if not np.all(np.diff(m.sigma_knots) > 0):
        raise fail("sigma_knots", "must be increasing")
    if len(m.novelty_knots):
        if not len(m.centres):
            raise fail("novelty_knots", "need RBF centres (novelty is the distance to them)")
        if not (np.all(np.diff(m.novelty_knots) > 0) and m.novelty_knots[0] >= 0):
            raise fail("novelty_knots", "must be increasing and not negative")
        if not np.all(m.novelty_factors > 0):
            raise fail("novelty_factors", "must be positive")
    S = m.slope_covariance
    if len(S):
        if len(m.centres):
            raise fail("slope_covariance", "is for linear models only (no RBF centres)")
        if not np.allclose(S, S.T, rtol=1e-9, atol=0.0) or np.linalg.eigvalsh(S).min() < -1e-12:
            raise fail("slope_covariance", "must be symmetric and positive semi-definite")
    unknown = set(m.feature_names) - set(FEATURE_NAMES)
    if unknown:
        raise fail("feature_names", f"has unknown features {sorted(unknown)}")
    if len(set(m.feature_names)) != k:
        raise fail("feature_names", "repeats a feature")
    cols = m.u_columns
    if not all(isinstance(i, int) and 0 <= i < N_U for i in cols):
        raise fail("u_columns", "has an index outside U1..U41")
    if list(cols) != sorted(set(cols)) or not cols:
        raise fail("u_columns", "must be increasing and not empty")
    available = np.zeros(N_U, dtype=bool)
    available[list(cols)] = True
    idx = [FEATURE_NAMES.index(n) for n in m.feature_names if n != WIDTH_FEATURE]
    if not required_columns(available)[idx].all():
        raise fail("u_columns", "lacks U columns its features need")
