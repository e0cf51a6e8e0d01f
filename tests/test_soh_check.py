"""The passport claim check: carried-forward claim vs measurement."""

from __future__ import annotations

import numpy as np
import pytest

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
