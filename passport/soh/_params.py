"""The fitted parameters of the SoH estimator and their JSON form: a design's model (kernel or
linear), its training summary, and the pooled prior shared across designs."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from dataclasses import field as _field
from typing import Any

import numpy as np

from passport.soh._base import (
    KERNEL_GAUSS,
    BoolArray,
    FloatArray,
    SohModelError,
    _sq_dist,
    novelty_factor,
    rbf_profile,
)
from passport.soh._checks import ARRAYS as _ARRAYS
from passport.soh._checks import check_design as _check_design
from passport.soh.features import FEATURE_NAMES, features


@dataclass(frozen=True, slots=True)
class TrainingSummary:
    """What a design's model was trained on and how it did on its own held-out cells."""

    kind: str
    n_rows: int
    n_cells: int
    soh_min: float
    soh_max: float
    cv_mae: float  # out-of-fold (grouped by cell) mean absolute error, fraction
    cv_p95: float  # out-of-fold 95th percentile absolute error, fraction
    cv_coverage: float  # share of out-of-fold truths within +/- Z90 sigma
    gamma: float
    alpha: float
    n_centres: int

    def __post_init__(self) -> None:
        for name in ("n_rows", "n_cells", "n_centres"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 0:
                raise SohModelError(f"training summary: {name} must be a non-negative integer")
        for name in ("soh_min", "soh_max", "gamma", "alpha"):
            if not math.isfinite(getattr(self, name)):
                raise SohModelError(f"training summary: {name} is not a finite number")
        for name in ("cv_mae", "cv_p95", "cv_coverage"):  # NaN (null): could not be measured
            v = getattr(self, name)
            if math.isinf(v) or v < 0:
                raise SohModelError(f"training summary: {name} must be >= 0 or null")
        if self.soh_min > self.soh_max:
            raise SohModelError("training summary: soh_min above soh_max")


@dataclass(frozen=True, eq=False)
class DesignModel:
    """One design's estimator. Arrays are read-only; `to_dict` gives their JSON form.

    features: z = (features(U)[names] - mean) / scale; e = z @ projection;
    soh = k(gamma |e - centre|^2) @ rbf_weights + e @ linear_weights + intercept, clipped, where
    k(t) = 1 / (1 + t) for kernel "cauchy", exp(-t) for "gauss" (`_base.rbf_profile`);
    sigma = interp(soh, sigma_knots, sigma_values), times novelty_factor(novelty, novelty_knots,
    novelty_factors) when the model has novelty knots (`_base.novelty_factor`: interpolated
    between the knots, past the last one in proportion to novelty), where novelty = min over
    the centres of gamma |e - centre|^2 (a row unlike the training rows gets a wider sigma,
    without bound); with a slope
    covariance S, sigma = sqrt(sigma^2 + e S e^T) (how unsure the slopes are, times how far the
    row is from the calibration rows' mean, where e is 0).

    by_width: models of one pulse width each (width_range_ms = (w, w)), with no by_width of
    their own; a row whose width is one of theirs (`same_width`) is estimated by that model,
    any other row by this one.
    """

    design: str
    rated_ah: float
    width_range_ms: tuple[float, float]
    u_columns: tuple[int, ...]  # 0-based indices of the required U columns
    u_window: tuple[float, float]  # accepted voltage range (V)
    feature_names: tuple[str, ...]
    feature_mean: FloatArray
    feature_scale: FloatArray
    projection: FloatArray  # (features, r)
    centres: FloatArray  # (m, r); m = 0 for a linear model
    gamma: float  # per unit of squared distance in e
    rbf_weights: FloatArray  # (m,)
    linear_weights: FloatArray  # (r,)
    intercept: float
    soh_clip: tuple[float, float]
    sigma_knots: FloatArray  # increasing estimates
    sigma_values: FloatArray  # sigma (fraction) at the knots
    summary: TrainingSummary
    by_width: tuple[DesignModel, ...] = ()
    # correlation of the standardised errors of two rows of one cell (inner out-of-fold, within
    # physical cells): how much combining a cell's rows narrows sigma; 1 = not at all
    row_correlation: float = 1.0
    # sigma's widening with novelty (increasing knots, factors); empty: none
    novelty_knots: FloatArray = _field(default_factory=lambda: np.zeros(0))
    novelty_factors: FloatArray = _field(default_factory=lambda: np.zeros(0))
    # posterior covariance of linear_weights, (r, r), for calibrations held to the pooled prior;
    # (0, 0): none (every other model, and files written before it existed)
    slope_covariance: FloatArray = _field(default_factory=lambda: np.zeros((0, 0)))
    # the radial basis function (`_base.KERNELS`); "gauss" in files written before it existed
    kernel: str = KERNEL_GAUSS

    def __post_init__(self) -> None:
        for name in _ARRAYS:
            # C order always: a loaded model must compute exactly what the fitted one did
            arr = np.array(getattr(self, name), dtype=np.float64, order="C")
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)
        _check_design(self)
        object.__setattr__(self, "by_width", tuple(self.by_width))
        widths = [m.width_range_ms[0] for m in self.by_width]
        subs_ok = all(
            m.design == self.design
            and not m.by_width
            and m.width_range_ms[0] == m.width_range_ms[1]
            and m.rated_ah == self.rated_ah
            for m in self.by_width
        )
        if not subs_ok or len(set(widths)) != len(widths):
            raise SohModelError(f"design {self.design!r}: bad per-width models")
        rho = self.row_correlation
        if isinstance(rho, bool) or not isinstance(rho, int | float) or not 0.0 <= rho <= 1.0:
            raise SohModelError(f"design {self.design!r}: row_correlation must be in [0, 1]")
        object.__setattr__(self, "row_correlation", float(rho))

    def widest_novelty_factor(self) -> float:
        """sigma's factor at the last novelty knot of this model or its per-width models (1
        without knots); past it, the factor grows in proportion to novelty."""
        return max(float(k.novelty_factors.max(initial=1.0)) for k in (self, *self.by_width))

    def reference_estimate(
        self, U: FloatArray, rated_ah: FloatArray, width_ms: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        """(soh, sigma) by the defining float64 formulas, straight from `features` and with no
        input checks; `SohModel.predict` computes the same, folded into float32 products."""
        soh, sigma = self._own_estimate(U, rated_ah, width_ms)
        for m in self.by_width:
            rows = same_width(width_ms, m.width_range_ms[0])
            if rows.any():
                soh[rows], sigma[rows] = m._own_estimate(U[rows], rated_ah[rows], width_ms[rows])
        return soh, sigma

    def _own_estimate(
        self, U: FloatArray, rated_ah: FloatArray, width_ms: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        F = features(U, rated_ah, width_ms)[:, [FEATURE_NAMES.index(n) for n in self.feature_names]]
        E = ((F - self.feature_mean) / self.feature_scale) @ self.projection
        soh = E @ self.linear_weights + self.intercept
        d2 = _sq_dist(E, self.centres) if len(self.centres) else np.zeros((len(E), 0))
        if len(self.centres):
            soh += rbf_profile(self.gamma * d2, self.kernel) @ self.rbf_weights
        soh = np.clip(soh, *self.soh_clip)
        sigma = np.interp(soh, self.sigma_knots, self.sigma_values)
        if len(self.novelty_knots):
            novelty = self.gamma * d2.min(1)
            sigma *= novelty_factor(novelty, self.novelty_knots, self.novelty_factors)
        if len(self.slope_covariance):
            sigma = np.sqrt(sigma**2 + np.einsum("ij,jk,ik->i", E, self.slope_covariance, E))
        return soh, sigma

    def to_dict(self) -> dict[str, Any]:
        return {
            "design": self.design,
            "rated_ah": self.rated_ah,
            "width_range_ms": list(self.width_range_ms),
            "u_columns": list(self.u_columns),
            "u_window": list(self.u_window),
            "feature_names": list(self.feature_names),
            "feature_mean": self.feature_mean.tolist(),
            "feature_scale": self.feature_scale.tolist(),
            "projection": self.projection.tolist(),
            "centres": self.centres.tolist(),
            "gamma": self.gamma,
            "rbf_weights": self.rbf_weights.tolist(),
            "linear_weights": self.linear_weights.tolist(),
            "intercept": self.intercept,
            "soh_clip": list(self.soh_clip),
            "sigma_knots": self.sigma_knots.tolist(),
            "sigma_values": self.sigma_values.tolist(),
            "summary": {
                k: None if isinstance(v, float) and math.isnan(v) else v
                for k, v in asdict(self.summary).items()
            },
            "by_width": [m.to_dict() for m in self.by_width],
            "row_correlation": self.row_correlation,
            "novelty_knots": self.novelty_knots.tolist(),
            "novelty_factors": self.novelty_factors.tolist(),
            "slope_covariance": self.slope_covariance.tolist(),
            "kernel": self.kernel,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DesignModel:
        unknown = sorted(set(d) - _DESIGN_KEYS) if isinstance(d, Mapping) else []
        if unknown:  # a newer file: estimating without what they say would be wrong silently
            raise SohModelError(
                f"design {d.get('design')!r}: fields this software does not know: "
                f"{', '.join(map(str, unknown))} (a model file from a newer version?)"
            )
        try:
            r = len(d["linear_weights"])
            centres = np.array(d["centres"], dtype=np.float64).reshape(-1, r)
            projection = np.array(d["projection"], dtype=np.float64).reshape(-1, r)
            return cls(
                design=str(d["design"]),
                rated_ah=float(d["rated_ah"]),
                width_range_ms=_pair(d["width_range_ms"]),
                u_columns=tuple(int(i) for i in d["u_columns"]),
                u_window=_pair(d["u_window"]),
                feature_names=tuple(str(n) for n in d["feature_names"]),
                feature_mean=np.array(d["feature_mean"], dtype=np.float64),
                feature_scale=np.array(d["feature_scale"], dtype=np.float64),
                projection=projection,
                centres=centres,
                gamma=float(d["gamma"]),
                rbf_weights=np.array(d["rbf_weights"], dtype=np.float64),
                linear_weights=np.array(d["linear_weights"], dtype=np.float64),
                intercept=float(d["intercept"]),
                soh_clip=_pair(d["soh_clip"]),
                sigma_knots=np.array(d["sigma_knots"], dtype=np.float64),
                sigma_values=np.array(d["sigma_values"], dtype=np.float64),
                summary=_summary_from(d["summary"]),
                by_width=tuple(cls.from_dict(m) for m in d["by_width"]),
                # absent in files written before it existed: rows combined without narrowing
                row_correlation=d.get("row_correlation", 1.0),
                # absent in files written before it existed: no widening with novelty
                novelty_knots=np.array(d.get("novelty_knots", []), dtype=np.float64),
                novelty_factors=np.array(d.get("novelty_factors", []), dtype=np.float64),
                # absent in files written before it existed: no slope term
                slope_covariance=np.array(d.get("slope_covariance") or np.zeros((0, 0))),
                # absent in files written before it existed: exp(-t)
                kernel=d.get("kernel", KERNEL_GAUSS),
            )
        except SohModelError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise SohModelError(f"bad SoH model: design entry: {exc!r}") from None


@dataclass(frozen=True, eq=False)
class PooledPrior:
    """A linear model shared by all designs, on features standardised within each design:
    soh - design mean = z @ weights. A new design shrinks its own coefficients towards these."""

    feature_names: tuple[str, ...]
    weights: FloatArray
    sigma_one_cell: float  # sigma (fraction) of a design calibrated with a single cell
    designs: tuple[str, ...]  # the designs it was pooled from
    soh_range: tuple[float, float]
    # per feature, the mean squared distance of a reference design's own weights from the
    # pooled weights of the others: how far a new design's slopes may sit from `weights`.
    # None in files written before it existed (then no slope term in any calibration's sigma)
    weight_spread: FloatArray | None = None

    def __post_init__(self) -> None:
        arr = np.array(self.weights, dtype=np.float64, order="C")
        arr.setflags(write=False)
        object.__setattr__(self, "weights", arr)
        if arr.shape != (len(self.feature_names),) or not np.isfinite(arr).all():
            raise SohModelError("pooled prior: weights do not match its features")
        if self.weight_spread is not None:
            spread = np.array(self.weight_spread, dtype=np.float64, order="C")
            spread.setflags(write=False)
            object.__setattr__(self, "weight_spread", spread)
            if spread.shape != arr.shape or not (np.isfinite(spread).all() and (spread > 0).all()):
                raise SohModelError(
                    "pooled prior: weight_spread must hold one positive finite number per feature"
                )
        if set(self.feature_names) - set(FEATURE_NAMES):
            raise SohModelError("pooled prior: unknown features")
        if len(set(self.feature_names)) != len(self.feature_names):
            raise SohModelError("pooled prior: feature_names repeat a feature")
        if not (math.isfinite(self.sigma_one_cell) and self.sigma_one_cell > 0):
            raise SohModelError("pooled prior: sigma_one_cell must be a positive finite number")
        lo, hi = self.soh_range
        if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
            raise SohModelError("pooled prior: soh_range must be two finite numbers, in order")

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature_names": list(self.feature_names),
            "weights": self.weights.tolist(),
            "sigma_one_cell": self.sigma_one_cell,
            "designs": list(self.designs),
            "soh_range": list(self.soh_range),
            "weight_spread": None if self.weight_spread is None else self.weight_spread.tolist(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PooledPrior:
        try:
            return cls(
                feature_names=tuple(str(n) for n in d["feature_names"]),
                weights=np.array(d["weights"], dtype=np.float64),
                sigma_one_cell=float(d["sigma_one_cell"]),
                designs=tuple(str(n) for n in d["designs"]),
                soh_range=_pair(d["soh_range"]),
                weight_spread=(
                    None
                    if d.get("weight_spread") is None
                    else np.array(d["weight_spread"], dtype=np.float64)
                ),
            )
        except SohModelError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise SohModelError(f"bad SoH model: pooled prior: {exc!r}") from None


_DESIGN_KEYS = frozenset(
    {
        "design", "rated_ah", "width_range_ms", "u_columns", "u_window", "feature_names",
        "feature_mean", "feature_scale", "projection", "centres", "gamma", "rbf_weights",
        "linear_weights", "intercept", "soh_clip", "sigma_knots", "sigma_values", "summary",
        "by_width", "row_correlation", "novelty_knots", "novelty_factors", "slope_covariance",
        "kernel",
    }
)  # fmt: skip


def same_width(width_ms: FloatArray, w: float | FloatArray) -> BoolArray:
    """Rows measured at pulse width w (ms; or one per row), up to float rounding."""
    out: BoolArray = np.abs(np.asarray(width_ms) - w) <= 1e-6 * w
    return out


def _pair(v: Any) -> tuple[float, float]:
    a, b = v
    return float(a), float(b)


def _optional_float(v: Any) -> float:
    return math.nan if v is None else float(v)


def _summary_from(d: Mapping[str, Any]) -> TrainingSummary:
    """JSON has no NaN: a measure that could not be taken is stored as null."""
    return TrainingSummary(
        kind=str(d["kind"]),
        n_rows=int(d["n_rows"]),
        n_cells=int(d["n_cells"]),
        soh_min=float(d["soh_min"]),
        soh_max=float(d["soh_max"]),
        cv_mae=_optional_float(d["cv_mae"]),
        cv_p95=_optional_float(d["cv_p95"]),
        cv_coverage=_optional_float(d["cv_coverage"]),
        gamma=float(d["gamma"]),
        alpha=float(d["alpha"]),
        n_centres=int(d["n_centres"]),
    )
