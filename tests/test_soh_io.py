"""The SoH library around the model: CSV tables in and estimates out (streamed, in input order,
one row per input row, errors per row), model files, raw traces and the passport check.

Training data is synthetic (`passport.soh.synthetic`: an equivalent-circuit model whose
resistances grow as capacity fades), so every test here is hermetic and fast; the real reference
data is exercised through the console in test_soh_cli.py.
"""

from __future__ import annotations

import copy
import csv
import json
import tempfile
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import passport.soh as soh
import passport.soh.tables as soh_tables
from passport.errors import InputError
from passport.soh import (
    ERR_BAD_ROW,
    ERR_INCOMPLETE_TRACE,
    ERR_MISSING,
    ERR_NO_MODEL,
    ERR_OUT_OF_RANGE,
    U_COLUMNS,
    SohModel,
    estimate,
    estimate_csv,
    extract,
    fit_csv,
    load_model,
    resistance_growth,
    save_model,
    trace_chunk_to_rows,
)
from passport.soh import combine as soh_combine
from passport.soh.io import CLAIM_COLUMNS, OUTPUT_COLUMNS, PulseChunk, _numbers, read_pulse_csv
from passport.soh.synthetic import Rows, aged_cells, pulse_rows, simulate
from passport.soh.trace_io import ERR_NOT_MONOTONIC, read_trace_csv

FloatArray = npt.NDArray[np.float64]

DESIGN = "SYN-5Ah"
RATED = 5.0
Z90 = 1.6448536269514722
HEADER = ["design", "chemistry", "rated_ah", "pulse_width_ms", "cell_id", "soc_pct", "soh"]
HEADER += U_COLUMNS
# What an intake line sends: no state of charge, no measured capacity.
INTAKE_HEADER = [c for c in HEADER if c not in ("chemistry", "soc_pct", "soh")]
TRACE_HEADER = ["cell_id", "t_s", "current_a", "voltage_v"]


# --------------------------------------------------------------------------------------------
# Helpers


def cells(n: int, seed: int) -> tuple[FloatArray, Rows]:
    """`n` synthetic cells of one design with SoH uniform in 0.6-1.02: (true soh, features)."""
    rng = np.random.default_rng(seed)
    truth = rng.uniform(0.6, 1.02, n)
    return truth, pulse_rows(aged_cells(truth, RATED, rng), RATED)


def num(x: float) -> str:
    """Exactly the float (repr round-trips), empty for NaN."""
    return "" if np.isnan(x) else repr(float(x))


def records(
    truth: FloatArray, rows: Rows, *, prefix: str = "c", design: str = DESIGN
) -> list[dict[str, str]]:
    """One CSV record per cell with the reference data's columns."""
    out = []
    for i in range(len(truth)):
        rec = {
            "design": design,
            "chemistry": "NMC",
            "rated_ah": num(rows.rated_ah[i]),
            "pulse_width_ms": num(rows.width_ms[i]),
            "cell_id": f"{prefix}{i:03d}",
            "soc_pct": "50",
            "soh": num(truth[i]),
        }
        rec.update({c: num(u) for c, u in zip(U_COLUMNS, rows.U[i], strict=True)})
        out.append(rec)
    return out


def write_csv(path: Path, recs: Sequence[dict[str, str]], columns: Sequence[str] = HEADER) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, list(columns), extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(recs)
    return path


def read_out(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def files_in(directory: Path) -> list[str]:
    """Every entry, hidden temporary files included."""
    return sorted(p.name for p in directory.iterdir())


def concat(chunks: Sequence[PulseChunk], name: str) -> npt.NDArray[Any]:
    return np.concatenate([getattr(c, name) for c in chunks])


def trace_arrays(
    n: int, seed: int, samples: int = 3
) -> tuple[FloatArray, npt.NDArray[np.int64], FloatArray, FloatArray, FloatArray]:
    """Raw long-format traces of `n` synthetic cells: (true soh, cell code, t, current, v)."""
    rng = np.random.default_rng(seed)
    truth = rng.uniform(0.6, 1.02, n)
    code, t, current, voltage = simulate(aged_cells(truth, RATED, rng), RATED, 1.0, samples)
    return truth, code, t, current, voltage


def trace_lines(
    code: npt.NDArray[np.int64],
    t: FloatArray,
    current: FloatArray,
    voltage: FloatArray,
    design: Callable[[int], str] | None = None,
) -> list[list[str]]:
    """Data rows of a trace file: cell ids "T<code>", optionally a design per cell."""
    out = []
    columns = (code.tolist(), t.tolist(), current.tolist(), voltage.tolist())
    for c, ts, i, v in zip(*columns, strict=True):
        row = [f"T{c}", repr(ts), repr(i), repr(v)]
        if design is not None:
            row.append(design(c))
        out.append(row)
    return out


def write_rows(path: Path, header: Sequence[str], rows: Sequence[Sequence[str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


# --------------------------------------------------------------------------------------------
# Fixtures: one synthetic training table and its model for the whole module


@pytest.fixture(scope="module")
def train_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    truth, rows = cells(100, seed=11)
    return write_csv(tmp_path_factory.mktemp("train") / "train.csv", records(truth, rows))


@pytest.fixture(scope="module")
def model(train_csv: Path) -> SohModel:
    return fit_csv(train_csv)


@pytest.fixture(scope="module")
def fresh() -> tuple[FloatArray, Rows]:
    """Cells the model never saw."""
    return cells(300, seed=12)


# --------------------------------------------------------------------------------------------
# Accuracy on unseen synthetic cells


def test_fit_csv_then_estimate_is_accurate_and_calibrated(
    model: SohModel, fresh: tuple[FloatArray, Rows]
) -> None:
    """A model that learnt nothing (the mean: ~10 points MAE) or whose sigma means nothing
    (coverage far from the nominal 90 %) fails; sampling noise on 300 cells does not."""
    truth, rows = fresh
    got = estimate(model, [DESIGN] * len(truth), rows.U, rows.rated_ah, rows.width_ms)
    assert (got.error == "").all()
    error = np.abs(got.soh - truth)
    baseline = np.abs(truth - truth.mean()).mean()
    assert baseline > 0.08
    assert error.mean() < 0.02
    coverage = float(np.mean(error <= Z90 * got.soh_sigma))
    assert 0.75 <= coverage <= 0.99, coverage
    assert np.all(got.soh_sigma > 0)
    # the resistance column is the ohmic step of the first pulse: positive, a few mOhm
    assert np.all((got.resistance_ohm > 0.001) & (got.resistance_ohm < 0.05))


def test_estimate_computes_the_models_defining_formulas(
    model: SohModel, fresh: tuple[FloatArray, Rows]
) -> None:
    """`estimate` runs a compiled float32 fast path documented to keep ~1e-5 of the float64
    defining formulas (`DesignModel.reference_estimate`); a tenth of a point is generous."""
    truth, rows = fresh
    got = estimate(model, [DESIGN] * len(truth), rows.U, rows.rated_ah, rows.width_ms)
    ref, ref_sigma = model.models[DESIGN].reference_estimate(rows.U, rows.rated_ah, rows.width_ms)
    worst = int(np.argmax(np.abs(got.soh - ref)))
    assert abs(got.soh[worst] - ref[worst]) < 1e-3, (worst, got.soh[worst], ref[worst])
    np.testing.assert_allclose(got.soh_sigma, ref_sigma, atol=1e-3)


# --------------------------------------------------------------------------------------------
# estimate_csv: one output row per input row, in order, errors per row


def set_field(rec: dict[str, str], column: str, value: str) -> None:
    rec[column] = value


def shift_all_voltages(rec: dict[str, str]) -> None:
    for c in U_COLUMNS:
        rec[c] = repr(float(rec[c]) + 2.0)


ROW_CASES: list[tuple[str, Callable[[dict[str, str]], None], str]] = [
    ("voltage-not-a-number", lambda r: set_field(r, "U5", "3.6x"), ERR_BAD_ROW),
    ("voltage-infinite", lambda r: set_field(r, "U9", "inf"), ERR_BAD_ROW),
    ("voltage-nan-text", lambda r: set_field(r, "U9", "nan"), ERR_BAD_ROW),
    ("rating-not-a-number", lambda r: set_field(r, "rated_ah", "five"), ERR_BAD_ROW),
    ("width-not-a-number", lambda r: set_field(r, "pulse_width_ms", "1 s"), ERR_BAD_ROW),
    ("design-without-model", lambda r: set_field(r, "design", "NOPE-9Ah"), ERR_NO_MODEL),
    ("design-empty", lambda r: set_field(r, "design", ""), ERR_NO_MODEL),
    ("voltages-2V-too-high", shift_all_voltages, ERR_OUT_OF_RANGE),
    ("one-voltage-far-off", lambda r: set_field(r, "U20", "9.5"), ERR_OUT_OF_RANGE),
    ("width-never-trained", lambda r: set_field(r, "pulse_width_ms", "100"), ERR_OUT_OF_RANGE),
    ("rating-of-another-design", lambda r: set_field(r, "rated_ah", "20"), ERR_OUT_OF_RANGE),
    ("voltage-empty", lambda r: set_field(r, "U7", ""), ERR_MISSING),
    ("last-voltage-empty", lambda r: set_field(r, "U41", ""), ERR_MISSING),
    ("rating-empty", lambda r: set_field(r, "rated_ah", ""), ERR_MISSING),
    ("width-empty", lambda r: set_field(r, "pulse_width_ms", ""), ERR_MISSING),
    # in the mixed table below these share a column with an empty field (another row's case)
    ("voltage-nan-text-beside-empty", lambda r: set_field(r, "U7", "nan"), ERR_BAD_ROW),
    ("voltage-infinite-beside-empty", lambda r: set_field(r, "U7", "-inf"), ERR_BAD_ROW),
    ("voltage-not-a-number-beside-empty", lambda r: set_field(r, "U41", "3.6x"), ERR_BAD_ROW),
]


NAN = float("nan")
# a column's fields -> its numbers and the rows whose field is wrong (None: none is)
NUMBER_CASES: list[tuple[str, list[str], list[float], list[bool] | None]] = [
    ("all-numbers", ["3.2", " 3.3 ", "-1e-3"], [3.2, 3.3, -1e-3], None),
    ("empty-fields-are-nan", ["3.2", "", "3.4"], [3.2, NAN, 3.4], None),
    ("whitespace-only-is-empty", ["3.2", "  ", ""], [3.2, NAN, NAN], None),
    ("nan-text-is-wrong", ["3.2", "nan"], [3.2, NAN], [False, True]),
    ("nan-text-beside-empty", ["", "nan", "3.1"], [NAN, NAN, 3.1], [False, True, False]),
    ("infinite-beside-empty", ["inf", "", "-inf"], [NAN, NAN, NAN], [True, False, True]),
    ("overflow-beside-empty", ["1e400", ""], [NAN, NAN], [True, False]),
    ("text-beside-empty", ["3.6x", "", "3.5"], [NAN, NAN, 3.5], [True, False, False]),
    ("text-and-whitespace", ["  ", "x", "3.5"], [NAN, NAN, 3.5], [False, True, False]),
    ("no-fields", [], [], None),
]


@pytest.mark.parametrize(
    ("texts", "values", "wrong"),
    [c[1:] for c in NUMBER_CASES],
    ids=[c[0] for c in NUMBER_CASES],
)
def test_a_columns_fields_parse_to_numbers_or_name_their_rows(
    texts: list[str], values: list[float], wrong: list[bool] | None
) -> None:
    """Each path of the column parser (all numbers, some empty, some wrong) gives what the field
    by field rule gives: empty is NaN and fine, a wrong or non-finite field is NaN and named."""
    got, got_wrong = _numbers(texts)
    np.testing.assert_array_equal(got, values)
    if wrong is None:
        assert got_wrong is None
    else:
        assert got_wrong is not None
        assert got_wrong.tolist() == wrong


@pytest.mark.parametrize(
    ("change", "code"), [(c, e) for _, c, e in ROW_CASES], ids=[i for i, _, _ in ROW_CASES]
)
def test_a_bad_row_gets_its_code_and_keeps_its_place(
    model: SohModel,
    fresh: tuple[FloatArray, Rows],
    tmp_path: Path,
    change: Callable[[dict[str, str]], None],
    code: str,
) -> None:
    """The row between two good ones gets exactly its error and no numbers; its neighbours
    are estimated as if it were not there."""
    truth, rows = fresh
    recs = records(truth[:3], Rows(rows.U[:3], rows.rated_ah[:3], rows.width_ms[:3]))
    change(recs[1])
    src = write_csv(tmp_path / "in.csv", recs, INTAKE_HEADER)
    summary = estimate_csv(model, src, tmp_path / "out.csv")
    out = read_out(tmp_path / "out.csv")
    assert [r["line"] for r in out] == ["2", "3", "4"]
    assert [r["cell_id"] for r in out] == ["c000", "c001", "c002"]
    assert [r["error"] for r in out] == ["", code, ""]
    assert out[1]["soh"] == out[1]["soh_sigma"] == out[1]["resistance_mohm"] == ""
    for r, t in ((out[0], truth[0]), (out[2], truth[2])):
        assert abs(float(r["soh"]) - t) < 0.05
        assert float(r["soh_sigma"]) > 0
    assert (summary.rows, summary.estimated, summary.errors) == (3, 2, {code: 1})


def test_a_mixed_table_comes_out_in_input_order_with_its_line_numbers(
    model: SohModel, fresh: tuple[FloatArray, Rows], tmp_path: Path
) -> None:
    """Good and bad rows interleaved and a blank line: nothing is reordered or dropped, and
    `line` is each row's physical line in the file."""
    truth, rows = fresh
    n = len(ROW_CASES) * 2 + 1
    recs = records(truth[:n], Rows(rows.U[:n], rows.rated_ah[:n], rows.width_ms[:n]))
    expected = [""] * n
    for k, (_, change, code) in enumerate(ROW_CASES):
        change(recs[2 * k + 1])
        expected[2 * k + 1] = code
    src = write_csv(tmp_path / "in.csv", recs, INTAKE_HEADER)
    text = src.read_text(encoding="utf-8").splitlines(keepends=True)
    src.write_text("".join([*text[:3], "\n", *text[3:]]), encoding="utf-8")  # blank line 4
    summary = estimate_csv(model, src, tmp_path / "out.csv")
    out = read_out(tmp_path / "out.csv")
    assert list(out[0]) == list(OUTPUT_COLUMNS)
    assert [int(r["line"]) for r in out] == [2, 3, *range(5, n + 3)]
    assert [r["cell_id"] for r in out] == [r["cell_id"] for r in recs]
    assert [r["design"] for r in out] == [r["design"] for r in recs]
    assert [r["error"] for r in out] == expected
    assert summary.rows == n
    assert summary.estimated == n - len(ROW_CASES)


def test_a_row_with_a_line_break_is_numbered_by_its_first_line(
    model: SohModel, fresh: tuple[FloatArray, Rows], tmp_path: Path
) -> None:
    """A quoted cell id spanning two physical lines: the row is where it starts (an editor
    jumping to that line lands on it), and the rows after it keep their own numbers."""
    truth, rows = fresh
    recs = records(truth[:3], Rows(rows.U[:3], rows.rated_ah[:3], rows.width_ms[:3]))
    recs[1]["cell_id"] = "two\nlines"
    src = write_csv(tmp_path / "in.csv", recs, INTAKE_HEADER)
    estimate_csv(model, src, tmp_path / "out.csv")
    out = read_out(tmp_path / "out.csv")
    assert [r["cell_id"] for r in out] == ["c000", "two\nlines", "c002"]
    assert [r["error"] for r in out] == ["", "", ""]
    assert [int(r["line"]) for r in out] == [2, 3, 5]


def test_soc_and_measured_capacity_columns_change_nothing(
    model: SohModel, fresh: tuple[FloatArray, Rows], tmp_path: Path
) -> None:
    """An intake line knows neither the state of charge nor the capacity: the columns may be
    absent, and when present (even nonsense) they do not move the estimate."""
    truth, rows = fresh
    recs = records(truth[:20], Rows(rows.U[:20], rows.rated_ah[:20], rows.width_ms[:20]))
    estimate_csv(model, write_csv(tmp_path / "a.csv", recs, INTAKE_HEADER), tmp_path / "a.out")
    for r in recs:
        r["soc_pct"], r["soh"] = "99", "0.1"
    estimate_csv(model, write_csv(tmp_path / "b.csv", recs, HEADER), tmp_path / "b.out")
    a, b = read_out(tmp_path / "a.out"), read_out(tmp_path / "b.out")
    assert len(a) == 20
    assert all(r["error"] == "" for r in a)
    assert a == b


def test_chunked_reading_gives_the_same_rows_and_estimates(
    model: SohModel,
    fresh: tuple[FloatArray, Rows],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Chunks of 3 rows (with bad rows in several chunks) equal one big chunk, row by row, and
    so do the estimates: a row's result must not depend on which rows share its chunk."""
    truth, rows = fresh
    n = 2 * len(ROW_CASES) + 1  # 37: chunks of 3 and one of 1
    recs = records(truth[:n], Rows(rows.U[:n], rows.rated_ah[:n], rows.width_ms[:n]))
    for k, (_, change, _) in enumerate(ROW_CASES):
        change(recs[2 * k])
    src = write_csv(tmp_path / "in.csv", recs, HEADER)
    one = list(read_pulse_csv(src))
    small = list(read_pulse_csv(src, chunk_rows=3))
    assert len(one) == 1
    assert [len(c) for c in small] == [3] * 12 + [1]
    for name in ("line", "cell_id", "design", "rated_ah", "width_ms", "U", "soh", "error"):
        np.testing.assert_array_equal(concat(small, name), concat(one, name), err_msg=name)

    estimate_csv(model, src, tmp_path / "one.csv")
    monkeypatch.setattr(soh_tables, "read_pulse_csv", partial(read_pulse_csv, chunk_rows=3))
    progress: list[int] = []
    estimate_csv(model, src, tmp_path / "small.csv", on_progress=progress.append)
    assert progress == [3] * 12 + [1]
    one_out, small_out = read_out(tmp_path / "one.csv"), read_out(tmp_path / "small.csv")
    assert len(small_out) == len(one_out) == n
    for a, b in zip(one_out, small_out, strict=True):
        assert {k: v for k, v in a.items() if k not in ("soh", "soh_sigma")} == {
            k: v for k, v in b.items() if k not in ("soh", "soh_sigma")
        }
        for k in ("soh", "soh_sigma"):  # float32 inside: equal to a hundredth of a point
            assert (a[k] == "") == (b[k] == "")
            if a[k]:
                assert abs(float(a[k]) - float(b[k])) < 1e-4, (a["cell_id"], k, a[k], b[k])


def test_a_header_only_table_gives_a_header_only_output(model: SohModel, tmp_path: Path) -> None:
    """Zero rows in, zero rows out: still a valid table, not an error."""
    src = tmp_path / "in.csv"
    src.write_text(",".join(INTAKE_HEADER) + "\n", encoding="utf-8")
    summary = estimate_csv(model, src, tmp_path / "out.csv")
    assert summary.rows == 0
    assert (tmp_path / "out.csv").read_text(encoding="utf-8") == ",".join(OUTPUT_COLUMNS) + "\n"


# --------------------------------------------------------------------------------------------
# The passport check: claim columns


def test_claim_columns_add_the_passport_check(
    model: SohModel, fresh: tuple[FloatArray, Rows], tmp_path: Path
) -> None:
    """An honest claim is believed and sharpens the estimate; one overstated by 20 points is
    flagged and ignored; rows without a claim pass through. Resistance growth is measured over
    the birth record's initial resistance."""
    truth, rows = fresh
    recs = records(truth[:6], Rows(rows.U[:6], rows.rated_ah[:6], rows.width_ms[:6]))
    claims = [  # claimed_soh, claimed_soh_sigma, fec_since, days_since, initial_resistance_uohm
        (truth[0], "0.02", "0", "0", "20000"),  # honest
        (truth[1] + 0.2, "0.02", "0", "0", "20000"),  # overstated by 20 points
        (None, "", "", "", ""),  # no claim, no birth resistance
        (truth[3] + 0.03, "0.01", "600", "365", "0"),  # explained by 600 cycles and a year
        (truth[4], "", "", "", "-5"),  # honest, default claim sigma
        (truth[5] + 0.2, "0.02", "0", "0", "10000"),  # overstated
    ]
    for rec, (claimed, sigma, fec, days, initial) in zip(recs, claims, strict=True):
        rec.update(
            claimed_soh="" if claimed is None else repr(float(claimed)),
            claimed_soh_sigma=sigma,
            fec_since=fec,
            days_since=days,
            initial_resistance_uohm=initial,
        )
    columns = [*INTAKE_HEADER, *CLAIM_COLUMNS]
    summary = estimate_csv(model, write_csv(tmp_path / "in.csv", recs, columns), tmp_path / "o")
    out = read_out(tmp_path / "o")
    extra = ("resistance_growth", "claim_z", "claim_flagged", "posterior_soh", "posterior_sigma")
    assert set(extra) <= set(out[0])
    assert [r["error"] for r in out] == [""] * 6
    assert [r["claim_flagged"] for r in out] == ["0", "1", "", "0", "0", "1"]
    assert summary.flagged == 2
    z = [float(r["claim_z"]) if r["claim_z"] else None for r in out]
    assert z[2] is None
    assert z[1] is not None
    assert z[1] > 3
    assert z[0] is not None
    assert abs(z[0]) < 3
    honest, lying, none = out[0], out[1], out[2]
    assert float(honest["posterior_sigma"]) < float(honest["soh_sigma"])
    assert float(lying["posterior_soh"]) == float(lying["soh"])  # the claim is not trusted
    assert float(lying["posterior_sigma"]) == float(lying["soh_sigma"])
    assert none["posterior_soh"] == none["soh"]
    # growth = measured / initial; unknown (empty, zero, negative) initial values give nothing
    for r, initial in ((out[0], 20000.0), (out[1], 20000.0), (out[5], 10000.0)):
        expected = float(r["resistance_mohm"]) * 1000.0 / initial
        assert float(r["resistance_growth"]) == pytest.approx(expected, rel=1e-4)
    assert [out[i]["resistance_growth"] for i in (2, 3, 4)] == ["", "", ""]


def test_resistance_columns_alone_need_no_claim(
    model: SohModel, fresh: tuple[FloatArray, Rows], tmp_path: Path
) -> None:
    """`initial_resistance_uohm` without `claimed_soh` still gives the growth."""
    truth, rows = fresh
    recs = records(truth[:2], Rows(rows.U[:2], rows.rated_ah[:2], rows.width_ms[:2]))
    for rec in recs:
        rec["initial_resistance_uohm"] = "10000"
    src = write_csv(tmp_path / "in.csv", recs, [*INTAKE_HEADER, "initial_resistance_uohm"])
    estimate_csv(model, src, tmp_path / "out.csv")
    out = read_out(tmp_path / "out.csv")
    for r in out:
        growth = float(r["resistance_mohm"]) * 1000.0 / 10000.0
        assert float(r["resistance_growth"]) == pytest.approx(growth, rel=1e-4)
        assert r["claim_flagged"] == ""


def test_resistance_growth_is_measured_over_initial() -> None:
    """Initial values in micro-ohm; NaN where unknown, zero or negative (never inf)."""
    measured = np.array([0.02, 0.02, 0.03, 0.02, 0.02, np.nan])
    initial = np.array([10000.0, 20000.0, 15000.0, np.nan, 0.0, 10000.0])
    got = resistance_growth(measured, initial)
    np.testing.assert_allclose(got[:3], [2.0, 1.0, 2.0])
    assert np.isnan(got[3:]).all()
    assert np.isnan(resistance_growth(np.array([0.02]), np.array([-5.0]))).all()


# --------------------------------------------------------------------------------------------
# The output file appears only on success


@pytest.mark.parametrize("existing", [False, True], ids=["new-output", "existing-output"])
def test_a_failure_mid_stream_leaves_no_output(
    model: SohModel,
    fresh: tuple[FloatArray, Rows],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    existing: bool,
) -> None:
    """The estimator fails on the second chunk, after the first was written: no output file (or
    the old one untouched) and no temporary file left behind."""
    truth, rows = fresh
    recs = records(truth[:10], Rows(rows.U[:10], rows.rated_ah[:10], rows.width_ms[:10]))
    src = write_csv(tmp_path / "in.csv", recs, INTAKE_HEADER)
    out = tmp_path / "out.csv"
    if existing:
        out.write_bytes(b"old results\n")
    monkeypatch.setattr(soh_tables, "read_pulse_csv", partial(read_pulse_csv, chunk_rows=3))
    calls: list[int] = []
    real = soh.estimate

    def fail_on_second_chunk(*args: Any, **kwargs: Any) -> soh.Estimate:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk on fire")
        return real(*args, **kwargs)

    monkeypatch.setattr(soh_tables, "estimate", fail_on_second_chunk)
    with pytest.raises(RuntimeError, match="disk on fire"):
        estimate_csv(model, src, out)
    assert len(calls) == 2
    if existing:
        assert files_in(tmp_path) == ["in.csv", "out.csv"]
        assert out.read_bytes() == b"old results\n"
    else:
        assert files_in(tmp_path) == ["in.csv"]


def test_a_bad_line_late_in_the_file_leaves_no_output(
    model: SohModel,
    fresh: tuple[FloatArray, Rows],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Invalid UTF-8 on line 50, after chunks of 3 rows had been estimated and written: an
    InputError naming the file and that line, and no output."""
    truth, rows = fresh
    recs = records(truth[:60], Rows(rows.U[:60], rows.rated_ah[:60], rows.width_ms[:60]))
    src = write_csv(tmp_path / "in.csv", recs, INTAKE_HEADER)
    lines = src.read_bytes().splitlines(keepends=True)
    lines[49] = lines[49].replace(b"c048", b"c\xff48")
    src.write_bytes(b"".join(lines))
    monkeypatch.setattr(soh_tables, "read_pulse_csv", partial(read_pulse_csv, chunk_rows=3))
    written: list[int] = []
    with pytest.raises(InputError) as info:
        estimate_csv(model, src, tmp_path / "out.csv", on_progress=written.append)
    assert written  # the failure came mid-stream
    assert files_in(tmp_path) == ["in.csv"]
    assert str(src) in str(info.value)
    assert "line 50" in str(info.value)  # where the bad byte is, not where decoding stopped


# --------------------------------------------------------------------------------------------
# Tables that are not usable at all


def _make(content: Callable[[bytes], bytes]) -> Callable[[Path, bytes], Path]:
    def make(directory: Path, good: bytes) -> Path:
        path = directory / "table.csv"
        path.write_bytes(content(good))
        return path

    return make


def _no_file(directory: Path, good: bytes) -> Path:
    return directory / "no-such-table.csv"


def _a_directory(directory: Path, good: bytes) -> Path:
    path = directory / "a-directory.csv"
    path.mkdir()
    return path


def _lines(good: bytes) -> list[bytes]:
    return good.splitlines(keepends=True)


def _truncated(good: bytes) -> bytes:
    """The file cut off in the middle of its last line (a copy that died half way)."""
    last = _lines(good)[-1]
    return good[: len(good) - len(last) // 2]


def _nul_in_a_row(good: bytes) -> bytes:
    """A NUL byte inside the rating of the third data row."""
    lines = _lines(good)[:4]
    fields = lines[3].split(b",")
    fields[2] = fields[2][:1] + b"\x00" + fields[2][1:]
    return b"".join(lines[:3]) + b",".join(fields)


def _huge_integer(text: bytes) -> bytes:
    """A 5000-digit number (Python refuses to convert it: a ValueError)."""
    return text.replace(b'"gamma":', b'"gamma":1' + b"0" * 5000 + b',"g":', 1)


FILE_LEVEL = [
    pytest.param(_make(lambda g: b""), id="empty-file"),
    pytest.param(_make(lambda g: b"\n\n\n"), id="blank-lines-only"),
    pytest.param(
        _make(lambda g: g.replace(b"pulse_width_ms", b"width", 1)), id="missing-required-column"
    ),
    pytest.param(_make(lambda g: g.replace(b"cell_id", b"cell", 1)), id="missing-cell-id"),
    pytest.param(
        _make(lambda g: b"design,rated_ah,pulse_width_ms,cell_id,soh\nSYN-5Ah,5,1000,c1,0.9\n"),
        id="no-voltage-columns",
    ),
    pytest.param(_make(lambda g: bytes(range(256)) * 8), id="binary-garbage"),
    pytest.param(_make(lambda g: b"\x89PNG\r\n\x1a\n" + bytes(500)), id="png-header"),
    pytest.param(_make(lambda g: g[:5] + b"\xc3\x28" + g[5:]), id="invalid-utf8-in-header"),
    pytest.param(_make(lambda g: "\ufeff".encode("utf-16") + g), id="utf16-bom"),
    pytest.param(_make(lambda g: g[:2] + b"\x00" + g[2:]), id="nul-in-header"),
    pytest.param(_no_file, id="file-does-not-exist"),
    pytest.param(_a_directory, id="directory"),
]
ROW_LEVEL = [
    pytest.param(_make(lambda g: _lines(g)[0]), id="header-only"),
    pytest.param(_make(_nul_in_a_row), id="nul-in-a-row"),
    pytest.param(_make(_truncated), id="truncated-last-line"),
    pytest.param(
        _make(lambda g: b"".join(_lines(g)[:-1]) + b'SYN-5Ah,NMC,5,1000,"c999'),
        id="unterminated-quote-at-end",
    ),
]


@pytest.mark.parametrize("make", FILE_LEVEL + ROW_LEVEL)
def test_training_refuses_a_bad_table_naming_the_file(
    train_csv: Path, tmp_path: Path, make: Callable[[Path, bytes], Path]
) -> None:
    """Training data must be complete: anything short of a table whose every row parses is an
    InputError naming the file, never a raw exception and never a silently smaller model."""
    path = make(tmp_path, train_csv.read_bytes())
    with pytest.raises(InputError) as info:
        fit_csv(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("make", FILE_LEVEL)
def test_estimation_refuses_an_unusable_table_naming_the_file(
    model: SohModel, train_csv: Path, tmp_path: Path, make: Callable[[Path, bytes], Path]
) -> None:
    """A table that cannot be read at all: InputError naming it, and no output file."""
    work = tmp_path / "work"
    work.mkdir()
    path = make(work, train_csv.read_bytes())
    before = files_in(work)
    with pytest.raises(InputError) as info:
        estimate_csv(model, path, work / "out.csv")
    assert str(path) in str(info.value)
    assert files_in(work) == before


@pytest.mark.parametrize(
    ("damage", "n_rows", "damaged"),
    [(_nul_in_a_row, 3, 2), (_truncated, 100, 99)],
    ids=["nul-in-a-row", "truncated-last-line"],
)
def test_row_level_damage_stays_in_its_row(
    model: SohModel,
    train_csv: Path,
    tmp_path: Path,
    damage: Callable[[bytes], bytes],
    n_rows: int,
    damaged: int,
) -> None:
    """A NUL byte inside a number or a truncated last line spoil one row, not the table: the
    other rows are estimated and the damaged one is not."""
    src = tmp_path / "in.csv"
    src.write_bytes(damage(train_csv.read_bytes()))
    estimate_csv(model, src, tmp_path / "out.csv")
    out = read_out(tmp_path / "out.csv")
    assert len(out) == n_rows
    assert out[damaged]["error"] != ""
    assert out[damaged]["soh"] == ""
    assert all(r["error"] == "" for i, r in enumerate(out) if i != damaged)


# --------------------------------------------------------------------------------------------
# Model files


def test_a_saved_model_loads_to_identical_estimates(
    model: SohModel, fresh: tuple[FloatArray, Rows], tmp_path: Path
) -> None:
    """JSON round trip: bit-identical estimates, and saving again gives the same bytes."""
    truth, rows = fresh
    path = tmp_path / "model.json"
    save_model(model, path)
    again = load_model(path)
    assert files_in(tmp_path) == ["model.json"]  # atomic write: no temp file left
    design = [DESIGN] * len(truth)
    a = estimate(model, design, rows.U, rows.rated_ah, rows.width_ms)
    b = estimate(again, design, rows.U, rows.rated_ah, rows.width_ms)
    for name in ("soh", "soh_sigma", "resistance_ohm", "error"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    save_model(again, tmp_path / "again.json")
    assert (tmp_path / "again.json").read_bytes() == path.read_bytes()
    json.loads(path.read_text(encoding="utf-8"), parse_constant=pytest.fail)  # strict JSON


def _design(d: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = d["designs"][DESIGN]
    return entry


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(d: dict[str, Any]) -> None:
        d[key] = value

    return change


def _set_in_design(key: str, value: Callable[[Any], Any]) -> Callable[[dict[str, Any]], None]:
    def change(d: dict[str, Any]) -> None:
        _design(d)[key] = value(_design(d)[key])

    return change


def _nan_first(v: Any) -> Any:
    """The first number of a (nested) list, or the number itself, made NaN."""
    if isinstance(v, list):
        return [_nan_first(v[0]), *v[1:]]
    return float("nan")


def _huge_first(v: Any) -> Any:
    """The first number made 1e300 (finite in float64, beyond float32), or 1e-300 for a scale
    (whose inverse overflows)."""
    if isinstance(v, list):
        return [_huge_first(v[0]), *v[1:]]
    return 1e300


def _tiny_first(v: Any) -> Any:
    if isinstance(v, list):
        return [_tiny_first(v[0]), *v[1:]]
    return 1e-300


def _inf_last(v: Any) -> Any:
    if isinstance(v, list):
        return [*v[:-1], _inf_last(v[-1])]
    return float("inf")


MODEL_TEXT_CASES = [
    pytest.param(lambda text: b"not json at all", id="not-json"),
    pytest.param(lambda text: b"", id="empty"),
    pytest.param(lambda text: b"[1, 2, 3]", id="json-array"),
    pytest.param(lambda text: b'"a model"', id="json-string"),
    pytest.param(lambda text: b"null", id="json-null"),
    pytest.param(lambda text: text[: len(text) // 2], id="truncated"),
    pytest.param(lambda text: text[:-1], id="last-brace-missing"),
    pytest.param(lambda text: b"[" * 100_000, id="deeply-nested-arrays"),
    pytest.param(lambda text: b'{"a":' * 100_000, id="deeply-nested-objects"),
    pytest.param(lambda text: b"[" * 100_000 + b"]" * 100_000, id="deeply-nested-valid"),
    pytest.param(lambda text: text.decode().encode("utf-16"), id="utf16"),
    pytest.param(lambda text: b"\xff" + text, id="invalid-utf8"),
    pytest.param(_huge_integer, id="huge-integer"),
]

# every number of a design entry
NUMBER_FIELDS = [
    "feature_mean",
    "feature_scale",
    "projection",
    "centres",
    "rbf_weights",
    "linear_weights",
    "sigma_knots",
    "sigma_values",
    "intercept",
    "gamma",
    "rated_ah",
    "u_window",
    "width_range_ms",
    "soh_clip",
]
MODEL_DICT_CASES = [
    pytest.param(_set("format", "battery-passport/other"), id="wrong-format"),
    pytest.param(lambda d: d.pop("format"), id="no-format"),
    pytest.param(_set("version", soh.MODEL_VERSION + 1), id="newer-version"),
    pytest.param(_set("version", soh.MODEL_VERSION - 1), id="older-version"),
    pytest.param(_set("version", str(soh.MODEL_VERSION)), id="version-as-text"),
    pytest.param(_set("feature_digest", "0" * 64), id="other-feature-definitions"),
    pytest.param(lambda d: d.pop("designs"), id="no-designs"),
    pytest.param(_set("designs", [1, 2]), id="designs-a-list"),
    pytest.param(_set("settings", None), id="settings-null"),
    pytest.param(_set("settings", {"no_such_setting": 1}), id="unknown-setting"),
    pytest.param(_set("prior", "x"), id="prior-a-string"),
    pytest.param(lambda d: d["designs"].update(OTHER=_design(d)), id="entry-names-other-design"),
    pytest.param(lambda d: _design(d).pop("summary"), id="design-without-summary"),
    pytest.param(_set_in_design("gamma", lambda v: "wide"), id="gamma-a-string"),
    pytest.param(_set_in_design("u_window", lambda v: [1, 2, 3]), id="window-of-three"),
    # wrong shapes
    pytest.param(_set_in_design("feature_mean", lambda v: v[:-1]), id="shape-feature-mean"),
    pytest.param(_set_in_design("feature_scale", lambda v: v + v), id="shape-feature-scale"),
    pytest.param(_set_in_design("projection", lambda v: v[:-1]), id="shape-projection"),
    pytest.param(
        _set_in_design("projection", lambda v: [[*v[0], 1.0], *v[1:]]), id="ragged-projection"
    ),
    pytest.param(_set_in_design("centres", lambda v: v[:-1]), id="shape-centres"),
    pytest.param(_set_in_design("rbf_weights", lambda v: v[:-1]), id="shape-rbf-weights"),
    pytest.param(_set_in_design("rbf_weights", lambda v: [v]), id="rbf-weights-2d"),
    pytest.param(_set_in_design("linear_weights", lambda v: v[:-1]), id="shape-linear-weights"),
    pytest.param(_set_in_design("sigma_values", lambda v: v[:-1]), id="shape-sigma-values"),
    pytest.param(_set_in_design("sigma_knots", lambda v: []), id="no-sigma-knots"),
    pytest.param(_set_in_design("feature_names", lambda v: ["zzz", *v[1:]]), id="unknown-feature"),
    pytest.param(_set_in_design("u_columns", lambda v: [99] * len(v)), id="u-column-beyond-u41"),
    pytest.param(_set_in_design("u_columns", lambda v: v[:2]), id="u-columns-miss-features"),
    # non-finite numbers (JSON itself has none: a NaN literal is a damaged or forged file)
    *(
        pytest.param(_set_in_design(key, _nan_first), id=f"nan-{key.replace('_', '-')}")
        for key in NUMBER_FIELDS
    ),
    *(
        pytest.param(_set_in_design(key, _inf_last), id=f"inf-{key.replace('_', '-')}")
        for key in ("linear_weights", "sigma_values", "intercept", "u_window")
    ),
    # finite in float64 but overflowing the float32 products inference folds the model into
    *(
        pytest.param(_set_in_design(key, _huge_first), id=f"float32-overflow-{key}")
        for key in ("linear_weights", "rbf_weights", "centres", "gamma", "feature_mean")
    ),
    pytest.param(_set_in_design("feature_scale", _tiny_first), id="float32-overflow-scale"),
]


@pytest.fixture(scope="module")
def model_text(model: SohModel) -> bytes:
    return model.to_json().encode("utf-8")


def _assert_refused(path: Path) -> None:
    with pytest.raises(InputError) as info:
        load_model(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("content", MODEL_TEXT_CASES)
def test_a_damaged_model_file_is_refused_naming_it(
    model_text: bytes, tmp_path: Path, content: Callable[[bytes], bytes]
) -> None:
    """Whatever the bytes: an InputError naming the file (no JSON, recursion, value or type
    error escaping)."""
    path = tmp_path / "model.json"
    path.write_bytes(content(model_text))
    _assert_refused(path)


@pytest.mark.parametrize("change", MODEL_DICT_CASES)
def test_an_inconsistent_model_is_refused_naming_it(
    model: SohModel, tmp_path: Path, change: Callable[[dict[str, Any]], None]
) -> None:
    """Valid JSON that is not a model this code can run faithfully: refused when loaded, not
    discovered as NaN estimates without an error code."""
    d = copy.deepcopy(model.to_dict())
    change(d)
    path = tmp_path / "model.json"
    path.write_text(json.dumps(d), encoding="utf-8")
    _assert_refused(path)


def test_a_huge_model_file_is_refused_before_reading(tmp_path: Path) -> None:
    """Over the size limit (a sparse file: nothing is really written or read)."""
    path = tmp_path / "model.json"
    with open(path, "wb") as fh:
        fh.truncate(soh.MODEL_FILE_LIMIT + 1)
    _assert_refused(path)


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_a_model_path_that_is_not_a_file_is_refused(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "model.json"
    if kind == "directory":
        path.mkdir()
    _assert_refused(path)


# --------------------------------------------------------------------------------------------
# Raw traces


def test_a_trace_file_gives_the_turning_points_of_the_arrays(tmp_path: Path) -> None:
    """Written to CSV and read back, the traces extract to exactly what `extract` gives on the
    arrays (repr round-trips every float)."""
    _, code, t, current, voltage = trace_arrays(5, seed=21)
    path = write_rows(tmp_path / "t.csv", TRACE_HEADER, trace_lines(code, t, current, voltage))
    expected = extract(code, t, current, voltage)
    chunks = list(read_trace_csv(path))
    assert len(chunks) == 1
    assert chunks[0].cell_id == [f"T{c}" for c in range(5)]
    assert chunks[0].error == [""] * 5
    assert chunks[0].design == [""] * 5
    per_cell = len(code) // 5
    assert chunks[0].line == [2 + per_cell * c for c in range(5)]
    rows = trace_chunk_to_rows(chunks[0])
    np.testing.assert_array_equal(rows.U, expected.U)
    np.testing.assert_array_equal(rows.width_ms, expected.width_ms)
    np.testing.assert_array_equal(rows.rated_ah, expected.rated_ah)
    np.testing.assert_allclose(rows.width_ms, 1000.0)
    np.testing.assert_allclose(rows.rated_ah, RATED)
    assert (rows.error == "").all()


@pytest.mark.parametrize("chunk_samples", [1, 7, 100, 250])
def test_cells_are_never_split_across_trace_chunks(tmp_path: Path, chunk_samples: int) -> None:
    """Small chunks hold whole cells only, and together give what one chunk gives."""
    _, code, t, current, voltage = trace_arrays(9, seed=22)
    per_cell = len(code) // 9
    path = write_rows(tmp_path / "t.csv", TRACE_HEADER, trace_lines(code, t, current, voltage))
    whole = trace_chunk_to_rows(next(iter(read_trace_csv(path))))
    chunks = list(read_trace_csv(path, chunk_samples=chunk_samples))
    assert len(chunks) > 1
    for chunk in chunks:
        counts = np.bincount(chunk.code, minlength=len(chunk.cell_id))
        assert (counts == per_cell).all(), counts
        assert len(chunk.t) <= max(chunk_samples, 1) + per_cell
    assert [c for chunk in chunks for c in chunk.cell_id] == [f"T{c}" for c in range(9)]
    parts = [trace_chunk_to_rows(c) for c in chunks]
    np.testing.assert_array_equal(concat(parts, "U"), whole.U)
    np.testing.assert_array_equal(concat(parts, "line"), whole.line)


def test_progress_on_a_trace_file_counts_lines_not_cells(
    model: SohModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI's bar totals the file's lines: a trace chunk reports the lines it read (up to
    its last cell's first sample), not the cells it gave."""
    _, code, t, current, voltage = trace_arrays(9, seed=32)
    per_cell = len(code) // 9
    lines = trace_lines(code, t, current, voltage, lambda c: DESIGN)
    path = write_rows(tmp_path / "t.csv", [*TRACE_HEADER, "design"], lines)
    monkeypatch.setattr(
        soh_tables, "read_trace_csv", partial(read_trace_csv, chunk_samples=2 * per_cell)
    )
    progress: list[int] = []
    estimate_csv(model, path, tmp_path / "out.csv", on_progress=progress.append)
    # chunks of two cells; each reports the lines up to its last cell's first sample
    assert progress == [1 + per_cell] + [2 * per_cell] * 3 + [per_cell]
    assert (
        sum(progress) == 1 + 8 * per_cell
    )  # the last cell's first sample is line 2 + 8 * per_cell


def test_a_cell_that_reappears_is_refused_naming_the_line(tmp_path: Path) -> None:
    """Samples of a cell must be contiguous: A, B, A is an InputError at A's return."""
    _, code, t, current, voltage = trace_arrays(3, seed=23)
    lines = trace_lines(code, t, current, voltage)
    per_cell = len(code) // 3
    a, b, c = (lines[k * per_cell : (k + 1) * per_cell] for k in range(3))
    mixed = a[:10] + b + a[10:] + c  # A's 11th sample comes back after B: file line 2 + 10 + B
    path = write_rows(tmp_path / "t.csv", TRACE_HEADER, mixed)
    with pytest.raises(InputError) as info:
        list(read_trace_csv(path))
    message = str(info.value)
    assert str(path) in message
    assert f"line {2 + 10 + per_cell}" in message
    assert "T0" in message


def test_time_going_backwards_spoils_only_that_cell(tmp_path: Path) -> None:
    _, code, t, current, voltage = trace_arrays(3, seed=24)
    per_cell = len(code) // 3
    t = t.copy()
    k = per_cell + 20  # two samples of the second cell swap their times
    t[k], t[k + 1] = t[k + 1], t[k]
    path = write_rows(tmp_path / "t.csv", TRACE_HEADER, trace_lines(code, t, current, voltage))
    (chunk,) = read_trace_csv(path)
    assert chunk.error == ["", ERR_NOT_MONOTONIC, ""]
    rows = trace_chunk_to_rows(chunk)
    assert rows.error.tolist() == ["", ERR_NOT_MONOTONIC, ""]
    fine = extract(code[code != 1], t[code != 1], current[code != 1], voltage[code != 1])
    np.testing.assert_array_equal(rows.U[[0, 2]], fine.U)


@pytest.mark.parametrize(
    ("column", "value"),
    [(1, "x"), (2, ""), (3, "nan"), (3, "1e999")],
    ids=["time-text", "current-empty", "voltage-nan", "voltage-overflow"],
)
def test_an_unparsable_sample_spoils_only_that_cell(
    tmp_path: Path, column: int, value: str
) -> None:
    _, code, t, current, voltage = trace_arrays(3, seed=25)
    lines = trace_lines(code, t, current, voltage)
    per_cell = len(code) // 3
    lines[2 * per_cell + 5][column] = value  # the third cell
    path = write_rows(tmp_path / "t.csv", TRACE_HEADER, lines)
    (chunk,) = read_trace_csv(path)
    assert chunk.error == ["", "", ERR_BAD_ROW]
    assert trace_chunk_to_rows(chunk).error.tolist() == ["", "", ERR_BAD_ROW]


def test_a_trace_cut_short_is_an_incomplete_trace(model: SohModel, tmp_path: Path) -> None:
    """A cell whose recording stops after the 0.5 C block lacks the turning points the model
    needs: documented as `incomplete-trace`; the cells around it are fine."""
    _, code, t, current, voltage = trace_arrays(3, seed=26, samples=3)
    per_cell = len(code) // 3
    keep = np.ones(len(code), dtype=bool)
    keep[per_cell + 5 * 3 : 2 * per_cell] = False  # the second cell: rest + 4 segments only
    lines = trace_lines(code[keep], t[keep], current[keep], voltage[keep], lambda c: DESIGN)
    path = write_rows(tmp_path / "t.csv", [*TRACE_HEADER, "design"], lines)
    estimate_csv(model, path, tmp_path / "out.csv")
    out = read_out(tmp_path / "out.csv")
    assert [r["error"] for r in out] == ["", ERR_INCOMPLETE_TRACE, ""]


def test_estimate_csv_on_a_trace_file_gives_one_row_per_cell(
    model: SohModel, tmp_path: Path
) -> None:
    """Told apart by its header; adds width_ms and rated_ah; estimates match the truth."""
    truth, code, t, current, voltage = trace_arrays(12, seed=27, samples=4)
    lines = trace_lines(code, t, current, voltage, lambda c: DESIGN)
    path = write_rows(tmp_path / "t.csv", [*TRACE_HEADER, "design"], lines)
    summary = estimate_csv(model, path, tmp_path / "out.csv")
    out = read_out(tmp_path / "out.csv")
    assert summary.to_dict()["input"] == "traces"
    assert list(out[0]) == [*OUTPUT_COLUMNS, "width_ms", "rated_ah"]
    assert [r["cell_id"] for r in out] == [f"T{c}" for c in range(12)]
    per_cell = len(code) // 12
    assert [int(r["line"]) for r in out] == [2 + per_cell * c for c in range(12)]
    assert [r["error"] for r in out] == [""] * 12
    assert all(float(r["width_ms"]) == pytest.approx(1000.0) for r in out)
    assert all(float(r["rated_ah"]) == pytest.approx(RATED) for r in out)
    got = np.array([float(r["soh"]) for r in out])
    assert np.abs(got - truth).mean() < 0.02


def test_the_design_option_fills_a_missing_design(model: SohModel, tmp_path: Path) -> None:
    """No design column: `design=` names it (without it: no-model). An empty design cell is
    filled too; a named one is kept."""
    _, code, t, current, voltage = trace_arrays(3, seed=28)
    plain = write_rows(tmp_path / "p.csv", TRACE_HEADER, trace_lines(code, t, current, voltage))
    estimate_csv(model, plain, tmp_path / "none.csv")
    assert [r["error"] for r in read_out(tmp_path / "none.csv")] == [ERR_NO_MODEL] * 3
    estimate_csv(model, plain, tmp_path / "filled.csv", design=DESIGN)
    filled = read_out(tmp_path / "filled.csv")
    assert [(r["design"], r["error"]) for r in filled] == [(DESIGN, "")] * 3

    names = {0: "", 1: DESIGN, 2: "OTHER-1Ah"}
    lines = trace_lines(code, t, current, voltage, names.__getitem__)
    mixed = write_rows(tmp_path / "m.csv", [*TRACE_HEADER, "design"], lines)
    estimate_csv(model, mixed, tmp_path / "mixed.csv", design=DESIGN)
    out = read_out(tmp_path / "mixed.csv")
    assert [(r["design"], r["error"]) for r in out] == [
        (DESIGN, ""),
        (DESIGN, ""),
        ("OTHER-1Ah", ERR_NO_MODEL),
    ]


def runs_file(tmp_path: Path, seed: int) -> tuple[Path, list[list[str]], FloatArray, int]:
    """Three cells tested twice each: blocks T0..T5 of the arrays are cell P<k // 2>, run
    r<k % 2>. (path, lines, the arrays' U per block, samples per block)"""
    _, code, t, current, voltage = trace_arrays(6, seed=seed)
    lines = [
        [f"P{int(c) // 2}", ts, i, v, DESIGN, f"r{int(c) % 2}"]
        for (_, ts, i, v), c in zip(trace_lines(code, t, current, voltage), code, strict=True)
    ]
    header = [*TRACE_HEADER, "design", "run"]
    path = write_rows(tmp_path / "runs.csv", header, lines)
    return path, lines, extract(code, t, current, voltage).U, len(code) // 6


def test_the_runs_of_one_cell_give_a_row_each(model: SohModel, tmp_path: Path) -> None:
    """A cell tested twice (a `run` column tells the protocol runs apart): one row per run,
    with its own turning points; `--per-cell` joins them as the intake does."""
    path, _, U, per_run = runs_file(tmp_path, seed=29)
    (chunk,) = read_trace_csv(path)
    assert chunk.cell_id == ["P0", "P0", "P1", "P1", "P2", "P2"]
    assert chunk.run == ["r0", "r1"] * 3
    np.testing.assert_array_equal(trace_chunk_to_rows(chunk).U, U)
    estimate_csv(model, path, tmp_path / "out.csv", per_cell=True)
    out = read_out(tmp_path / "out.csv")
    assert [(r["cell_id"], r["run"], r["error"]) for r in out] == [
        (f"P{k // 2}", f"r{k % 2}", "") for k in range(6)
    ]
    assert [int(r["line"]) for r in out] == [2 + per_run * k for k in range(6)]
    assert [r["cell_rows"] for r in out] == ["2"] * 6
    rho = model.models[DESIGN].row_correlation
    for k in range(0, 6, 2):
        pair = out[k : k + 2]
        soh, sigma = soh_combine(
            [float(r["soh"]) for r in pair], [float(r["soh_sigma"]) for r in pair], rho
        )
        assert float(pair[0]["cell_soh"]) == pytest.approx(soh, rel=1e-5)
        assert float(pair[1]["cell_soh_sigma"]) == pytest.approx(sigma, rel=1e-5)


def test_the_intake_measures_a_cell_from_all_its_runs(model: SohModel, tmp_path: Path) -> None:
    from passport.intake.measure import measure

    path, _, _, _ = runs_file(tmp_path, seed=30)
    got = measure(model, path, {})
    assert sorted(got) == ["P0", "P1", "P2"]
    assert all((m.rows, m.combined, m.error) == (2, 2, "") for m in got.values())


def test_a_run_that_comes_back_is_refused_naming_the_line(tmp_path: Path) -> None:
    """Runs of a cell are contiguous blocks: P0 r0, P0 r1, P0 r0 again is an InputError."""
    path, lines, _, per_run = runs_file(tmp_path, seed=31)
    back = lines[:per_run] + lines[per_run : 2 * per_run] + [lines[0]] + lines[2 * per_run :]
    write_rows(path, [*TRACE_HEADER, "design", "run"], back)
    with pytest.raises(InputError) as info:
        list(read_trace_csv(path))
    message = str(info.value)
    assert f"line {2 + 2 * per_run}" in message
    assert "run 'r0' of cell 'P0'" in message


@pytest.mark.parametrize(
    "header",
    [["cell_id", "t_s", "current_a"], ["t_s", "current_a", "voltage_v"]],
    ids=["no-voltage", "no-cell-id"],
)
def test_a_trace_file_without_its_columns_is_refused(tmp_path: Path, header: list[str]) -> None:
    path = write_rows(tmp_path / "t.csv", header, [["1"] * len(header)])
    with pytest.raises(InputError) as info:
        list(read_trace_csv(path))
    assert str(path) in str(info.value)


# --------------------------------------------------------------------------------------------
# Property: any small table


CELL_TEXT = st.one_of(
    st.just(""),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.floats(3.0, 4.5).map(lambda x: f"{x:.4f}"),
    st.sampled_from(["5", "1000", "abc", "-", " ", "1e999", "nan", "0x10", "3,6", '"', "\x00"]),
    st.text(max_size=6),
)


@st.composite
def tables(draw: st.DrawFn) -> tuple[list[str], list[list[str]], bool]:
    """A header (sometimes without a required column) and rows of random cells."""
    u = draw(st.lists(st.sampled_from(U_COLUMNS), min_size=1, max_size=6, unique=True))
    optional = draw(st.lists(st.sampled_from(["soh", "soc_pct", *CLAIM_COLUMNS]), unique=True))
    header = ["design", "rated_ah", "pulse_width_ms", "cell_id", *optional, *u]
    drop = draw(st.sampled_from([None, None, None, "design", "cell_id", "rated_ah"]))
    if drop is not None:
        header.remove(drop)
    header = draw(st.permutations(header))
    design_cell = st.sampled_from([DESIGN, "", "OTHER"])
    rows = draw(
        st.lists(
            st.lists(st.one_of(design_cell, CELL_TEXT), min_size=1, max_size=len(header) + 2),
            max_size=8,
        )
    )
    return list(header), rows, drop is not None


def _data_rows(path: Path) -> Iterator[int]:
    """The line each row a CSV reader sees starts on (blank rows skipped; a quoted field may
    span lines)."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        next(reader)
        before = reader.line_num
        for row in reader:
            start, before = before + 1, reader.line_num
            if row and not (len(row) == 1 and not row[0].strip()):
                yield start


@settings(max_examples=150)
@given(table=tables())
def test_any_small_table_gives_one_row_per_input_row(
    model: SohModel, table: tuple[list[str], list[list[str]], bool]
) -> None:
    """Whatever the cells hold, every data row comes out once, in order, with its line number;
    the only exception is an InputError naming the file, for a missing required column."""
    header, rows, broken = table
    with tempfile.TemporaryDirectory() as tmp:
        src = write_rows(Path(tmp) / "in.csv", header, rows)
        out = Path(tmp) / "out.csv"
        if broken:
            with pytest.raises(InputError) as info:
                estimate_csv(model, src, out)
            assert str(src) in str(info.value)
            assert files_in(Path(tmp)) == ["in.csv"]
            return
        summary = estimate_csv(model, src, out)
        lines = list(_data_rows(src))
        got = read_out(out)
        assert [int(r["line"]) for r in got] == lines
        assert summary.rows == len(lines)
        for r in got:
            assert (r["error"] == "") == (r["soh"] != "")
            assert r["error"] in ("", ERR_BAD_ROW, ERR_NO_MODEL, ERR_MISSING, ERR_OUT_OF_RANGE)


_FIELDS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", "  ", " 1.5 ", "nan", "-inf", "1e999", "abc", "1,5", "0x10", "1_0"]),
)


@settings(max_examples=200)
@given(st.lists(_FIELDS, max_size=12))
def test_a_column_parses_as_its_fields_do_one_by_one(texts: list[str]) -> None:
    """The column parser (C-speed when every field is a finite number) gives, field by field,
    what `_number` gives: the value, NaN for an empty field, the row marked wrong otherwise."""
    from passport.soh.io import _number, _numbers

    values, wrong = _numbers(texts)
    for k, text in enumerate(texts):
        try:
            expected = _number(text)
        except ValueError:
            assert wrong is not None
            assert wrong[k]
            continue
        assert wrong is None or not wrong[k]
        assert values[k] == expected or (np.isnan(values[k]) and np.isnan(expected))


@st.composite
def trace_tables(draw: st.DrawFn) -> list[list[str]]:
    """Rows of a trace file with a run column: a few cells and runs, hostile numbers."""
    row = st.tuples(
        st.sampled_from(["A", "B", " A ", ""]),
        CELL_TEXT,
        CELL_TEXT,
        CELL_TEXT,
        st.sampled_from(["r1", "r2", ""]),
    ).map(list)
    return draw(st.lists(row, max_size=12))


@settings(max_examples=150)
@given(rows=trace_tables())
def test_any_small_trace_file_gives_a_row_per_block_or_names_the_line(
    model: SohModel, rows: list[list[str]]
) -> None:
    """Whatever the fields hold, each (cell, run) block comes out once, in order; a cell or a
    run that comes back is an InputError naming the file; nothing else is raised."""
    with tempfile.TemporaryDirectory() as tmp:
        src = write_rows(Path(tmp) / "t.csv", [*TRACE_HEADER, "run"], rows)
        out = Path(tmp) / "out.csv"
        keys: list[tuple[str, str]] = []
        returns = False
        with open(src, newline="", encoding="utf-8") as fh:  # the rows as a reader sees them
            read = list(csv.reader(fh))[1:]  # (a lone CR in a field ends a line there)
        for row in read:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # blank
            key = (row[0].strip(), row[4].strip() if len(row) > 4 else "")
            if keys and key == keys[-1]:
                continue
            cells = {k[0] for k in keys}
            if key in keys or (keys and key[0] != keys[-1][0] and key[0] in cells):
                returns = True
            keys.append(key)
        if returns:
            with pytest.raises(InputError) as info:
                estimate_csv(model, src, out, design=DESIGN)
            assert str(src) in str(info.value)
            assert "not contiguous" in str(info.value)
            return
        estimate_csv(model, src, out, design=DESIGN)
        got = read_out(out)
        assert [(r["cell_id"], r["run"]) for r in got] == keys
        assert all(r["error"] for r in got)  # no such trace holds a whole protocol
