"""Kernel ridge per design on a fixed set of RBF centres: basis, ridge path, hyperparameter
selection by inner grouped CV, and the per-design fit (its sigma curves: `_sigma`)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from passport.soh._base import (
    KIND_KERNEL,
    FitSettings,
    FloatArray,
    IntArray,
    StrArray,
    _coverage,
    _feature_mask,
    _novelty,
    _rbf,
    _usable_columns,
    group_kfold,
    novelty_factor,
)
from passport.soh._params import DesignModel, TrainingSummary
from passport.soh._sigma import _novelty_curve, _sigma_curve
from passport.soh.features import FEATURE_NAMES, features


@dataclass(frozen=True, slots=True)
class _Basis:
    """Standardisation, projection and centres learnt from one set of training rows."""

    mean: FloatArray
    scale: FloatArray
    projection: FloatArray
    centres: FloatArray
    gamma: float
    whiten: FloatArray  # K(C, C)^(-1/2): Nystroem features
    kernel: str

    def embed(self, F: FloatArray) -> FloatArray:
        return ((F - self.mean) / self.scale) @ self.projection

    def design_matrix(self, E: FloatArray) -> FloatArray:
        return np.hstack([_rbf(E, self.centres, self.gamma, self.kernel) @ self.whiten, E])

    def novelty(self, E: FloatArray) -> FloatArray:
        return _novelty(E, self.centres, self.gamma)


@dataclass(frozen=True, slots=True)
class _Metric:
    """How distances are measured for the RBF: the OCV column (a proxy for where the cell sits on
    its OCV curve, which changes what every resistance means) weighted by `ocv_weight`, and the
    direction of a linear ridge fit on the standardised features stretched by `stretch`, so that
    the kernel varies fastest along the direction that carries SoH. Both are searched by inner
    grouped CV (`FitSettings.ocv_weight_grid`, `FitSettings.stretch_grid`); (1, 1) is the plain
    standardised metric."""

    ocv_weight: float = 1.0
    stretch: float = 1.0


def _basis(
    F: FloatArray,
    gamma_scale: float,
    n_centres: int,
    seed: int,
    variance_kept: float = 1.0,
    metric: _Metric = _Metric(),
    y: FloatArray | None = None,
    ocv_column: int | None = None,
    stretch_alpha: float = 1e-3,
    *,
    kernel: str,
) -> _Basis:
    mean = F.mean(0)
    scale = F.std(0)
    scale = np.where(scale > 1e-12, scale, 1.0)  # a feature constant within a fold
    if ocv_column is not None and metric.ocv_weight != 1.0:
        scale = scale.copy()
        scale[ocv_column] /= metric.ocv_weight  # OCV counts ocv_weight times in distances
    Z = (F - mean) / scale
    # principal axes from the (features x features) Gram matrix: eigh always converges
    lam, vecs = np.linalg.eigh(Z.T @ Z)
    lam, vecs = lam[::-1], vecs[:, ::-1]
    share = np.cumsum(np.maximum(lam, 0.0)) / np.maximum(lam, 0.0).sum()
    keep = (lam > 1e-10 * lam[0]) & (np.arange(len(lam)) <= np.searchsorted(share, variance_kept))
    projection = vecs[:, keep]
    if metric.stretch != 1.0 and y is not None:
        # the ridge direction on these training rows (and only these), stretched: still a linear
        # projection of the standardised features, so inference is unchanged
        b = np.linalg.solve(
            Z.T @ Z + stretch_alpha * len(y) * np.eye(Z.shape[1]), Z.T @ (y - y.mean())
        )
        norm = float(np.linalg.norm(b))
        if norm > 0.0:
            d = b / norm
            projection = projection + (metric.stretch - 1.0) * np.outer(d, d @ projection)
    projection = np.ascontiguousarray(projection)
    E = Z @ projection
    m = min(n_centres, len(E))
    centres = E[np.sort(np.random.default_rng(seed).choice(len(E), m, replace=False))]
    gamma = gamma_scale / F.shape[1]
    K = _rbf(centres, centres, gamma, kernel)
    ev, V = np.linalg.eigh(K)
    ev = np.maximum(ev, 1e-6 * ev.max())
    return _Basis(mean, scale, projection, centres, gamma, V / np.sqrt(ev), kernel)


def _ridge_path(
    A: FloatArray, y: FloatArray, alphas: tuple[float, ...]
) -> tuple[FloatArray, FloatArray, float]:
    """Ridge solutions for several penalties at once: (coef (p, len(alphas)), A mean, y mean);
    one eigendecomposition serves the whole path."""
    a_mean = A.mean(0)
    y_mean = float(y.mean())
    A0 = A - a_mean
    lam, Q = np.linalg.eigh(A0.T @ A0)
    qb = Q.T @ (A0.T @ (y - y_mean))
    n = len(y)
    coef = np.stack([Q @ (qb / (np.maximum(lam, 0.0) + a * n)) for a in alphas], axis=1)
    return coef, a_mean, y_mean


@dataclass(frozen=True, slots=True)
class _Selection:
    gamma_scale: float
    alpha: float
    metric: _Metric
    oof: FloatArray  # out-of-fold estimates at the chosen settings (clipped)
    novelty: FloatArray  # out-of-fold novelty (`_novelty`) at the chosen settings


def _select(
    F: FloatArray,
    y: FloatArray,
    folds: IntArray,
    clip: tuple[float, float],
    settings: FitSettings,
    ocv_column: int | None = None,
) -> _Selection:
    """Inner grouped CV over the (metric, gamma, alpha) grid; the best by out-of-fold MAE."""
    alphas = settings.alpha_grid
    ocv_weights = settings.ocv_weight_grid if ocv_column is not None else (1.0,)
    grid = [
        (_Metric(o, k), g)
        for k in settings.stretch_grid
        for o in ocv_weights
        for g in settings.gamma_grid
    ]
    oof = np.zeros((len(grid), len(alphas), len(y)))
    novelty = np.zeros((len(grid), len(y)))
    for fold in np.unique(folds):
        test = folds == fold
        train = ~test
        for g, (metric, gamma_scale) in enumerate(grid):
            basis = _basis(
                F[train],
                gamma_scale,
                settings.n_centres,
                settings.seed,
                settings.variance_kept,
                metric,
                y[train],
                ocv_column,
                settings.stretch_alpha,
                kernel=settings.kernel,
            )
            A_train = basis.design_matrix(basis.embed(F[train]))
            coef, a_mean, y_mean = _ridge_path(A_train, y[train], alphas)
            E_test = basis.embed(F[test])
            A_test = basis.design_matrix(E_test)
            oof[g][:, test] = ((A_test - a_mean) @ coef + y_mean).clip(*clip).T
            novelty[g, test] = basis.novelty(E_test)
    mae = np.abs(oof - y).mean(axis=2)
    best = int(np.argmin(mae))
    g, a = divmod(best, len(alphas))
    return _Selection(grid[g][1], alphas[a], grid[g][0], oof[g, a], novelty[g])


@dataclass(frozen=True, slots=True)
class _KernelFit:
    model: DesignModel
    rows: IntArray  # the training rows it used (rows with all the design's U columns)
    oof: FloatArray  # out-of-fold estimates and sigma of those rows (inner grouped CV)
    oof_sigma: FloatArray


def _fit_kernel_design(
    name: str,
    U: FloatArray,
    rated_ah: FloatArray,
    width_ms: FloatArray,
    soh: FloatArray,
    groups: StrArray,
    settings: FitSettings,
) -> _KernelFit:
    available, used = _usable_columns(U)
    rows = np.flatnonzero(used)
    U, rated_ah, width_ms, soh, groups = (
        U[rows],
        rated_ah[rows],
        width_ms[rows],
        soh[rows],
        groups[rows],
    )
    F_all = features(U, rated_ah, width_ms)
    mask = _feature_mask(available, U, rated_ah, width_ms, F_all)
    F = F_all[:, mask]
    names = [n for n, k in zip(FEATURE_NAMES, mask, strict=True) if k]
    ocv_column = names.index("ocv") if "ocv" in names else None
    n_cells = len(np.unique(groups))
    clip = (float(soh.min()) - settings.clip_margin, float(soh.max()) + settings.clip_margin)
    folds = group_kfold(groups, settings.inner_folds, settings.seed)
    sel = _select(F, soh, folds, clip, settings, ocv_column)
    knots, values = _sigma_curve(sel.oof, soh, settings.sigma_bins, n_cells)
    oof_sigma = np.interp(sel.oof, knots, values)
    novelty_knots, novelty_factors = _novelty_curve(
        sel.novelty,
        (soh - sel.oof) / oof_sigma,
        n_cells,
        settings.novelty_quantiles,
        settings.novelty_min_cells,
    )
    if len(novelty_knots):
        oof_sigma = oof_sigma * novelty_factor(sel.novelty, novelty_knots, novelty_factors)
    err = np.abs(sel.oof - soh)

    basis = _basis(
        F,
        sel.gamma_scale,
        settings.n_centres,
        settings.seed,
        settings.variance_kept,
        sel.metric,
        soh,
        ocv_column,
        settings.stretch_alpha,
        kernel=settings.kernel,
    )
    E = basis.embed(F)
    A = basis.design_matrix(E)
    coef, a_mean, y_mean = _ridge_path(A, soh, (sel.alpha,))
    beta = coef[:, 0]
    m = basis.centres.shape[0]
    rbf_weights = basis.whiten @ beta[:m]
    intercept = y_mean - float(a_mean @ beta)
    summary = TrainingSummary(
        kind=KIND_KERNEL,
        n_rows=len(soh),
        n_cells=n_cells,
        soh_min=float(soh.min()),
        soh_max=float(soh.max()),
        cv_mae=float(err.mean()),
        cv_p95=float(np.quantile(err, 0.95)),
        cv_coverage=_coverage(sel.oof, oof_sigma, soh),
        gamma=sel.gamma_scale,
        alpha=sel.alpha,
        n_centres=m,
    )
    Uu = U[:, available]
    model = DesignModel(
        design=name,
        rated_ah=float(np.median(rated_ah)),
        width_range_ms=(float(width_ms.min()), float(width_ms.max())),
        u_columns=tuple(int(i) for i in np.flatnonzero(available)),
        u_window=(
            float(Uu.min()) - settings.window_margin_v,
            float(Uu.max()) + settings.window_margin_v,
        ),
        feature_names=tuple(names),
        feature_mean=basis.mean,
        feature_scale=basis.scale,
        projection=basis.projection,
        centres=basis.centres,
        gamma=basis.gamma,
        kernel=basis.kernel,
        rbf_weights=rbf_weights,
        linear_weights=beta[m:],
        intercept=intercept,
        soh_clip=clip,
        sigma_knots=knots,
        sigma_values=values,
        summary=summary,
        novelty_knots=novelty_knots,
        novelty_factors=novelty_factors,
    )
    return _KernelFit(model, rows, sel.oof, oof_sigma)


def _summary_of(
    base: TrainingSummary, oof: FloatArray, oof_sigma: FloatArray, soh: FloatArray
) -> TrainingSummary:
    err = np.abs(oof - soh)
    return replace(
        base,
        cv_mae=float(err.mean()),
        cv_p95=float(np.quantile(err, 0.95)),
        cv_coverage=_coverage(oof, oof_sigma, soh),
    )


def _row_correlation(oof: FloatArray, sigma: FloatArray, y: FloatArray, groups: StrArray) -> float:
    """Correlation of the standardised out-of-fold errors of two rows of one cell (pairs within
    every physical cell, pooled), clipped to [0, 1]; 1 (no narrowing) without pairs."""
    z = (oof - y) / sigma
    _, inverse = np.unique(groups, return_inverse=True)
    total = np.bincount(inverse, z)
    squares = np.bincount(inverse, z * z)
    count = np.bincount(inverse)
    pairs = float((count * (count - 1)).sum())
    scale = float(np.mean(z * z))
    if pairs == 0 or scale <= 0:
        return 1.0
    return float(np.clip(((total * total - squares).sum() / pairs) / scale, 0.0, 1.0))


def _design_row_correlation(
    oof: FloatArray, sigma: FloatArray, y: FloatArray, groups: StrArray, tests: StrArray
) -> float:
    """The row correlation a design's model carries: within a physical cell, or within one test
    (the widths run at one state of charge, which `combine` mostly joins) when the training rows
    say which rows form a test, whichever is larger (the wider, safer combined sigma)."""
    rho = _row_correlation(oof, sigma, y, groups)
    if len(np.unique(tests)) < len(tests):  # some test has two rows or more
        rho = max(rho, _row_correlation(oof, sigma, y, tests))
    return rho


def _fit_kernel_widths(
    name: str,
    U: FloatArray,
    rated_ah: FloatArray,
    width_ms: FloatArray,
    soh: FloatArray,
    groups: StrArray,
    tests: StrArray,
    settings: FitSettings,
) -> DesignModel:
    """The kernel model across all pulse widths (log10 width is one of its inputs), plus, for
    each width with at least `settings.width_min_cells` cells, a kernel model of that width
    alone (on `settings.width_centres` centres), kept when its inner grouped-CV MAE on that
    width's rows beats the pooled model's (same folds: both split the same cells with the same
    seed). Rows of other widths, or of a width whose own model did not do better, use the
    pooled model."""
    pooled = _fit_kernel_design(name, U, rated_ah, width_ms, soh, groups, settings)
    widths = np.unique(width_ms)
    y = soh[pooled.rows]
    g = groups[pooled.rows]
    t = tests[pooled.rows]
    if not settings.per_width or len(widths) < 2:
        rho = _design_row_correlation(pooled.oof, pooled.oof_sigma, y, g, t)
        return replace(pooled.model, row_correlation=rho)
    oof = pooled.oof.copy()
    oof_sigma = pooled.oof_sigma.copy()
    subs: list[DesignModel] = []
    sub_settings = replace(settings, n_centres=settings.width_centres)
    for w in widths.tolist():
        own = width_ms == w
        if len(np.unique(groups[own])) < settings.width_min_cells:
            continue
        sub = _fit_kernel_design(
            name, U[own], rated_ah[own], width_ms[own], soh[own], groups[own], sub_settings
        )
        # the pooled model's out-of-fold rows of this width, in the sub-model's row order
        at = np.searchsorted(pooled.rows, np.flatnonzero(own)[sub.rows])
        if not np.array_equal(
            pooled.rows[np.minimum(at, len(pooled.rows) - 1)], np.flatnonzero(own)[sub.rows]
        ):
            continue  # the two used different rows: no like-for-like comparison
        if sub.model.summary.cv_mae < float(np.abs(pooled.oof[at] - y[at]).mean()):
            subs.append(sub.model)
            oof[at] = sub.oof
            oof_sigma[at] = sub.oof_sigma
    rho = _design_row_correlation(oof, oof_sigma, y, g, t)
    if not subs:
        return replace(pooled.model, row_correlation=rho)
    summary = _summary_of(pooled.model.summary, oof, oof_sigma, y)
    return replace(pooled.model, by_width=tuple(subs), summary=summary, row_correlation=rho)
