"""Shared pieces of the SoH estimator: array types, the error class, fixed settings, grouped
folds, the RBF kernel and the per-design row selection used by every fitting path."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from passport.errors import InputError
from passport.soh.features import (
    COEF,
    FEATURE_NAMES,
    N_U,
    RESISTANCE,
    WIDTH_FEATURE,
    required_columns,
)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
StrArray = npt.NDArray[Any]

Z90 = 1.6448536269514722  # two-sided 90 % interval: soh +/- Z90 * sigma
# Student t 95 % quantiles for 1..30 degrees of freedom: a 90 % interval measured on few cells
# is itself uncertain, so sigma is widened by t / z (cell errors move together: n = cells)
_T95 = (
    6.314, 2.920, 2.353, 2.132, 2.015, 1.943, 1.895, 1.860, 1.833, 1.812, 1.796, 1.782, 1.771,
    1.761, 1.753, 1.746, 1.740, 1.734, 1.729, 1.725, 1.721, 1.717, 1.714, 1.711, 1.708, 1.706,
    1.703, 1.701, 1.699, 1.697,
)  # fmt: skip


def _few_cells_factor(n_cells: int) -> float:
    """t(0.95, n - 1) / z(0.95): 1.78 for 3 cells, 1.15 for 8, 1.03 for 36."""
    dof = max(1, n_cells - 1)
    t = _T95[dof - 1] if dof <= len(_T95) else Z90 + (Z90**3 + Z90) / (4 * dof)
    return t / Z90


class SohModelError(InputError, ValueError):
    """A model file or training input that cannot be used (a ValueError and an InputError, so
    the CLI reports it as bad input)."""


KIND_KERNEL = "kernel"
KIND_PRIOR = "prior-shrunk"

# radial basis functions of t = gamma |e - c|^2: exp(-t) (model files before session 19) and
# 1 / (1 + t), which needs no exponential at inference
KERNEL_GAUSS = "gauss"
KERNEL_CAUCHY = "cauchy"
KERNELS = (KERNEL_GAUSS, KERNEL_CAUCHY)


def _feature_digest() -> str:
    """Digest of the feature definitions: a model trained on other definitions is refused."""
    h = hashlib.sha256()
    h.update("\n".join(FEATURE_NAMES).encode())
    h.update(np.ascontiguousarray(COEF, dtype="<f8").tobytes())
    h.update(np.ascontiguousarray(RESISTANCE, dtype="<f8").tobytes())
    return h.hexdigest()


FEATURE_DIGEST = _feature_digest()
_WIDTH_INDEX = FEATURE_NAMES.index(WIDTH_FEATURE)


@dataclass(frozen=True, slots=True)
class FitSettings:
    """Fixed choices (made while exploring the dev file, the same for every design and fold);
    only the gamma and alpha grids and the prior strength are searched, by grouped CV inside
    the training cells."""

    n_centres: int = 128
    # the radial basis function (`KERNELS`): the Cauchy profile 1 / (1 + t) scores as exp(-t)
    # did (mean MAE over fold seeds 0 / 1 / 2: 2.199 / 2.182 / 2.118 against 2.212 / 2.181 /
    # 2.119) and costs one float32 division instead of an exponential at inference
    # (docs/soh-accuracy.md, "The Cauchy kernel")
    kernel: str = KERNEL_CAUCHY
    # a per-width model's centres: it learns from one width's rows (a quarter of an LFP design's),
    # and at 64 instead of 128 centres the mean MAE over fold seeds 0 / 1 / 2 moved 2.205 /
    # 2.164 / 2.120 -> 2.212 / 2.181 / 2.119 while an estimate took 19 % less time on an AVX2
    # core (most rows of a mixed line are estimated by per-width models; docs/soh-accuracy.md)
    width_centres: int = 64
    variance_kept: float = 1.0  # principal axes of the standardised features kept (share)
    gamma_grid: tuple[float, ...] = (0.3, 1.0, 3.0)  # RBF width, per standardised feature
    alpha_grid: tuple[float, ...] = (1e-5, 1e-4, 1e-3, 1e-2)  # ridge penalty per row
    ocv_weight_grid: tuple[float, ...] = (1.0, 8.0)  # weight of the OCV in the RBF distance
    stretch_grid: tuple[float, ...] = (1.0, 10.0, 30.0)  # RBF metric along the ridge direction
    stretch_alpha: float = 1e-3  # ridge penalty (per row) of that direction
    inner_folds: int = 5
    seed: int = 0
    window_margin_v: float = 0.1  # accepted voltages: training min/max widened by this
    rating_tolerance: float = 0.05  # accepted rated_ah: within 5 % of the design's
    clip_margin: float = 0.03  # estimates clipped to the training SoH range widened by this
    sigma_bins: int = 4  # sigma as a function of the estimate: this many quantile knots
    min_cells: int = 5  # fewer physical cells: calibrate through the pooled prior instead
    compare_below: int = 20  # fewer cells: keep kernel or prior-shrunk, whichever CVs better
    prior_strengths: tuple[float, ...] = (0.1, 1.0, 10.0)  # shrinkage towards the prior
    prior_alpha: float = 1e-2  # ridge penalty of the pooled model
    per_width: bool = True  # also fit a model per pulse width, kept where inner CV prefers it
    width_min_cells: int = 20  # fewer cells at a width: its rows use the all-widths model
    # sigma widened for rows unlike the training rows: novelty bins at these quantiles of the
    # inner out-of-fold novelty; below novelty_min_cells cells no bins, only the growth past
    # the top bin's median novelty (`_sigma._novelty_curve`)
    novelty_quantiles: tuple[float, ...] = (0.5, 0.75, 0.9)
    novelty_min_cells: int = 10
    # cells spanning less SoH than this (a band): warned about however many they are; from 3
    # to fewer than compare_below of them, the prior-shrunk model at the strongest prior
    # strength with its slopes' uncertainty in sigma, no kernel model (`_choose._choose_model`).
    # Not 0.10 (until session 13): low-end cells spanning 0.10-0.14 got kernel models 18-25
    # points off the design's other cells, unwarned (docs/soh-accuracy.md)
    narrow_span: float = 0.15

    def narrow_band(self, soh_span: float) -> bool:
        """Cells of one SoH band, which say little of cells outside it: what `model_summary`
        warns about (any number of cells) and the model choice holds to the prior (3 to
        fewer than `compare_below` cells)."""
        return soh_span < self.narrow_span


# ---------------------------------------------------------------------------------------------
# grouped cross-validation


def group_kfold(groups: npt.ArrayLike, n_splits: int = 5, seed: int = 0) -> IntArray:
    """Fold number (0..n_splits-1) per row; all rows of a group share a fold. Deterministic:
    groups sorted, shuffled by a fixed seed, then dealt round-robin."""
    names, inverse = np.unique(np.asarray(groups).astype(str), return_inverse=True)
    k = max(1, min(n_splits, len(names)))
    order = np.random.default_rng(seed).permutation(len(names))
    fold_of_group = np.empty(len(names), dtype=np.int64)
    fold_of_group[order] = np.arange(len(names)) % k
    return fold_of_group[inverse.reshape(-1)]


def _sq_dist(E: FloatArray, C: FloatArray) -> FloatArray:
    """Squared distances of rows E to rows C, (len(E), len(C))."""
    d2 = (E * E).sum(1)[:, None] + (C * C).sum(1)[None, :] - 2.0 * (E @ C.T)
    out: FloatArray = np.maximum(d2, 0.0)
    return out


def rbf_profile(t: FloatArray, kernel: str) -> FloatArray:
    """The radial basis function of t = gamma |e - c|^2 (`KERNELS`)."""
    out: FloatArray = 1.0 / (1.0 + t) if kernel == KERNEL_CAUCHY else np.exp(-t)
    return out


def _rbf(E: FloatArray, C: FloatArray, gamma: float, kernel: str) -> FloatArray:
    return rbf_profile(gamma * _sq_dist(E, C), kernel)


def _novelty(E: FloatArray, C: FloatArray, gamma: float) -> FloatArray:
    """gamma x the squared distance to the nearest centre: how unlike a row is to the training
    rows the kernel model kept (0 on a centre). The RBF exponents already hold it, so the fast
    path gets it for one reduction."""
    out: FloatArray = gamma * _sq_dist(E, C).min(1)
    return out


def _coverage(estimate: FloatArray, sigma: FloatArray, truth: FloatArray) -> float:
    return float(np.mean(np.abs(truth - estimate) <= Z90 * sigma))


# ---------------------------------------------------------------------------------------------
# per-design fitting


def _usable_columns(U: FloatArray) -> tuple[BoolArray, BoolArray]:
    """U columns present in (nearly) all rows of a design, and the rows that have them all."""
    present = np.asarray(np.isfinite(U).mean(0) >= 0.95, dtype=np.bool_)
    rows = np.asarray(np.isfinite(U[:, present]).all(1), dtype=np.bool_)
    return present, rows


# A feature whose spread over a design's training rows is below this share of the size of the
# terms it is computed from (its voltages, or log10 width) is treated as constant and dropped:
# it carries no information (a millionth of 3.7 V is below any line's voltage resolution), and
# standardising by such a spread multiplies rounding errors by 1e6 or more (a model trained on
# synthetic cells had spreads of 1e-8 of the terms and lost its float32 fast path to them).
NEGLIGIBLE_SPREAD = 1e-6


def _term_size(U: FloatArray, rated_ah: FloatArray, width_ms: FloatArray) -> FloatArray:
    """Per feature, the RMS over rows of the sum of its terms' absolute values: the size a
    feature would have if its voltages did not cancel (V or ohm; |log10 width| for the width)."""
    U0 = np.where(np.isfinite(U), U, 0.0)
    T = np.abs(U0) @ np.abs(COEF)
    T *= 1.0 + RESISTANCE[None, :] * (1.0 / np.asarray(rated_ah)[:, None] - 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        lw = np.log10(np.asarray(width_ms, dtype=np.float64))
    out: FloatArray = np.sqrt(np.append((T * T).mean(0), np.mean(lw * lw)))
    return out


def _feature_mask(
    available: BoolArray, U: FloatArray, rated_ah: FloatArray, width_ms: FloatArray, F: FloatArray
) -> BoolArray:
    """Features computable from the available U columns whose spread over the rows is not
    negligible (`NEGLIGIBLE_SPREAD`) relative to the size of their terms."""
    usable = required_columns(available)
    mask = np.append(usable, True)
    with np.errstate(invalid="ignore"):
        spread = np.nanstd(np.where(mask[None, :], F, 0.0), axis=0)
    size = _term_size(np.where(available[None, :], U, 0.0), rated_ah, width_ms)
    out: BoolArray = (
        mask & np.isfinite(spread) & (spread > 1e-12) & (spread > NEGLIGIBLE_SPREAD * size)
    )
    return out


@dataclass(frozen=True, slots=True)
class _DesignRows:
    U: FloatArray
    rated_ah: FloatArray
    width_ms: FloatArray
    soh: FloatArray
    groups: StrArray
    tests: StrArray  # rows of one test (one cell at one state of charge) share a label


def _split(
    design: npt.ArrayLike,
    U: FloatArray,
    rated_ah: FloatArray,
    width_ms: FloatArray,
    soh: FloatArray,
    groups: npt.ArrayLike,
    tests: npt.ArrayLike | None = None,
) -> dict[str, _DesignRows]:
    design_a = np.asarray(design).astype(str)
    U = np.asarray(U, dtype=np.float64)
    n = len(design_a)
    if U.shape != (n, N_U):
        raise ValueError(f"U must have shape ({n}, {N_U}), not {U.shape}")
    rated = np.broadcast_to(np.asarray(rated_ah, dtype=np.float64), (n,))
    width = np.broadcast_to(np.asarray(width_ms, dtype=np.float64), (n,))
    y = np.asarray(soh, dtype=np.float64)
    grp = np.asarray(groups).astype(str)
    # without test labels every row is its own test
    tst = np.arange(n).astype(str) if tests is None else np.asarray(tests).astype(str)
    if y.shape != (n,) or grp.shape != (n,) or tst.shape != (n,):
        raise SohModelError("design, U, soh, groups and tests must have the same number of rows")
    ok = np.isfinite(y) & np.isfinite(rated) & (rated > 0) & np.isfinite(width) & (width > 0)
    out: dict[str, _DesignRows] = {}
    for name in sorted(set(design_a[ok].tolist())):
        idx = np.flatnonzero(ok & (design_a == name))
        out[name] = _DesignRows(U[idx], rated[idx], width[idx], y[idx], grp[idx], tst[idx])
    return out


def novelty_factor(novelty: FloatArray, knots: FloatArray, factors: FloatArray) -> FloatArray:
    """sigma's factor for rows with this novelty: the fitted curve between its knots, and
    beyond the last knot the last factor times novelty / last knot. The curve is held flat
    past its last knot by interpolation alone, yet errors keep growing there: out of fold
    (fold seeds 0 / 1), the 3.8 % of rows past the last knot were covered 0.82 / 0.78 with a
    flat factor, 0.91 / 0.88 with this one, and a new design calibrated from 16-20 cells at
    one end of its range covered its other cells 0.68-0.81 instead of 0.04-0.06
    (docs/soh-accuracy.md). Novelty is a squared distance: this grows with its square."""
    f = np.interp(novelty, knots, factors)  # the last factor from the last knot on
    last = float(knots[-1])
    if last > 0.0:  # (three passes, no mask: inference calls this for every block)
        f *= np.maximum(novelty / last, 1.0)
    return f
