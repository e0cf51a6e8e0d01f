"""A calibration held to the pooled prior (cells of one SoH band) carries its slopes' own
uncertainty in sigma (`DesignModel.slope_covariance`): sigma^2 gains e S e^T, which grows with
a row's distance from the calibration rows. Its out-of-fold sigma only sees errors inside the
band, and said nothing of how far the slopes are off outside it."""

from __future__ import annotations

import copy
import math
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from test_soh_band import _adjacent, _band, _calibrated, _mae_and_coverage
from test_soh_model import Table
from test_soh_nested import NEW, SETTINGS, _args

from passport.soh import _prior
from passport.soh._choose import _widened
from passport.soh.model import (
    DesignModel,
    PooledPrior,
    SohModel,
    SohModelError,
    fit_pooled_prior,
)


@pytest.fixture(scope="module")
def prior(soh_new_prior: PooledPrior) -> PooledPrior:
    return soh_new_prior


@pytest.fixture(scope="module")
def band(soh_dev: Table) -> tuple[Table, Table]:
    return _band(soh_dev, 0.55, 0.65)


@pytest.fixture(scope="module")
def held(prior: PooledPrior, band: tuple[Table, Table]) -> SohModel:
    return _calibrated(prior, SETTINGS, band[0])


@pytest.fixture(scope="module")
def without(prior: PooledPrior, band: tuple[Table, Table]) -> SohModel:
    """The same calibration from a prior that does not know its weight spread (an older file)."""
    return _calibrated(replace(prior, weight_spread=None), SETTINGS, band[0])


def test_the_prior_knows_how_far_designs_sit_from_it(prior: PooledPrior) -> None:
    assert prior.weight_spread is not None
    assert prior.weight_spread.shape == prior.weights.shape
    assert (prior.weight_spread > 1e-6).all()


def test_identical_designs_have_no_spread(soh_dev: Table) -> None:
    """Each reference design's own weights against the pooled weights of the others: three
    copies of one design agree exactly, so the spread is at its floor."""
    one = soh_dev.rows(soh_dev.design == NEW)
    n = len(one.soh)
    copies = [
        replace(one, design=np.full(n, f"copy-{i}"), group=np.char.add(f"{i}/", one.group))
        for i in range(3)
    ]
    stacked = Table(
        *(np.concatenate([getattr(c, f) for c in copies]) for f in Table.__dataclass_fields__)
    )
    spread = fit_pooled_prior(stacked.design, *_args(stacked), settings=SETTINGS).weight_spread
    assert spread is not None
    assert spread.max() < 1e-10


def test_a_band_calibration_carries_a_slope_covariance(held: SohModel) -> None:
    m = held.models[NEW]
    r = len(m.linear_weights)
    assert m.slope_covariance.shape == (r, r)
    assert np.allclose(m.slope_covariance, m.slope_covariance.T)
    assert np.linalg.eigvalsh(m.slope_covariance).min() > 0


def test_it_covers_the_design_s_other_cells(
    held: SohModel, without: SohModel, band: tuple[Table, Table]
) -> None:
    """LMO-10Ah cells of 0.55-0.65: the other cells were covered 0.26 without the term, 0.65
    with it; the estimates themselves do not change."""
    rest = band[1]
    mae_held, cov_held = _mae_and_coverage(held, rest)
    mae_without, cov_without = _mae_and_coverage(without, rest)
    assert mae_held == pytest.approx(mae_without, abs=1e-12)
    assert cov_held > cov_without + 0.2
    assert without.models[NEW].slope_covariance.shape == (0, 0)


def test_more_cells_of_the_band_do_not_make_the_slopes_certain(
    prior: PooledPrior, soh_dev: Table, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eight LMO-10Ah cells adjacent in SoH (3.4 points): the posterior alone narrows with
    every cell of the band and covered the design's other cells 0.59; with the band's
    discrepancy (a share of the weight spread that no number of band cells shrinks) 0.73."""
    cal, rest = _adjacent(soh_dev, slice(20, 28))
    with_discrepancy = _calibrated(prior, SETTINGS, cal)
    monkeypatch.setattr(_prior, "BAND_DISCREPANCY", 0.0)
    posterior_only = _calibrated(prior, SETTINGS, cal)
    mae, cov = _mae_and_coverage(with_discrepancy, rest)
    mae_posterior, cov_posterior = _mae_and_coverage(posterior_only, rest)
    assert mae == pytest.approx(mae_posterior, abs=1e-12)
    assert cov >= 0.7 > cov_posterior
    S = with_discrepancy.models[NEW].slope_covariance
    assert S.shape == posterior_only.models[NEW].slope_covariance.shape
    assert (np.diag(S) > np.diag(posterior_only.models[NEW].slope_covariance)).all()


def test_sigma_grows_away_from_the_band(
    held: SohModel, without: SohModel, band: tuple[Table, Table]
) -> None:
    cal, rest = band
    s_cal = cal.predict(held)[1]
    s_rest, s_rest_without = rest.predict(held)[1], rest.predict(without)[1]
    ok = np.isfinite(s_rest)
    assert (s_rest[ok] >= s_rest_without[ok] - 1e-6).all()  # never narrower
    far = ok & (rest.soh > 0.85)
    assert np.median(s_rest[far]) > 2 * np.median(s_cal)


def test_the_fast_path_computes_the_defining_formula(held: SohModel, soh_dev: Table) -> None:
    new = soh_dev.rows(soh_dev.design == NEW)
    soh, sigma, err = new.predict(held)
    ok = err == ""
    ref_soh, ref_sigma = held.models[NEW].reference_estimate(new.U, new.rated_ah, new.width_ms)
    assert ok.mean() > 0.9
    assert np.abs(soh[ok] - ref_soh[ok]).max() < 1e-4
    assert np.abs(sigma[ok] - ref_sigma[ok]).max() < 1e-4 * max(1.0, float(ref_sigma.max()))


def test_widening_scales_the_whole_sigma(held: SohModel, soh_dev: Table) -> None:
    """The nested check's factor multiplies sigma; the term is a variance, so S by factor^2."""
    m = held.models[NEW]
    wide = SohModel({NEW: _widened(m, 2.0, m.summary)}, held.prior, SETTINGS)
    new = soh_dev.rows(soh_dev.design == NEW)
    sigma, wide_sigma = new.predict(held)[1], new.predict(wide)[1]
    ok = np.isfinite(sigma)
    assert np.allclose(wide_sigma[ok], 2.0 * sigma[ok], rtol=1e-5)


def test_cells_across_the_range_have_no_slope_term(soh_dev: Table, prior: PooledPrior) -> None:
    new = soh_dev.rows(soh_dev.design == NEW)
    cal = new.rows(np.isin(new.group, np.unique(new.group)[::9]))
    assert _calibrated(prior, SETTINGS, cal).models[NEW].slope_covariance.shape == (0, 0)


def test_round_trip_and_older_files(held: SohModel, soh_dev: Table) -> None:
    new = soh_dev.rows(soh_dev.design == NEW)
    again = SohModel.from_json(held.to_json())
    assert np.array_equal(again.models[NEW].slope_covariance, held.models[NEW].slope_covariance)
    assert again.prior is not None
    assert held.prior is not None
    assert np.array_equal(again.prior.weight_spread, held.prior.weight_spread)  # type: ignore[arg-type]
    assert np.array_equal(new.predict(again)[1], new.predict(held)[1], equal_nan=True)
    d = held.to_dict()  # as written before the term existed
    del d["designs"][NEW]["slope_covariance"]
    del d["prior"]["weight_spread"]
    old = SohModel.from_dict(d)
    assert old.prior is not None
    assert old.prior.weight_spread is None
    sigma = new.predict(old)[1]  # no slope term: the linear model's one sigma
    assert np.allclose(sigma[np.isfinite(sigma)], held.models[NEW].sigma_values[0], rtol=1e-12)


def _bad_covariance(case: str, r: int) -> np.ndarray:
    m = np.eye(r if case != "wrong-shape" else r + 1)
    if case == "not-symmetric":
        m[0, 1] = 0.5
    elif case == "negative-eigenvalue":
        m[0, 0] = -1.0
    elif case == "nan":
        m[1, 1] = math.nan
    return m


@pytest.mark.parametrize(
    ("case", "why"),
    [
        ("not-symmetric", "symmetric"),
        ("negative-eigenvalue", "positive semi-definite"),
        ("nan", "non-finite"),
        ("wrong-shape", "shape"),
    ],
)
def test_a_bad_slope_covariance_is_refused_by_name(held: SohModel, case: str, why: str) -> None:
    d = copy.deepcopy(held.models[NEW].to_dict())
    d["slope_covariance"] = _bad_covariance(case, len(d["linear_weights"])).tolist()
    with pytest.raises(SohModelError, match=f"slope_covariance.*{why}"):
        DesignModel.from_dict(d)


def test_a_slope_covariance_on_a_kernel_model_is_refused(soh_dev: Table) -> None:
    """Only the linear model's e is what the covariance was computed on."""
    new = soh_dev.rows(soh_dev.design == NEW)
    d = copy.deepcopy(new.rows(new.soh > 0).fit().models[NEW].to_dict())
    assert d["centres"]
    d["slope_covariance"] = np.eye(len(d["linear_weights"])).tolist()
    with pytest.raises(SohModelError, match=r"slope_covariance.*linear models only"):
        DesignModel.from_dict(d)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("neg", id="negative"),
        pytest.param("zero", id="zero"),
        pytest.param("short", id="wrong-length"),
        pytest.param("nan", id="nan"),
        pytest.param("text", id="not-numbers"),
    ],
)
def test_a_bad_weight_spread_is_refused_by_name(prior: PooledPrior, value: str) -> None:
    d = prior.to_dict()
    spread = list(d["weight_spread"])
    bad: Any = {
        "neg": [-1.0, *spread[1:]],
        "zero": [0.0, *spread[1:]],
        "short": spread[1:],
        "nan": [math.nan, *spread[1:]],
        "text": ["x", *spread[1:]],
    }[value]
    d["weight_spread"] = bad
    with pytest.raises(SohModelError, match=r"weight_spread|pooled prior"):
        PooledPrior.from_dict(d)


def test_a_slope_covariance_beyond_float32_is_refused(held: SohModel) -> None:
    """Finite in the file, infinite in the float32 path: refused at load, not a warning and an
    infinite sigma."""
    d = copy.deepcopy(held.to_dict())
    r = len(d["designs"][NEW]["linear_weights"])
    d["designs"][NEW]["slope_covariance"] = (np.eye(r) * 1e300).tolist()
    with pytest.raises(SohModelError, match="float32"):
        SohModel.from_dict(d)
