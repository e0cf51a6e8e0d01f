"""State-of-health estimator: pulse features -> SoH (fraction of rated capacity) with a calibrated
standard deviation, per cell design, without the state of charge.

Per design the model is kernel ridge regression, approximated with a fixed number of centres so
that inference is a few matrix products per row: the engineered features (`features.py`) are
standardised and projected onto their principal axes (exact, it only drops null directions), then
prediction = RBF(similarity to the centres) @ w + linear terms + intercept, clipped to the SoH
range seen in training. The RBF width and ridge penalty are chosen by grouped cross-validation
inside the training cells (never the test cells); the out-of-fold residuals then calibrate the
standard deviation, as a function of the estimate, so that about 90 % of unseen cells' true
values fall within +/- 1.645 sigma. Below `compare_below` cells that sigma is checked by nested
grouped CV (the whole fit re-run without each fold of cells) and widened where the choice made
on the inner folds flattered itself.

A design measured at several pulse widths has one such model across all widths (log10 width is
an input) and, for each width with enough cells, a model of that width alone; a row is estimated
by its width's model where inner grouped CV on the training cells preferred it, else by the
all-widths model (also for widths not seen in training). Each row is estimated on its own.

A design with only a few calibration cells borrows strength from a pooled prior: a linear model on
per-design standardised features fitted across all other designs, towards which the new design's
coefficients are shrunk (`SohModel.calibrate_new_design`). Calibration cells of one SoH band are
held to it, and their sigma carries the slopes' own uncertainty, growing with a row's distance
from them.

Rows that cannot be estimated get an error code instead of a number: a design without a model,
required voltages missing, or inputs outside what the design's model saw in training.

The model file is JSON (never pickle) with a format name and version; it carries each design's
training summary and a digest of the feature definitions it was trained with.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, fields
from typing import Any

import numpy as np
import numpy.typing as npt

from passport.soh._base import (
    FEATURE_DIGEST,
    KERNEL_GAUSS,
    KERNELS,
    KIND_KERNEL,
    KIND_PRIOR,
    Z90,
    FitSettings,
    FloatArray,
    SohModelError,
    StrArray,
    _split,
    group_kfold,
)
from passport.soh._choose import _best_model
from passport.soh._infer import compile_model, predict_rows
from passport.soh._params import DesignModel, PooledPrior, TrainingSummary
from passport.soh._prior import _pooled_prior_from, fit_pooled_prior
from passport.soh.features import N_U

__all__ = [
    "ERR_MISSING",
    "ERR_NO_MODEL",
    "ERR_OUT_OF_RANGE",
    "FEATURE_DIGEST",
    "KIND_KERNEL",
    "KIND_PRIOR",
    "MODEL_FORMAT",
    "MODEL_VERSION",
    "Z90",
    "DesignModel",
    "FitSettings",
    "PooledPrior",
    "SohModel",
    "SohModelError",
    "TrainingSummary",
    "fit_pooled_prior",
    "group_kfold",
]

MODEL_FORMAT = "battery-passport/soh-model"
MODEL_VERSION = 2

ERR_NO_MODEL = "no-model"  # the design has no model
ERR_MISSING = "missing-features"  # a required U column, the rating or the pulse width is absent
ERR_OUT_OF_RANGE = "out-of-range"  # voltages, width or rating outside the design's training

# a row whose sigma is more than this times its design's `widest_sigma` is counted as unlike the
# training cells: out of fold on the dev file 1.2 % of rows (MAE 3.8 points, the others 2.0),
# with 0.2 / 0.5 mV of noise added to their voltages 5.5 / 45 % (docs/soh-accuracy.md)
FAR_SIGMA = 2.0

_CODES = np.array(["", ERR_OUT_OF_RANGE, ERR_MISSING, ERR_NO_MODEL], dtype=object)


# ---------------------------------------------------------------------------------------------
# the model


class SohModel:
    """Per-design SoH estimators plus the pooled prior for designs with few cells."""

    def __init__(
        self,
        models: Mapping[str, DesignModel],
        prior: PooledPrior | None = None,
        settings: FitSettings = FitSettings(),
    ) -> None:
        self.models: dict[str, DesignModel] = dict(sorted(models.items()))
        self.prior = prior
        self.settings = settings
        self._compiled = compile_model(self.models, settings.rating_tolerance)

    @property
    def designs(self) -> list[str]:
        return list(self.models)

    def widest_sigma(self, design: str) -> float:
        """The widest sigma the design's cross-validation gave a row it had seen the like of:
        the top of its sigma curve times the factor at its last novelty knot (per-width models
        included); a row far above it is unlike the training cells (`FAR_SIGMA`).

        NaN (no row is ever far) for a design without a model, and for a linear one (a new
        design calibrated from a few cells, held to the prior): it has no RBF centres to
        measure novelty by, and its sigma grows with the distance from its calibration cells
        through the slope term instead, which most of the design's other cells are far from
        (65-90 % of LFP-20Ah's clean rows from 3-12 calibration cells would count as far)."""
        own = self.models.get(design)
        if own is None or not len(own.centres):
            return math.nan
        return max(
            float(k.sigma_values.max()) * float(k.novelty_factors.max(initial=1.0))
            for k in (own, *own.by_width)
            if len(k.centres)
        )

    def far_from_training(
        self, design: npt.ArrayLike, sigma: npt.ArrayLike
    ) -> npt.NDArray[np.bool_]:
        """Per row: is its sigma over `FAR_SIGMA` times its design's `widest_sigma`? Such a row
        is unlike every training cell (noisy voltages, or a cell unlike the reference ones):
        its number says little. False for a NaN sigma (an error), a design without a model,
        and a linear one (`widest_sigma` is NaN)."""
        names = [str(d) for d in np.asarray(design, dtype=object).ravel().tolist()]
        sd = np.asarray(sigma, dtype=np.float64).ravel()
        if len(sd) != len(names):
            raise ValueError(
                f"far_from_training needs one sigma per design name ({len(sd)} and {len(names)})"
            )
        widest = {d: self.widest_sigma(d) for d in set(names)}
        limit = np.array([widest[d] for d in names], dtype=np.float64)
        with np.errstate(invalid="ignore"):
            return sd > FAR_SIGMA * limit

    def row_correlation(self, design: str) -> float:
        """The design's row correlation (how far `combine` narrows a cell's sigma); 1, no
        narrowing, for a design without a model."""
        own = self.models.get(design)
        return own.row_correlation if own is not None else 1.0

    # -- training ---------------------------------------------------------------------------

    @classmethod
    def fit(
        cls,
        design: npt.ArrayLike,
        U: FloatArray,
        rated_ah: FloatArray,
        width_ms: FloatArray,
        soh: FloatArray,
        groups: npt.ArrayLike,
        *,
        tests: npt.ArrayLike | None = None,
        settings: FitSettings = FitSettings(),
        on_progress: Callable[[int, int, str], None] | None = None,
    ) -> SohModel:
        """Train one model per design from reference cells with measured SoH (fractions).
        `groups` are physical cell ids: every internal CV splits by them. `tests` (optional)
        label the rows of one test, one cell at one state of charge: the row correlation is
        then measured within tests too, never used as an input. A design with fewer
        than `settings.compare_below` cells also gets a prior-shrunk model (the prior pooled
        from the other designs) and keeps whichever does better in grouped CV; below
        `settings.min_cells` cells, or 3 to `settings.compare_below` - 1 cells spanning less than
        `settings.narrow_span` of SoH, only the prior-shrunk one (for the latter with the
        slopes' own uncertainty in sigma). `on_progress(done, total, design)` is called before the
        first design and after each one."""
        by_design = _split(design, U, rated_ah, width_ms, soh, groups, tests)
        if not by_design:
            raise SohModelError("no usable training rows")
        n_cells = {name: len(np.unique(rows.groups)) for name, rows in by_design.items()}
        rich = sorted(name for name, n in n_cells.items() if n >= settings.min_cells)
        prior = None
        if len(rich) >= 2:
            prior = _pooled_prior_from({k: by_design[k] for k in rich}, settings)
        models: dict[str, DesignModel] = {}
        if on_progress is not None:
            on_progress(0, len(by_design), "")
        for name, rows in by_design.items():
            own_prior = None  # a prior that never saw this design, for an honest comparison
            others = [k for k in rich if k != name]
            if n_cells[name] < settings.compare_below and len(others) >= 2:
                own_prior = (
                    prior
                    if name not in rich
                    else _pooled_prior_from({k: by_design[k] for k in others}, settings)
                )
            models[name] = _best_model(name, rows, own_prior, settings, None)
            if on_progress is not None:
                on_progress(len(models), len(by_design), name)
        return cls(models, prior, settings)

    def calibrate_new_design(
        self,
        design: str,
        U: FloatArray,
        rated_ah: FloatArray,
        width_ms: FloatArray,
        soh: FloatArray,
        groups: npt.ArrayLike,
        *,
        tests: npt.ArrayLike | None = None,
        strength: float | None = None,
    ) -> SohModel:
        """A copy of this model with `design` calibrated from a few cells through the pooled
        prior: its coefficients shrink towards the pooled ones (strength picked by grouped CV
        from 3 cells on, else 1). From `settings.min_cells` cells on a kernel model is fitted
        too and whichever does better in grouped CV is kept, except for 3 to
        `settings.compare_below` - 1 cells spanning less than `settings.narrow_span` of SoH:
        those are held to the prior at its strongest strength, with the slopes' own uncertainty
        in sigma. Replaces a model of that name."""
        if self.prior is None:
            raise SohModelError("this model has no pooled prior (it was fitted on one design)")
        n = len(np.asarray(soh))
        by_design = _split(np.full(n, design), U, rated_ah, width_ms, soh, groups, tests)
        if design not in by_design:
            raise SohModelError(f"design {design!r}: no usable calibration rows")
        model = _best_model(design, by_design[design], self.prior, self.settings, strength)
        return SohModel({**self.models, design: model}, self.prior, self.settings)

    # -- inference --------------------------------------------------------------------------

    def predict(
        self,
        design: npt.ArrayLike,
        U: FloatArray,
        rated_ah: FloatArray,
        width_ms: FloatArray,
    ) -> tuple[FloatArray, FloatArray, StrArray]:
        """(soh, sigma, error) per row; soh and sigma are fractions, NaN where error != ""."""
        U = np.asarray(U, dtype=np.float64)
        design_a = np.asarray(design)
        n = len(design_a)
        if U.shape != (n, N_U):
            raise ValueError(f"U must have shape ({n}, {N_U}), not {U.shape}")
        rated = np.broadcast_to(np.asarray(rated_ah, dtype=np.float64), (n,))
        width = np.broadcast_to(np.asarray(width_ms, dtype=np.float64), (n,))
        soh, sigma, code = predict_rows(self._compiled, design_a, U, rated, width)
        return soh, sigma, _CODES[code]

    # -- persistence --------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": MODEL_FORMAT,
            "version": MODEL_VERSION,
            "feature_digest": FEATURE_DIGEST,
            "settings": _settings_dict(self.settings),
            "designs": {name: m.to_dict() for name, m in self.models.items()},
            "prior": None if self.prior is None else self.prior.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SohModel:
        """Raises SohModelError (a ValueError) for anything but a model this code can run."""
        if not isinstance(d, Mapping):
            raise SohModelError("not a SoH model: not a JSON object")
        if d.get("format") != MODEL_FORMAT:
            raise SohModelError(
                f"not a SoH model: format {d.get('format')!r}, expected {MODEL_FORMAT!r}"
            )
        if d.get("version") != MODEL_VERSION:
            raise SohModelError(
                f"SoH model version {d.get('version')!r} is not supported "
                f"(this software reads version {MODEL_VERSION})"
            )
        if d.get("feature_digest") != FEATURE_DIGEST:
            raise SohModelError("SoH model was trained with different feature definitions")
        given = d.get("settings")
        known = {f.name for f in fields(FitSettings)}
        unknown = sorted(map(str, set(given) - known)) if isinstance(given, Mapping) else []
        if unknown:  # a newer file: refused by name rather than as a TypeError
            raise SohModelError(
                f"bad SoH model: settings this software does not know: "
                f"{', '.join(unknown)} (a model file from a newer version?)"
            )
        try:
            raw: dict[str, Any] = dict(d["settings"])
            raw.setdefault("kernel", KERNEL_GAUSS)  # a file written before it existed
            kwargs: dict[str, Any] = {
                k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()
            }
            settings = FitSettings(**kwargs)
            designs = dict(d["designs"])
            tolerance = float(settings.rating_tolerance)
        except (KeyError, TypeError, ValueError) as exc:
            raise SohModelError(f"bad SoH model: settings or designs: {exc!r}") from None
        if not (math.isfinite(tolerance) and 0.0 <= tolerance < 1.0):
            raise SohModelError("bad SoH model: settings: rating_tolerance must be in [0, 1)")
        span = settings.narrow_span
        if isinstance(span, bool) or not isinstance(span, int | float) or not 0.0 <= span <= 1.0:
            raise SohModelError("bad SoH model: settings: narrow_span must be a number in [0, 1]")
        if not isinstance(settings.kernel, str) or settings.kernel not in KERNELS:
            raise SohModelError(f"bad SoH model: settings: kernel must be one of {KERNELS}")
        for name in ("n_centres", "width_centres"):  # used when a new design is calibrated
            count = getattr(settings, name)
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise SohModelError(f"bad SoH model: settings: {name} must be a whole number >= 1")
        models = {str(k): DesignModel.from_dict(v) for k, v in designs.items()}
        for k, m in models.items():
            if m.design != k:
                raise SohModelError(f"bad SoH model: entry {k!r} holds design {m.design!r}")
        prior = None if d.get("prior") is None else PooledPrior.from_dict(d["prior"])
        return cls(models, prior, settings)

    def to_json(self, path: str | os.PathLike[str] | None = None) -> str:
        """The model as JSON text; also written to `path` (atomically: a temporary file in the
        same directory, then a rename) when one is given."""
        text = json.dumps(self.to_dict(), allow_nan=False, separators=(",", ":"))
        if path is not None:
            tmp = f"{os.fspath(path)}.tmp"
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.replace(tmp, path)
        return text

    @classmethod
    def from_json(cls, source: str | os.PathLike[str]) -> SohModel:
        """From JSON text (a str starting with "{") or from a file path."""
        if isinstance(source, str) and source.lstrip().startswith("{"):
            text, label = source, "model"
        else:
            with open(source, encoding="utf-8") as fh:
                text, label = fh.read(), os.fspath(source)
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SohModelError(f"{label}: not JSON: {exc}") from None
        return cls.from_dict(data)


def _settings_dict(s: FitSettings) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(s).items()}
