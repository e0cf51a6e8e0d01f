"""Estimates on arrays: every row of any designs -> SoH, sigma, ohmic resistance, error."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from passport.soh.features import ohmic_resistance
from passport.soh.model import SohModel

FloatArray = npt.NDArray[np.float64]
StrArray = npt.NDArray[np.object_]


@dataclass(frozen=True, slots=True)
class Estimate:
    """Per row: SoH (fraction) and its standard deviation, ohmic resistance (ohm), and the
    error code ("" when fine; then soh and soh_sigma are NaN)."""

    soh: FloatArray
    soh_sigma: FloatArray
    resistance_ohm: FloatArray
    error: StrArray


def estimate(
    model: SohModel,
    design: StrArray | list[str],
    U: FloatArray,
    rated_ah: FloatArray,
    width_ms: FloatArray,
) -> Estimate:
    """Estimate every row. No state of charge needed; rows of different designs may mix."""
    # a numpy array keeps its dtype (fixed-width strings are matched vectorised), a list
    # becomes an object array (converting it to fixed-width strings would cost more)
    names = design if isinstance(design, np.ndarray) else np.asarray(design, dtype=object)
    soh, sigma, error = model.predict(
        names, np.asarray(U), np.asarray(rated_ah), np.asarray(width_ms)
    )
    return Estimate(soh, sigma, ohmic_resistance(U, rated_ah), error)


def resistance_growth(resistance_ohm: FloatArray, initial_uohm: FloatArray) -> FloatArray:
    """Measured ohmic resistance / the birth record's initial resistance (micro-ohm); NaN where
    the initial value is unknown or not positive. The birth record states how it was measured:
    compare like with like (a DC pulse step is not a 1 kHz AC value)."""
    initial = np.asarray(initial_uohm, dtype=np.float64) * 1e-6
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(initial > 0, np.asarray(resistance_ohm) / initial, np.nan)
