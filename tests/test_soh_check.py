"""The passport claim check: carried-forward claim vs measurement."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from passport.soh.check import Ageing, check_claims


def test_an_honest_claim_is_not_flagged_and_sharpens_the_estimate() -> None:
    result = check_claims(np.array([0.85]), np.array([0.02]), np.array([0.86]), np.array([0.01]))
    assert not result.flagged[0]
    assert abs(result.z[0]) < 1
    assert 0.85 < result.posterior[0] < 0.86
    assert result.posterior_sigma[0] < 0.01  # two independent estimates beat either


def test_an_overstated_claim_is_flagged_and_ignored() -> None:
    result = check_claims(np.array([0.80]), np.array([0.01]), np.array([0.90]), np.array([0.01]))
    assert result.flagged[0]
    assert result.z[0] == pytest.approx(0.10 / np.hypot(0.01, 0.01))
    assert result.posterior[0] == 0.80
    assert result.posterior_sigma[0] == pytest.approx(0.01)


def test_ageing_since_the_claim_explains_a_lower_measurement() -> None:
    """2000 cycles since a 90 % claim: 80 % today is what wear predicts, not a lie."""
    measured, sigma, claim = np.array([0.80]), np.array([0.01]), np.array([0.90])
    aged = check_claims(measured, sigma, claim, np.array([0.01]), np.array([2000.0]))
    assert not aged.flagged[0]
    assert aged.expected[0] == pytest.approx(0.80)
    fresh = check_claims(measured, sigma, claim, np.array([0.01]), np.array([0.0]))
    assert fresh.flagged[0]


def test_an_understated_claim_is_not_flagged() -> None:
    result = check_claims(np.array([0.95]), np.array([0.01]), np.array([0.70]))
    assert not result.flagged[0]
    assert result.z[0] < -3


def test_no_claim_passes_the_measurement_through() -> None:
    result = check_claims(np.array([0.9, 0.8]), np.array([0.02, 0.03]), np.array([np.nan, 0.8]))
    assert np.isnan(result.z[0])
    assert not result.flagged[0]
    assert result.posterior[0] == 0.9
    assert result.posterior_sigma[0] == pytest.approx(0.02)


def test_threshold_and_default_claim_sigma() -> None:
    measured, sigma, claim = np.array([0.80]), np.array([0.01]), np.array([0.85])
    z = check_claims(measured, sigma, claim).z[0]  # no sigma given: 2 points assumed
    assert z == pytest.approx(0.05 / np.hypot(0.02, 0.01))
    assert check_claims(measured, sigma, claim, threshold=z - 0.01).flagged[0]
    assert not check_claims(measured, sigma, claim, threshold=z + 0.01).flagged[0]


def test_calendar_ageing_counts_too() -> None:
    ageing = Ageing(per_kfec=0.0, per_kfec_sigma=0.0, per_year=0.02, per_year_sigma=0.0)
    result = check_claims(
        np.array([0.86]), np.array([0.01]), np.array([0.90]), np.array([0.005]),
        days_since=np.array([730.5]), ageing=ageing,
    )  # fmt: skip
    assert result.expected[0] == pytest.approx(0.86)
    assert not result.flagged[0]


def plain_check(
    measured: np.ndarray,
    measured_sigma: np.ndarray,
    claimed: np.ndarray,
    claimed_sigma: np.ndarray,
    fec_since: np.ndarray,
    days_since: np.ndarray,
    ageing: Ageing = Ageing(),
    threshold: float = 3.0,
) -> tuple[np.ndarray, ...]:
    """The module docstring's formulas, written out plainly (check_claims computes them with
    fewer passes and must give the same bits)."""
    sigma_c = np.where(np.isnan(claimed_sigma) | (claimed_sigma <= 0), 0.02, claimed_sigma)
    kfec = np.nan_to_num(np.maximum(fec_since, 0.0) / 1000.0)
    years = np.nan_to_num(np.maximum(days_since, 0.0) / 365.25)
    drift = ageing.per_kfec * kfec + ageing.per_year * years
    drift_var = (ageing.per_kfec_sigma * kfec) ** 2 + (ageing.per_year_sigma * years) ** 2
    expected = claimed - drift
    prior_var = sigma_c**2 + drift_var
    meas_var = measured_sigma**2
    z = (expected - measured) / np.sqrt(prior_var + meas_var)
    has_claim = ~np.isnan(claimed)
    flagged = has_claim & (z > threshold)
    combine = has_claim & ~flagged
    weight = np.where(combine, meas_var / (prior_var + meas_var), 0.0)
    posterior = np.where(combine, measured + weight * (expected - measured), measured)
    posterior_sigma = np.where(
        combine, np.sqrt(prior_var * meas_var / (prior_var + meas_var)), np.sqrt(meas_var)
    )
    return posterior, posterior_sigma, np.where(has_claim, z, np.nan), flagged, expected


ODD = [np.nan, np.inf, -np.inf, 0.0, -0.0, -1.0, 1e-300, 1e300]


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 40))
def test_the_check_gives_the_plain_formulas_bit_for_bit(seed: int, n: int) -> None:
    rng = np.random.default_rng(seed)

    def column(centre: float, spread: float) -> np.ndarray:
        v = centre + spread * rng.standard_normal(n)
        odd = rng.random(n) < 0.2  # NaN, infinities, zeros, negatives and extremes mixed in
        v[odd] = rng.choice(ODD, int(odd.sum()))
        return v

    args = (
        column(0.85, 0.1), np.abs(column(0.02, 0.01)), column(0.87, 0.1), column(0.01, 0.01),
        column(200.0, 300.0), column(100.0, 300.0),
    )  # fmt: skip
    with np.errstate(all="ignore"):
        got = check_claims(*args)
        want = plain_check(*args)
    names = ["posterior", "sigma", "z", "flagged", "expected"]
    for name, a, b in zip(names, got_fields(got), want, strict=True):
        assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), name


def got_fields(r: object) -> list[np.ndarray]:
    return [getattr(r, f) for f in ("posterior", "posterior_sigma", "z", "flagged", "expected")]


def test_missing_elapsed_counts_as_none_and_a_bad_claim_sigma_as_the_default() -> None:
    m, s, c = np.array([0.8, 0.8]), np.array([0.01, 0.01]), np.array([0.9, 0.9])
    bare = check_claims(m, s, c)
    given = check_claims(m, s, c, np.array([np.nan, -1.0]), np.zeros(2), np.zeros(2))
    for a, b in zip(got_fields(bare), got_fields(given), strict=True):
        assert np.array_equal(a, b)
    assert bare.z[0] == pytest.approx(0.1 / np.hypot(0.02, 0.01))


def test_scalar_ages_broadcast_as_the_plain_formulas_do() -> None:
    m, s, c = np.array([0.8, 0.9]), np.array([0.01, 0.02]), np.array([0.9, 0.95])
    for fec, days in [(np.inf, 10.0), (np.nan, -5.0), (300.0, np.inf)]:
        with np.errstate(all="ignore"):  # the largest float squared overflows, as before
            got = check_claims(m, s, c, np.array([0.01, 0.01]), fec, days)  # type: ignore[arg-type]
            want = plain_check(m, s, c, np.array([0.01, 0.01]), np.float64(fec), np.float64(days))
        for a, b in zip(got_fields(got), want, strict=True):
            assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
