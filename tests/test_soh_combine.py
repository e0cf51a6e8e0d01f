"""Several estimates of one cell -> one (passport.soh.combine)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from passport.soh import combine, combine_runs
from passport.soh.combine import run_keys, run_starts


def test_one_row_is_returned_unchanged() -> None:
    assert combine([0.8123456789], [0.0123]) == (0.8123456789, 0.0123)


def test_equal_sigmas_give_the_plain_mean_and_the_same_sigma() -> None:
    soh, sigma = combine([0.80, 0.84, 0.82], [0.02, 0.02, 0.02])
    assert soh == pytest.approx(0.82)
    # errors of one cell's rows move together: averaging them does not shrink sigma
    assert sigma == pytest.approx(0.02)


def test_a_tighter_row_weighs_more() -> None:
    soh, sigma = combine([0.80, 0.90], [0.01, 0.03])
    # weights 1/sigma^2: 9 : 1
    assert soh == pytest.approx((9 * 0.80 + 0.90) / 10)
    assert sigma == pytest.approx((9 * 0.01 + 0.03) / 10)


@pytest.mark.parametrize(
    ("soh", "sigma"),
    [
        ([], []),  # nothing to combine
        ([0.8, 0.9], [0.01]),  # lengths differ
        ([0.8, math.nan], [0.01, 0.01]),  # a row with an error
        ([0.8, 0.9], [0.01, 0.0]),  # a sigma that is not positive
        ([0.8, 0.9], [0.01, math.inf]),
    ],
    ids=["empty", "lengths", "nan-estimate", "zero-sigma", "inf-sigma"],
)
def test_refuses_rows_that_are_not_estimates(soh: list[float], sigma: list[float]) -> None:
    with pytest.raises(ValueError, match="combine needs"):
        combine(soh, sigma)


rows = st.lists(
    st.tuples(st.floats(0.3, 1.2, allow_nan=False), st.floats(1e-4, 0.2, allow_nan=False)),
    min_size=1,
    max_size=12,
)


@given(rows)
def test_the_result_lies_within_the_rows(pairs: list[tuple[float, float]]) -> None:
    s = np.array([p[0] for p in pairs])
    sd = np.array([p[1] for p in pairs])
    soh, sigma = combine(s, sd)
    eps = 1e-12
    assert s.min() - eps <= soh <= s.max() + eps
    assert sd.min() - eps <= sigma <= sd.max() + eps


@given(rows)
def test_the_order_of_the_rows_does_not_matter(pairs: list[tuple[float, float]]) -> None:
    forward = combine([p[0] for p in pairs], [p[1] for p in pairs])
    backward = combine([p[0] for p in pairs[::-1]], [p[1] for p in pairs[::-1]])
    assert forward == pytest.approx(backward, rel=1e-12, abs=1e-15)


def test_runs_of_consecutive_rows_of_one_cell() -> None:
    nan = math.nan
    ids = ["a", "a", "a", "b", "", "", "a", "c", "c"]
    soh = [0.80, 0.84, nan, 0.90, 0.70, 0.72, 0.81, nan, nan]
    sd = [0.02, 0.02, nan, 0.01, 0.03, 0.03, 0.02, nan, nan]
    got_soh, got_sd, rows = combine_runs(ids, soh, sd)
    assert rows.tolist() == [2, 2, 2, 1, 1, 1, 1, 0, 0]  # NaN rows left out of their run
    assert got_soh[:3] == pytest.approx([0.82] * 3)
    assert got_sd[:3] == pytest.approx([0.02] * 3)
    # a row without an id is a run of its own; a run of one row is that row, exactly
    assert got_soh[3:7].tolist() == [0.90, 0.70, 0.72, 0.81]
    assert got_sd[3:7].tolist() == [0.01, 0.03, 0.03, 0.02]
    assert np.isnan(got_soh[7:]).all()
    assert np.isnan(got_sd[7:]).all()


@given(rows)
def test_a_run_matches_combine(pairs: list[tuple[float, float]]) -> None:
    s = [p[0] for p in pairs]
    sd = [p[1] for p in pairs]
    got_soh, got_sd, n = combine_runs(["x"] * len(s), s, sd)
    want = combine(s, sd)
    assert n.tolist() == [len(s)] * len(s)
    assert got_soh[0] == pytest.approx(want[0], rel=1e-12)
    assert got_sd[0] == pytest.approx(want[1], rel=1e-12)


def test_row_correlation_narrows_sigma_as_far_as_it_allows() -> None:
    # four rows of equal sigma: sigma sqrt((1 + 3 rho) / 4)
    for rho, factor in ((1.0, 1.0), (0.0, 0.5), (0.5, math.sqrt(2.5 / 4))):
        soh, sigma = combine([0.80, 0.82, 0.84, 0.86], [0.02] * 4, rho)
        assert soh == pytest.approx(0.83)
        assert sigma == pytest.approx(0.02 * factor)
    assert combine([0.8], [0.02], 0.0) == (0.8, 0.02)  # one row: unchanged
    _, got_sd, _ = combine_runs(["a"] * 4 + ["b"], [0.8, 0.82, 0.84, 0.86, 0.9],
                                      [0.02] * 5, [0.0, 0.0, 0.5, 0.0, 0.0])  # fmt: skip
    assert got_sd[0] == pytest.approx(0.02 * math.sqrt(2.5 / 4))  # the run's largest rho
    assert got_sd[4] == 0.02


@pytest.mark.parametrize("rho", [-0.1, 1.1, math.nan], ids=["negative", "above-one", "nan"])
def test_a_row_correlation_outside_0_1_is_refused(rho: float) -> None:
    with pytest.raises(ValueError, match="row correlation"):
        combine([0.8, 0.9], [0.02, 0.02], rho)
    with pytest.raises(ValueError, match="row correlation"):
        combine_runs(["a", "a"], [0.8, 0.9], [0.02, 0.02], rho)


@given(rows, st.floats(0.0, 1.0))
def test_runs_match_combine_at_any_correlation(
    pairs: list[tuple[float, float]], rho: float
) -> None:
    s = [p[0] for p in pairs]
    sd = [p[1] for p in pairs]
    got_soh, got_sd, _ = combine_runs(["x"] * len(s), s, sd, rho)
    want = combine(s, sd, rho)
    assert got_soh[0] == pytest.approx(want[0], rel=1e-12)
    assert got_sd[0] == pytest.approx(want[1], rel=1e-9)
    # never tighter than independent rows, never wider than fully correlated ones
    assert combine(s, sd, 0.0)[1] - 1e-12 <= want[1] <= combine(s, sd, 1.0)[1] + 1e-12


RUN_KEY_CASES = [
    ("no-soc-column", ["a", "a", "b"], None, [True, False, True]),
    (
        "soc-splits-a-cell",
        ["a", "a", "a", "a"],
        ["30", "30", "60", "60"],
        [True, False, True, False],
    ),
    ("empty-soc-joins-by-cell", ["a", "a", "b"], ["", "", ""], [True, False, True]),
    ("same-soc-other-cell", ["a", "b"], ["30", "30"], [True, True]),
    ("empty-cell-id-alone", ["", "", "a"], ["30", "30", "30"], [True, True, True]),
    ("soc-back-again-is-new", ["a", "a", "a"], ["30", "60", "30"], [True, True, True]),
]


@pytest.mark.parametrize(
    ("cells", "socs", "starts"),
    [c[1:] for c in RUN_KEY_CASES],
    ids=[c[0] for c in RUN_KEY_CASES],
)
def test_run_keys_split_a_cells_rows_by_state_of_charge(
    cells: list[str], socs: list[str] | None, starts: list[bool]
) -> None:
    assert run_starts(run_keys(cells, socs)).tolist() == starts
