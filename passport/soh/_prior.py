"""The pooled prior (a linear model across designs on per-design standardised features) and
the calibration of a design with few cells by shrinking towards it."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from passport.soh._base import (
    KIND_PRIOR,
    Z90,
    BoolArray,
    FitSettings,
    FloatArray,
    SohModelError,
    _DesignRows,
    _feature_mask,
    _few_cells_factor,
    _split,
    _usable_columns,
    group_kfold,
)
from passport.soh._params import DesignModel, PooledPrior, TrainingSummary
from passport.soh.features import FEATURE_NAMES, features


def _standardise(F: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    mean = F.mean(0)
    scale = F.std(0)
    scale = np.where(scale > 1e-12, scale, 1.0)
    return (F - mean) / scale, mean, scale


def _shrunk_ridge(
    Z: FloatArray, y: FloatArray, prior: FloatArray, strength: float
) -> tuple[FloatArray, float]:
    """min |y - b - Z w|^2 + strength * n * |w - prior|^2 (free intercept b)."""
    z_mean = Z.mean(0)
    y_mean = float(y.mean())
    Z0 = Z - z_mean
    lam = strength * len(y)
    w = np.linalg.solve(Z0.T @ Z0 + lam * np.eye(Z.shape[1]), Z0.T @ (y - y_mean) + lam * prior)
    return w, y_mean - float(z_mean @ w)


def fit_pooled_prior(
    design: npt.ArrayLike,
    U: FloatArray,
    rated_ah: FloatArray,
    width_ms: FloatArray,
    soh: FloatArray,
    groups: npt.ArrayLike,
    *,
    settings: FitSettings = FitSettings(),
) -> PooledPrior:
    """The pooled prior from reference designs: features every design has, standardised within
    each design, SoH centred per design; one ridge fit across all of them."""
    return _pooled_prior_from(_split(design, U, rated_ah, width_ms, soh, groups), settings)


def _pooled_prior_from(by_design: dict[str, _DesignRows], settings: FitSettings) -> PooledPrior:
    by_design = dict(by_design)
    if len(by_design) < 2:
        raise SohModelError("a pooled prior needs at least two designs")
    common = np.ones(len(FEATURE_NAMES), dtype=bool)
    feats: dict[str, FloatArray] = {}
    for name, rows in by_design.items():
        available, keep = _usable_columns(rows.U)
        by_design[name] = _DesignRows(*(getattr(rows, f)[keep] for f in _DesignRows.__slots__))
        F = features(by_design[name].U, by_design[name].rated_ah, by_design[name].width_ms)
        feats[name] = F
        common &= _feature_mask(
            available, by_design[name].U, by_design[name].rated_ah, by_design[name].width_ms, F
        )
    names = tuple(n for n, k in zip(FEATURE_NAMES, common, strict=True) if k)
    Zs = {name: _standardise(F[:, common])[0] for name, F in feats.items()}
    ys = {name: rows.soh - rows.soh.mean() for name, rows in by_design.items()}

    def pooled(exclude: str | None) -> FloatArray:
        keys = [k for k in Zs if k != exclude]
        Z = np.vstack([Zs[k] for k in keys])
        y = np.concatenate([ys[k] for k in keys])
        w, _ = _shrunk_ridge(Z, y, np.zeros(Z.shape[1]), settings.prior_alpha)
        return w

    # how well a design calibrated with one cell does: leave each design out, calibrate on each
    # of its cells in turn, score on its other cells. Designs differ a lot and one cell cannot
    # tell which kind a new design is: the sigma is the widest any held-out design needed.
    sigma_one = 0.0
    spread = np.zeros(len(names))
    for name, rows in by_design.items():
        prior = pooled(name)
        own, _ = _shrunk_ridge(Zs[name], ys[name], np.zeros(len(names)), settings.prior_alpha)
        spread += (own - prior) ** 2 / len(by_design)
        cells = np.unique(rows.groups)
        errors: list[FloatArray] = []
        for cell in cells[:: max(1, len(cells) // 12)]:
            own = rows.groups == cell
            if own.all():
                continue
            F = feats[name][:, common]
            Zc, mean, scale = _standardise(F[own])
            w, b = _shrunk_ridge(Zc, rows.soh[own], prior, 1.0)
            estimate = ((F[~own] - mean) / scale) @ w + b
            errors.append(np.abs(estimate - rows.soh[~own]))
        if errors:
            sigma_one = max(sigma_one, float(np.quantile(np.concatenate(errors), 0.9)) / Z90)
    if sigma_one <= 0.0:  # no design had two cells to score: say we know little
        sigma_one = 0.1
    all_soh = np.concatenate([rows.soh for rows in by_design.values()])
    return PooledPrior(
        feature_names=names,
        weights=pooled(None),
        sigma_one_cell=sigma_one,
        designs=tuple(sorted(by_design)),
        soh_range=(float(all_soh.min()), float(all_soh.max())),
        weight_spread=np.maximum(spread, 1e-12),
    )


# The slopes a band's cells teach are its local ones; the design's relation bends outside the
# band, and that difference does not shrink as more cells of the band come in (the posterior
# alone did). It is taken as this share of the weight spread between designs: chosen on the
# accuracy bench's band draws (fold seed 0; the design's other cells covered 0.85 / 0.72 / 0.72
# -> 0.93 / 0.89 / 0.89 at 5 / 8 / 12 cells) and checked on another seed's draws (0.83 / 0.75 /
# 0.68 -> 0.92 / 0.91 / 0.87); docs/soh-accuracy.md.
BAND_DISCREPANCY = 0.25


def _calibrate(
    name: str,
    rows: _DesignRows,
    prior: PooledPrior,
    settings: FitSettings,
    strength: float | None,
    *,
    slope_term: bool = False,
) -> DesignModel:
    """The prior-shrunk linear model. With `slope_term` (and a prior that knows its weight
    spread) sigma also carries the slopes' own uncertainty (`DesignModel.slope_covariance`):
    the out-of-fold sigma only sees errors inside the calibration cells' range, which says
    nothing of how far the slopes are off outside it."""
    available, keep = _usable_columns(rows.U)
    rows = _DesignRows(*(getattr(rows, f)[keep] for f in _DesignRows.__slots__))
    F_all = features(rows.U, rows.rated_ah, rows.width_ms)
    mask = _feature_mask(available, rows.U, rows.rated_ah, rows.width_ms, F_all)
    use = mask & np.isin(np.array(FEATURE_NAMES), np.array(prior.feature_names))
    names = tuple(n for n, k in zip(FEATURE_NAMES, use, strict=True) if k)
    prior_w = prior.weights[[prior.feature_names.index(n) for n in names]]
    F = F_all[:, use]
    y = rows.soh
    cells = np.unique(rows.groups)
    lo = min(prior.soh_range[0], float(y.min())) - settings.clip_margin
    hi = max(prior.soh_range[1], float(y.max())) + settings.clip_margin

    def fit_predict(train: BoolArray, test: BoolArray, c: float) -> FloatArray:
        Z, mean, scale = _standardise(F[train])
        w, b = _shrunk_ridge(Z, y[train], prior_w, c)
        return np.clip(((F[test] - mean) / scale) @ w + b, lo, hi)

    # the same grouped folds as the kernel model's (leave one cell out up to 5 cells)
    folds = group_kfold(rows.groups, settings.inner_folds, settings.seed)

    def out_of_fold(c: float) -> FloatArray:
        oof = np.empty_like(y)
        for fold in np.unique(folds):
            own = folds == fold
            oof[own] = fit_predict(~own, own, c)
        return oof

    if strength is None:
        strength = 1.0  # a priori: the prior weighs as much as the design's own rows
        if len(cells) >= 3:  # enough cells to pick the shrinkage by grouped CV
            maes = [float(np.abs(out_of_fold(c) - y).mean()) for c in settings.prior_strengths]
            strength = settings.prior_strengths[int(np.argmin(maes))]
    if len(cells) >= 3:
        err = np.abs(out_of_fold(strength) - y)
        sigma = float(np.quantile(err, 0.9)) / Z90 * _few_cells_factor(len(cells))
        sigma = max(sigma, 1e-4)
        cv = (float(err.mean()), float(np.quantile(err, 0.95)), float(np.mean(err <= Z90 * sigma)))
    else:  # too few cells to measure anything: the prior's own one-cell uncertainty
        sigma = prior.sigma_one_cell
        cv = (math.nan, math.nan, math.nan)
    Z, mean, scale = _standardise(F)
    w, b = _shrunk_ridge(Z, y, prior_w, strength)
    slope_covariance = np.zeros((0, 0))
    if slope_term and prior.weight_spread is not None:
        # Bayesian linear model: prior N(prior weights, diag(spread)); the rows' information
        # counted per cell (rows of one cell share their errors), noise at the model's sigma;
        # plus the band's discrepancy, which more cells of the band do not shrink
        spread = prior.weight_spread[[prior.feature_names.index(n) for n in names]]
        Z0 = Z - Z.mean(0)
        A = (Z0.T @ Z0) * (len(cells) / len(y)) / sigma**2 + np.diag(1.0 / spread)
        S = np.linalg.inv(A) + BAND_DISCREPANCY * np.diag(spread)
        slope_covariance = 0.5 * (S + S.T)
    Uu = rows.U[:, available]
    summary = TrainingSummary(
        kind=KIND_PRIOR,
        n_rows=len(y),
        n_cells=len(cells),
        soh_min=float(y.min()),
        soh_max=float(y.max()),
        cv_mae=cv[0],
        cv_p95=cv[1],
        cv_coverage=cv[2],
        gamma=0.0,
        alpha=strength,
        n_centres=0,
    )
    return DesignModel(
        design=name,
        rated_ah=float(np.median(rows.rated_ah)),
        width_range_ms=(float(rows.width_ms.min()), float(rows.width_ms.max())),
        u_columns=tuple(int(i) for i in np.flatnonzero(available)),
        u_window=(
            float(Uu.min()) - settings.window_margin_v,
            float(Uu.max()) + settings.window_margin_v,
        ),
        feature_names=names,
        feature_mean=mean,
        feature_scale=scale,
        projection=np.eye(len(names)),
        centres=np.zeros((0, len(names))),
        gamma=0.0,
        rbf_weights=np.zeros(0),
        linear_weights=w,
        intercept=b,
        soh_clip=(lo, hi),
        sigma_knots=np.array([0.5 * (lo + hi)]),
        sigma_values=np.array([sigma]),
        summary=summary,
        slope_covariance=slope_covariance,
        kernel=settings.kernel,  # no RBF: the settings' kernel, so that the file reads alike
    )
