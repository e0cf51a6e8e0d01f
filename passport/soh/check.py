"""Is the SoH a passport claims believable, given what the intake line just measured?

The passport's last signed SoH (with its stated uncertainty) is carried forward to today: it can
only have fallen since, by wear (full equivalent cycles) and calendar ageing, neither known
exactly, so both add to its uncertainty. The discrepancy score is

    z = (claim carried forward - measurement) / sqrt(sigma_claim^2 + sigma_drift^2 + sigma_meas^2)

A claim is flagged as overstated when z > threshold (3 by default). The posterior SoH is the
precision-weighted combination of the carried-forward claim and the measurement, or the
measurement alone for a flagged claim (it is not to be trusted). Vectorised over arrays; all
SoH values are fractions (1.0 = rated capacity).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

DEFAULT_THRESHOLD = 3.0
DEFAULT_CLAIM_SIGMA = 0.02  # a claim without a stated uncertainty: a BMS estimate, ~2 points


@dataclass(frozen=True, slots=True)
class Ageing:
    """Expected loss since the claim, and how unsure we are of it (fractions)."""

    per_kfec: float = 0.05  # 5 points per 1000 full equivalent cycles
    per_kfec_sigma: float = 0.05
    per_year: float = 0.01  # calendar ageing
    per_year_sigma: float = 0.01


@dataclass(frozen=True, slots=True)
class CheckResult:
    posterior: FloatArray
    posterior_sigma: FloatArray
    z: FloatArray  # NaN where there is no claim
    flagged: BoolArray
    expected: FloatArray  # the claim carried forward to the measurement


def check_claims(
    measured: FloatArray,
    measured_sigma: FloatArray,
    claimed: FloatArray,
    claimed_sigma: FloatArray | None = None,
    fec_since: FloatArray | None = None,
    days_since: FloatArray | None = None,
    *,
    ageing: Ageing = Ageing(),
    threshold: float = DEFAULT_THRESHOLD,
) -> CheckResult:
    """Combine claims with measurements; NaN claims pass the measurement through unflagged."""
    # the formulas of the module docstring, with each intermediate computed once and updated
    # in place (an intake chunk is 65,536 rows: allocations cost as much as the arithmetic)
    measured = np.asarray(measured, dtype=np.float64)
    n = measured.shape[0]
    claimed = np.asarray(claimed, dtype=np.float64)
    sigma_c = _or(claimed_sigma, n, DEFAULT_CLAIM_SIGMA)
    unusable = ~(sigma_c > 0)  # NaN or not positive
    if unusable.any():
        sigma_c = np.where(unusable, DEFAULT_CLAIM_SIGMA, sigma_c)
    kfec = _elapsed(fec_since, n, 1000.0)
    years = _elapsed(days_since, n, 365.25)
    drift = ageing.per_kfec * kfec
    drift += ageing.per_year * years
    prior_var = ageing.per_kfec_sigma * kfec
    prior_var *= prior_var
    calendar = ageing.per_year_sigma * years
    calendar *= calendar
    prior_var += calendar  # the drift's variance
    expected = claimed - drift
    prior_var += sigma_c * sigma_c
    meas_var = np.asarray(measured_sigma, dtype=np.float64) ** 2
    total_var = prior_var + meas_var
    gap = expected - measured
    z = gap / np.sqrt(total_var)  # NaN where there is no claim
    has_claim = claimed == claimed  # not NaN
    flagged = z > threshold  # False where z is NaN
    combine = has_claim & ~flagged
    weight = np.where(combine, meas_var / total_var, 0.0)
    posterior = np.where(combine, measured + weight * gap, measured)
    posterior_sigma = np.where(
        combine, np.sqrt(prior_var * meas_var / total_var), np.sqrt(meas_var)
    )
    return CheckResult(posterior, posterior_sigma, z, flagged, expected)


def _elapsed(values: FloatArray | None, n: int, unit: float) -> FloatArray:
    """Cycles or days since the claim in thousands or years; missing or negative: none."""
    out = np.fmax(_or(values, n, 0.0), 0.0)  # NaN -> 0
    out /= unit
    if np.isinf(out).any():  # as before: inf -> the largest float (rare: a copy)
        out = np.nan_to_num(out)
    return out


def _or(values: FloatArray | None, n: int, default: float) -> FloatArray:
    if values is None:
        return np.full(n, default)
    return np.asarray(values, dtype=np.float64)
