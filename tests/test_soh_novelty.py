"""Sigma widened for rows unlike the training rows: the novelty measure, the widening curve
fitted from inner out-of-fold errors, both inference paths, and the model file fields."""

from __future__ import annotations

import copy
import itertools
import json
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from passport.soh._base import _novelty, novelty_factor
from passport.soh._sigma import _increasing, _novelty_curve
from passport.soh.model import Z90, SohModel, SohModelError
from passport.soh.synthetic import Ecm, Rows, aged_cells, pulse_rows

DESIGN = "SYN-5Ah"
FIELDS = ("capacity_ah", "r0", "r1", "tau1", "r2", "tau2", "soc0")


def mixed_cells(
    n_usual: int, n_odd: int, rng: np.random.Generator
) -> tuple[np.ndarray, Rows, np.ndarray]:
    """Cells of one design, a few of them odd: their ohmic resistance falls as they age (the
    usual ones' grows) and their fast polarisation is three times slower. (truth, rows, odd)."""
    t_usual, t_odd = rng.uniform(0.6, 1.02, n_usual), rng.uniform(0.6, 1.02, n_odd)
    usual = aged_cells(t_usual, 5.0, rng)
    odd = aged_cells(t_odd, 5.0, rng, r0_growth=-0.4)
    odd = replace(odd, tau1=odd.tau1 * 3.0)
    ecm = Ecm(*(np.concatenate([getattr(usual, f), getattr(odd, f)]) for f in FIELDS))
    flags = np.r_[np.zeros(n_usual, dtype=bool), np.ones(n_odd, dtype=bool)]
    return np.concatenate([t_usual, t_odd]), pulse_rows(ecm, 5.0), flags


def fit(truth: np.ndarray, rows: Rows) -> SohModel:
    n = len(truth)
    names = np.array([f"c{i}" for i in range(n)], dtype=object)
    design = np.full(n, DESIGN, dtype=object)
    return SohModel.fit(design, rows.U, rows.rated_ah, rows.width_ms, truth, names)


def without_widening(model: SohModel) -> SohModel:
    m = model.models[DESIGN]
    plain = replace(m, novelty_knots=np.zeros(0), novelty_factors=np.zeros(0))
    return SohModel({DESIGN: plain}, model.prior, model.settings)


def predict(model: SohModel, rows: Rows) -> tuple[np.ndarray, np.ndarray]:
    design = np.full(len(rows.U), DESIGN, dtype=object)
    soh, sigma, err = model.predict(design, rows.U, rows.rated_ah, rows.width_ms)
    assert (err == "").all()
    return soh, sigma


@pytest.fixture(scope="module")
def mixed() -> tuple[SohModel, np.ndarray, Rows, np.ndarray]:
    """A model of 100 usual and 12 odd cells, and 200 usual plus 40 odd cells it never saw."""
    truth, rows, _ = mixed_cells(100, 12, np.random.default_rng(5))
    fresh_truth, fresh, odd = mixed_cells(200, 40, np.random.default_rng(6))
    return fit(truth, rows), fresh_truth, fresh, odd


# -- the measure and the curve ------------------------------------------------------------------


def test_novelty_is_gamma_times_the_squared_distance_to_the_nearest_centre() -> None:
    rng = np.random.default_rng(0)
    E, C = rng.normal(size=(50, 4)), rng.normal(size=(7, 4))
    brute = np.array([min(float(((e - c) ** 2).sum()) for c in C) for e in E])
    assert np.allclose(_novelty(E, C, 0.3), 0.3 * brute)
    assert np.allclose(_novelty(C, C, 0.3), 0.0, atol=1e-12)  # a centre is not novel


KNOTS, FACTORS = np.array([0.1, 0.3, 0.5, 0.9]), np.array([1.0, 1.1, 1.1, 1.4])

# (name, novelty, factor): the curve between its knots, held at either end below the first,
# and past the last knot its factor times novelty / last knot
FACTOR_CASES = [
    ("a centre", 0.0, 1.0),
    ("below the first knot", 0.05, 1.0),
    ("on a knot", 0.3, 1.1),
    ("between knots", 0.7, 1.25),
    ("on the last knot", 0.9, 1.4),
    ("twice the last knot", 1.8, 2.8),
    ("ten times", 9.0, 14.0),
]


@pytest.mark.parametrize(
    ("novelty", "want"), [c[1:] for c in FACTOR_CASES], ids=[c[0] for c in FACTOR_CASES]
)
def test_the_factor_follows_the_curve_and_grows_past_its_last_knot(
    novelty: float, want: float
) -> None:
    got = novelty_factor(np.array([novelty]), KNOTS, FACTORS)
    assert got[0] == pytest.approx(want)


@given(st.lists(st.floats(0.0, 1e6), min_size=2, max_size=50))
def test_the_factor_never_falls_as_novelty_grows(values: list[float]) -> None:
    x = np.sort(np.array(values))
    f = novelty_factor(x, KNOTS, FACTORS)
    assert (np.diff(f) >= -1e-12 * f[1:]).all()
    assert (f >= 1.0).all()


def test_a_factor_of_one_grows_too_and_nan_stays_nan() -> None:
    """A design whose out-of-fold errors did not grow with novelty still widens past what the
    cross-validation saw; a row with no novelty (hostile input, refused anyway) gets none."""
    flat = np.ones(4)
    got = novelty_factor(np.array([0.5, 1.8, np.nan]), KNOTS, flat)
    assert got[:2].tolist() == pytest.approx([1.0, 2.0])
    assert np.isnan(got[2])


def test_a_last_knot_at_zero_holds_the_curve_flat() -> None:
    got = novelty_factor(np.array([0.0, 5.0]), np.zeros(4), np.array([1.0, 1.0, 1.2, 1.3]))
    assert got.tolist() == pytest.approx([1.3, 1.3])


INCREASING_CASES = [
    ("already-increasing", [1.0, 2.0, 3.0], [1.0, 1.0, 1.0], [1.0, 2.0, 3.0]),
    ("one-violation-pooled", [1.0, 3.0, 2.0, 4.0], [1.0, 1.0, 1.0, 1.0], [1.0, 2.5, 2.5, 4.0]),
    ("weights-set-the-pool", [3.0, 1.0], [1.0, 3.0], [1.5, 1.5]),
    ("all-decreasing-one-mean", [4.0, 3.0, 2.0], [1.0, 1.0, 2.0], [2.75, 2.75, 2.75]),
    ("a-late-drop-pulls-back", [1.0, 2.0, 3.0, 0.0], [1.0, 1.0, 1.0, 3.0], [1.0, 1.0, 1.0, 1.0]),
]


@pytest.mark.parametrize(
    ("y", "w", "want"),
    [c[1:] for c in INCREASING_CASES],
    ids=[c[0] for c in INCREASING_CASES],
)
def test_increasing_is_the_weighted_monotone_fit(
    y: list[float], w: list[float], want: list[float]
) -> None:
    got = _increasing(np.array(y), np.array(w))
    assert np.allclose(got, want)
    assert np.isclose(got @ np.array(w), np.array(y) @ np.array(w))  # weighted mean kept


@given(
    st.lists(
        st.tuples(st.floats(-1e3, 1e3, allow_nan=False), st.floats(1e-3, 1e3, allow_nan=False)),
        min_size=1,
        max_size=12,
    )
)
def test_increasing_is_monotone_keeps_the_weighted_mean_and_fixes_sorted_input(
    pairs: list[tuple[float, float]],
) -> None:
    y, w = (np.array(v) for v in zip(*pairs, strict=True))
    got = _increasing(y, w)
    assert got.shape == y.shape
    assert np.all(np.diff(got) >= -1e-9 * (1 + np.abs(got[1:])))
    assert got @ w == pytest.approx(y @ w, rel=1e-9, abs=1e-6)
    assert np.allclose(_increasing(got, w), got)  # already monotone: unchanged
    # no monotone fit is closer to y in weighted squares: not even the constant weighted mean
    flat = np.full_like(y, (y @ w) / w.sum())
    assert (got - y) ** 2 @ w <= (flat - y) ** 2 @ w * (1 + 1e-9) + 1e-9


def _curve_input(grow: float, n: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Novelty uniform in [0, 1); |z| = 1, times `grow` for the most novel tenth."""
    rng = np.random.default_rng(seed)
    novelty = rng.uniform(0.0, 1.0, n)
    z = np.where(novelty >= 0.9, grow, 1.0) * rng.choice([-1.0, 1.0], n)
    return novelty, z


def test_errors_that_grow_with_novelty_widen_the_most_novel_rows() -> None:
    novelty, z = _curve_input(grow=3.0)
    knots, factors = _novelty_curve(novelty, z, 50, (0.5, 0.75, 0.9), 10)
    assert len(knots) == 4
    assert np.all(np.diff(knots) > 0)
    assert factors[0] == factors[1] == 1.0  # the usual rows keep their sigma
    assert np.all(np.diff(factors) >= 0)
    # mean |z| is 1.2 overall and 3 in the top bin: 2.5, shrunk half-way towards 1 (the prior
    # is as strong as the smallest bin, which is the top one)
    assert factors[-1] == pytest.approx(1.0 + 0.5 * (3.0 / 1.2 - 1.0), rel=0.02)
    assert knots[-1] == pytest.approx(0.95, abs=0.02)  # the top bin's median novelty


# (id, data, cells, quantiles, min_cells, knots): no bin's errors stand out, so every factor is
# 1, but the knots stay, so that sigma still grows past the last one (the top bin's median
# novelty): a noisy row far beyond every training row is off by 11-25 points however clean the
# design's own errors were
CURVE_FLAT_CASES = [
    ("errors-unrelated-to-novelty", _curve_input(grow=1.0), 50, (0.5, 0.75, 0.9), 10, 4),
    ("novel-rows-err-less", _curve_input(grow=0.5), 50, (0.5, 0.75, 0.9), 10, 4),
    ("too-few-cells", _curve_input(grow=3.0), 9, (0.5, 0.75, 0.9), 10, 1),
    ("no-errors-at-all", (np.linspace(0, 1, 2000), np.zeros(2000)), 50, (0.5, 0.75, 0.9), 10, 1),
]


@pytest.mark.parametrize(
    ("data", "cells", "quantiles", "min_cells", "count"),
    [c[1:] for c in CURVE_FLAT_CASES],
    ids=[c[0] for c in CURVE_FLAT_CASES],
)
def test_no_widening_without_evidence_for_it_but_growth_past_the_last_knot(
    data: tuple[np.ndarray, np.ndarray],
    cells: int,
    quantiles: tuple[float, ...],
    min_cells: int,
    count: int,
) -> None:
    knots, factors = _novelty_curve(data[0], data[1], cells, quantiles, min_cells)
    assert len(knots) == len(factors) == count
    assert np.all(factors == 1.0)
    assert np.all(np.diff(knots) > 0)
    assert knots[-1] == pytest.approx(0.95, abs=0.02)  # the top bin's median novelty
    novelty = np.array([0.1, knots[-1], 2 * knots[-1], 10 * knots[-1]])
    assert novelty_factor(novelty, knots, factors) == pytest.approx([1.0, 1.0, 2.0, 10.0])


CURVE_NONE_CASES = [
    ("no-bins", _curve_input(grow=3.0), 50, ()),
    ("no-rows", (np.zeros(0), np.zeros(0)), 50, (0.5, 0.75, 0.9)),
]


@pytest.mark.parametrize(
    ("data", "cells", "quantiles"),
    [c[1:] for c in CURVE_NONE_CASES],
    ids=[c[0] for c in CURVE_NONE_CASES],
)
def test_no_curve_without_bins_or_rows(
    data: tuple[np.ndarray, np.ndarray], cells: int, quantiles: tuple[float, ...]
) -> None:
    knots, factors = _novelty_curve(data[0], data[1], cells, quantiles, 10)
    assert len(knots) == len(factors) == 0


# -- fitted on cells where the odd ones are both novel and badly estimated -----------------------


def test_a_fit_widens_sigma_where_out_of_fold_errors_grow_with_novelty(
    mixed: tuple[SohModel, np.ndarray, Rows, np.ndarray],
) -> None:
    model = mixed[0]
    m = model.models[DESIGN]
    assert len(m.novelty_knots) >= 2
    assert m.novelty_factors[0] == 1.0
    assert np.all(np.diff(m.novelty_factors) >= 0)
    assert m.novelty_factors[-1] > 1.5


def test_unseen_odd_cells_get_a_wider_sigma_and_more_of_them_are_covered(
    mixed: tuple[SohModel, np.ndarray, Rows, np.ndarray],
) -> None:
    model, truth, fresh, odd = mixed
    soh, sigma = predict(model, fresh)
    soh0, sigma0 = predict(without_widening(model), fresh)
    assert np.array_equal(soh, soh0)  # the estimate is not touched
    ratio = sigma / sigma0
    assert ratio.min() >= 1.0 - 1e-12  # widen only
    assert ratio[odd].mean() > ratio[~odd].mean() + 0.05
    covered = np.abs(truth - soh) <= Z90 * sigma
    covered0 = np.abs(truth - soh) <= Z90 * sigma0
    assert covered[odd].mean() > covered0[odd].mean()
    assert abs(covered[~odd].mean() - covered0[~odd].mean()) <= 0.02  # the usual ones stay


def test_rows_pushed_away_from_the_training_rows_get_wider_and_wider(
    mixed: tuple[SohModel, np.ndarray, Rows, np.ndarray],
) -> None:
    """A steep widening curve on the fitted model: training rows (all of them are RBF centres)
    keep their sigma; the same rows pushed outwards, away from the training rows' mean (the
    features are linear in U, so the embedding moves along a straight line), get a wider sigma
    the further they go, past the last factor."""
    model = mixed[0]
    m = model.models[DESIGN]
    steep = SohModel(
        {DESIGN: replace(m, novelty_factors=np.linspace(1.0, 3.0, len(m.novelty_knots)))},
        model.prior,
        model.settings,
    )
    plain = without_widening(model)
    truth, rows, _ = mixed_cells(100, 12, np.random.default_rng(5))  # the training cells
    assert m.summary.n_centres == len(truth)
    centre = np.nanmean(rows.U, axis=0)
    design = np.full(len(truth), DESIGN, dtype=object)
    means = []
    for t in (0.0, 0.2, 0.5, 1.0):
        U = rows.U + t * (rows.U - centre)  # (at t = 1 some rows leave the voltage window)
        _, s, _ = steep.predict(design, U, rows.rated_ah, rows.width_ms)
        _, s0, _ = plain.predict(design, U, rows.rated_ah, rows.width_ms)
        assert np.isfinite(s).mean() > 0.8
        means.append(float(np.nanmean(s / s0)))
    assert means[0] == pytest.approx(1.0, abs=1e-6)
    assert all(b > a for a, b in itertools.pairwise(means))
    assert means[-1] > 3.0  # the last factor: beyond it sigma keeps growing


def test_the_fast_path_widens_as_the_defining_formulas_do(
    mixed: tuple[SohModel, np.ndarray, Rows, np.ndarray],
) -> None:
    model, _, fresh, _ = mixed
    m = model.models[DESIGN]
    soh, sigma = predict(model, fresh)
    ref, ref_sigma = m.reference_estimate(fresh.U, fresh.rated_ah, fresh.width_ms)
    # float32 products: 3.1e-4 on this model (the same before the widening existed), within
    # 1e-4 on the dev designs; the widening adds no error of its own to sigma
    assert np.abs(soh - ref).max() < 5e-4
    assert np.abs(sigma / ref_sigma - 1.0).max() < 1e-3
    _, plain_sigma = (
        without_widening(model)
        .models[DESIGN]
        .reference_estimate(fresh.U, fresh.rated_ah, fresh.width_ms)
    )
    assert (ref_sigma > plain_sigma * 1.01).any()  # the comparison covers widened rows


# -- the model file -----------------------------------------------------------------------------


def test_widening_round_trips_and_a_file_without_it_loads_unwidened(
    mixed: tuple[SohModel, np.ndarray, Rows, np.ndarray],
) -> None:
    model, _, fresh, _ = mixed
    d = json.loads(json.dumps(model.to_dict()))
    again = SohModel.from_dict(d)
    assert np.array_equal(
        again.models[DESIGN].novelty_factors, model.models[DESIGN].novelty_factors
    )
    assert np.array_equal(predict(again, fresh)[1], predict(model, fresh)[1])
    for key in ("novelty_knots", "novelty_factors"):
        del d["designs"][DESIGN][key]  # as written before the widening existed
    old = SohModel.from_dict(d)
    assert len(old.models[DESIGN].novelty_knots) == 0
    assert np.array_equal(predict(old, fresh)[1], predict(without_widening(model), fresh)[1])


def _entry(model: SohModel) -> tuple[dict[str, Any], dict[str, Any]]:
    d = copy.deepcopy(model.to_dict())
    return d, d["designs"][DESIGN]


BAD_WIDENING_CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("knots-decreasing", "novelty_knots", {"novelty_knots": lambda v: v[::-1]}),
    ("knots-repeated", "novelty_knots", {"novelty_knots": lambda v: [v[0]] * len(v)}),
    ("knot-negative", "novelty_knots", {"novelty_knots": lambda v: [-1.0, *v[1:]]}),
    ("knot-nan", "novelty_knots", {"novelty_knots": lambda v: [float("nan"), *v[1:]]}),
    ("factor-inf", "novelty_factors", {"novelty_factors": lambda v: [*v[:-1], float("inf")]}),
    ("factor-zero", "novelty_factors", {"novelty_factors": lambda v: [0.0, *v[1:]]}),
    ("factor-negative", "novelty_factors", {"novelty_factors": lambda v: [-x for x in v]}),
    ("factors-shorter", "novelty_factors", {"novelty_factors": lambda v: v[:-1]}),
    ("factors-without-knots", "novelty_factors", {"novelty_knots": lambda v: []}),
    ("knots-nested", "novelty_knots", {"novelty_knots": lambda v: [v]}),
    (
        "no-centres-to-measure-from",
        "novelty_knots",
        {"centres": lambda v: [], "rbf_weights": lambda v: []},
    ),
]


@pytest.mark.parametrize(
    ("field", "changes"),
    [c[1:] for c in BAD_WIDENING_CASES],
    ids=[c[0] for c in BAD_WIDENING_CASES],
)
def test_a_bad_widening_is_refused_naming_the_field(
    mixed: tuple[SohModel, np.ndarray, Rows, np.ndarray], field: str, changes: dict[str, Any]
) -> None:
    d, entry = _entry(mixed[0])
    assert len(entry["novelty_knots"]) >= 2  # so that the cases mean something
    for key, change in changes.items():
        entry[key] = change(entry[key])
    with pytest.raises(SohModelError, match=field):
        SohModel.from_dict(d)
