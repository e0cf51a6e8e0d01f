"""`passport soh evaluate` / `passport.soh.evaluate_csv`: a model scored on the user's own
reference cells. Figures must be those of the estimates the CLI writes, rows that cannot be
scored are counted by reason, bad input exits 2 naming the file."""

from __future__ import annotations

import csv
import json
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_soh_cli import (
    DESIGN,
    HEADER,
    assert_one_line_error,
    read_csv,
    run,
    write_cells,
    write_noisy,
)
from test_soh_parquet import to_parquet

import passport.soh.evaluate as soh_evaluate
from passport.soh import evaluate_csv, load_model
from passport.soh.evaluate import _BIN, _Design
from passport.soh.io import read_pulse_csv
from passport.soh.model import Z90


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Relative paths land in the test's own directory."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    train = write_cells(tmp_path_factory.mktemp("train") / "train.csv", 100, seed=41)
    out = train.parent / "model.json"
    assert run("soh", "fit", train, "--out", out).exit_code == 0
    return out


def _figures(estimates: Path, table: Path) -> dict[str, float]:
    """What evaluate should report, from the CLI's own estimates of the same rows."""
    truth = np.array([float(r["soh"]) for r in read_csv(table)])
    rows = read_csv(estimates)
    soh = np.array([float(r["soh"]) for r in rows])
    sigma = np.array([float(r["soh_sigma"]) for r in rows])
    err = (soh - truth) * 100
    return {
        "mae": float(np.abs(err).mean()),
        "p95": float(np.quantile(np.abs(err), 0.95)),
        "bias": float(err.mean()),
        "coverage_90": float(np.mean(np.abs(err) <= Z90 * sigma * 100)),
        "mean_sigma": float(sigma.mean() * 100),
    }


def test_figures_are_those_of_the_estimates_the_cli_writes(model_file: Path) -> None:
    table = write_cells(Path("new.csv"), 150, seed=42, prefix="n")
    assert run("soh", "estimate", "--model", model_file, table, "--out", "est.csv").exit_code == 0
    want = _figures(Path("est.csv"), table)
    result = run("soh", "evaluate", "--model", model_file, table, "--json")
    assert result.exit_code == 0, result.stderr
    got = json.loads(result.stdout)
    assert got["rows"] == 150
    mine = got["designs"][DESIGN]
    assert mine["estimated"] == mine["rows"] == mine["cells"] == 150
    for key, value in want.items():  # the CSV holds 6 decimals; P95 sits in 0.01-point bins
        assert mine[key] == pytest.approx(value, abs=6e-3), key
    assert got["mean_over_designs"]["mae"] == pytest.approx(mine["mae"], abs=1e-3)
    own = load_model(model_file).models[DESIGN].summary
    assert mine["model_cv"]["mae"] == pytest.approx(own.cv_mae * 100, abs=1e-3)
    assert mine["model_cv"]["cells"] == own.n_cells == 100
    assert DESIGN in result.stderr  # the table
    assert "mean over designs: MAE" in result.stderr


def test_rows_unlike_the_training_cells_are_counted_with_their_mae(model_file: Path) -> None:
    """Clean new cells count none or almost none as far from training; the same cells with 5
    mV of noise on every voltage count most, and the MAE among them is that of those rows
    in the CLI's own estimates (marked unlike_training)."""
    clean = write_cells(Path("clean.csv"), 60, seed=44, prefix="c")
    noisy = write_noisy(clean, Path("noisy.csv"), 0.005, seed=1)
    got = {}
    for name, table in (("clean", clean), ("noisy", noisy)):
        result = run("soh", "evaluate", "--model", model_file, table, "--json")
        assert result.exit_code == 0, result.stderr
        got[name] = json.loads(result.stdout)["designs"][DESIGN]["unlike_training"]
        assert (
            run("soh", "estimate", "-m", model_file, table, "-o", f"{name}-est.csv").exit_code == 0
        )
        est = read_csv(Path(f"{name}-est.csv"))
        far = [r for r in est if r["unlike_training"] == "1"]
        truth = {r["cell_id"]: float(r["soh"]) for r in read_csv(table)}
        assert got[name]["rows"] == len(far)
        assert got[name]["share"] == pytest.approx(len(far) / len(est), abs=1e-4)
        if far:
            mae = np.mean([abs(float(r["soh"]) - truth[r["cell_id"]]) * 100 for r in far])
            assert got[name]["mae"] == pytest.approx(mae, abs=1e-3)
            assert f"{len(far)} rows" in result.stderr
        else:
            assert got[name]["mae"] is None
    assert got["clean"]["rows"] <= 2
    assert got["noisy"]["rows"] >= 30


def _table_with_trouble(path: Path) -> tuple[Path, dict[str, int]]:
    """Eight good rows, then one row of each kind that cannot be scored."""
    write_cells(path, 8, seed=43)
    rows = read_csv(path)
    good = rows[0]

    def variant(**change: str) -> dict[str, str]:
        return {**good, **change}

    rows += [
        variant(cell_id="x-no-soh", soh=""),
        variant(cell_id="x-percent", soh="85"),
        variant(cell_id="x-zero", soh="0"),
        variant(cell_id="x-bad", U7="volts"),
        variant(cell_id="x-range", U1="9.5"),
        variant(cell_id="x-design", design="OTHER-1Ah"),
    ]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, HEADER, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    expected = {"bad-row": 1, "no-soh": 1, "out-of-range": 1, "soh-out-of-range": 2}
    return path, expected


def test_rows_that_cannot_be_scored_are_counted_by_reason(model_file: Path) -> None:
    table, expected = _table_with_trouble(Path("trouble.csv"))
    got = evaluate_csv(load_model(model_file), table)
    assert got.rows == 14
    mine = got.designs[DESIGN]
    assert mine["rows"] == 13
    assert mine["estimated"] == 8
    assert mine["errors"] == expected
    other = got.designs["OTHER-1Ah"]
    assert other["errors"] == {"no-model": 1}
    assert other["estimated"] == 0
    assert "mae" not in other
    assert "model_cv" not in other
    assert got.mean["mae"] == mine["mae"]  # designs without estimates are left out
    result = run("soh", "evaluate", "--model", model_file, table)
    assert result.exit_code == 0
    assert "OTHER-1Ah: not scored: no-model 1" in result.stderr
    assert f"{DESIGN}: not scored: bad-row 1, no-soh 1, out-of-range 1, soh-out-of-range 2" in (
        result.stderr
    )


def _tested_twice(path: Path, n: int) -> Path:
    """`n` cells, each with two consecutive rows (the second 0.3 mV off): one test, two rows."""
    write_cells(path, n, seed=45)
    rng = np.random.default_rng(46)
    rows = []
    for r in read_csv(path):
        again = {k: (repr(float(v) + rng.normal(0, 3e-4)) if k.startswith("U") and v else v)
                 for k, v in r.items()}  # fmt: skip
        rows += [r, again]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, HEADER, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_per_cell_figures_are_those_of_estimate_per_cell(model_file: Path) -> None:
    table = _tested_twice(Path("twice.csv"), 60)
    done = run("soh", "estimate", "--model", model_file, table, "--per-cell", "--out", "e.csv")
    assert done.exit_code == 0
    rows = read_csv(Path("e.csv"))
    first = rows[::2]  # a run's figures are on each of its rows
    assert all(r["cell_rows"] == "2" for r in first)
    truth = np.array([float(r["soh"]) for r in read_csv(table)][::2])
    soh = np.array([float(r["cell_soh"]) for r in first])
    sigma = np.array([float(r["cell_soh_sigma"]) for r in first])
    err = (soh - truth) * 100
    result = run("soh", "evaluate", "--model", model_file, table, "--per-cell", "--json")
    assert result.exit_code == 0, result.stderr
    got = json.loads(result.stdout)
    cells = got["designs"][DESIGN]["per_cell"]
    assert cells["estimated"] == 60
    assert cells["rows_per_cell"] == 2.0
    assert cells["mae"] == pytest.approx(np.abs(err).mean(), abs=6e-3)
    assert cells["p95"] == pytest.approx(np.quantile(np.abs(err), 0.95), abs=6e-3)
    assert cells["bias"] == pytest.approx(err.mean(), abs=6e-3)
    assert cells["coverage_90"] == pytest.approx(
        np.mean(np.abs(err) <= Z90 * sigma * 100), abs=1e-3
    )
    assert got["mean_per_cell"]["mae"] == pytest.approx(cells["mae"], abs=1e-3)
    assert got["designs"][DESIGN]["estimated"] == 120  # the per-row figures are still there
    assert "per cell: runs" in result.stderr


def test_a_run_is_scored_from_its_rows_with_a_measured_soh(model_file: Path) -> None:
    """Rows without a usable soh or estimate are left out of their run; a run with none left
    is not scored."""
    table = _tested_twice(Path("twice.csv"), 3)
    rows = read_csv(table)
    rows[1]["soh"] = ""  # c000: one row left
    rows[2]["U7"] = rows[3]["U7"] = "x"  # c001: nothing left
    with open(table, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, HEADER, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    model = load_model(model_file)
    got = evaluate_csv(model, table, per_cell=True).designs[DESIGN]
    assert got["estimated"] == 3
    assert got["per_cell"]["estimated"] == 2
    assert got["per_cell"]["rows_per_cell"] == 1.5
    one = evaluate_csv(model, table).designs[DESIGN]
    assert "per_cell" not in one


def test_chunks_give_the_same_figures(model_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs that straddle chunks included: per-cell figures do not depend on the chunking."""
    table, _ = _table_with_trouble(Path("trouble.csv"))
    twice = _tested_twice(Path("twice.csv"), 7)
    model = load_model(model_file)
    whole = evaluate_csv(model, table, per_cell=True).to_dict()
    whole_twice = evaluate_csv(model, twice, per_cell=True).to_dict()
    monkeypatch.setattr(soh_evaluate, "read_pulse_csv", partial(read_pulse_csv, chunk_rows=3))
    seen: list[int] = []
    assert evaluate_csv(model, table, per_cell=True, on_progress=seen.append).to_dict() == whole
    assert seen == [3, 3, 3, 3, 2]  # lines read, chunk by chunk
    assert evaluate_csv(model, twice, per_cell=True).to_dict() == whole_twice
    # a run as long as the cap is not held back: it is cut where its chunk ends; of the 7
    # two-row runs in chunks of 3 rows, two straddle a chunk's end (rows 3|4 and 9|10)
    monkeypatch.setattr(soh_evaluate, "PER_CELL_MAX_ROWS", 1)
    cut = evaluate_csv(model, twice, per_cell=True).designs[DESIGN]["per_cell"]
    assert cut["estimated"] == 9


def test_parquet_gives_what_its_csv_gives(model_file: Path) -> None:
    table, _ = _table_with_trouble(Path("trouble.csv"))
    model = load_model(model_file)
    from_csv = evaluate_csv(model, table).to_dict()
    from_parquet = evaluate_csv(model, to_parquet(table)).to_dict()
    assert {k: v for k, v in from_parquet.items() if k != "input"} == {
        k: v for k, v in from_csv.items() if k != "input"
    }


def _no_soh_column(path: Path) -> str:
    write_cells(path, 3, seed=44)
    rows = read_csv(path)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, [h for h in HEADER if h != "soh"], lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: v for k, v in r.items() if k != "soh"} for r in rows)
    return "no 'soh' column"


def _trace_file(path: Path) -> str:
    path.write_text("cell_id,t_s,current_a,voltage_v\na,0,0,3.3\n", encoding="utf-8")
    return "trace file"


def _missing(path: Path) -> str:
    return "No such file"


def _empty(path: Path) -> str:
    path.write_bytes(b"")
    return "empty file"


def _other_columns(path: Path) -> str:
    path.write_text("a,b\n1,2\n", encoding="utf-8")
    return "missing columns: design"


@pytest.mark.parametrize("make", [_no_soh_column, _trace_file, _missing, _empty, _other_columns])
def test_unusable_tables_exit_2_naming_the_file(model_file: Path, make: object) -> None:
    path = Path("table.csv")
    reason = make(path)  # type: ignore[operator]
    result = run("soh", "evaluate", "--model", model_file, path)
    assert_one_line_error(result, "table.csv")
    assert reason.lower() in result.stderr.lower()


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(0.0, 0.5, allow_nan=False), min_size=1, max_size=300),
)
def test_p95_from_the_histogram_is_within_half_a_bin_of_the_exact_one(errors: list[float]) -> None:
    acc = _Design()
    truth = np.zeros(len(errors))
    acc.add(truth, np.array(errors), np.ones(len(errors)))
    exact = float(np.quantile(np.array(errors), 0.95))
    assert abs(acc.p95() - exact) <= _BIN / 2 + 1e-12


def test_a_cells_tests_at_two_states_of_charge_are_scored_apart(model_file: Path) -> None:
    """A lab table lists a cell's tests one after another: with soc_pct, consecutive rows of a
    cell split where soc_pct changes (two tests of two rows each here), in evaluate and in
    estimate alike; without the column the four rows are one run."""
    rows = read_csv(_tested_twice(Path("twice.csv"), 20))
    four = []
    for i in range(0, len(rows), 2):
        for soc in ("30", "60"):
            four += [{**rows[i], "soc_pct": soc}, {**rows[i + 1], "soc_pct": soc}]
    with open("socs.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, HEADER, lineterminator="\n")
        writer.writeheader()
        writer.writerows(four)
    result = run("soh", "evaluate", "--model", model_file, "socs.csv", "--per-cell", "--json")
    assert result.exit_code == 0, result.stderr
    cells = json.loads(result.stdout)["designs"][DESIGN]["per_cell"]
    assert cells["estimated"] == 40
    assert cells["rows_per_cell"] == 2.0
    done = run("soh", "estimate", "-m", model_file, "socs.csv", "--per-cell", "-o", "e.csv")
    assert done.exit_code == 0
    assert {r["cell_rows"] for r in read_csv(Path("e.csv"))} == {"2"}
    with open("nosoc.csv", "w", newline="", encoding="utf-8") as fh:
        no_soc = [h for h in HEADER if h != "soc_pct"]
        writer = csv.DictWriter(fh, no_soc, lineterminator="\n", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(four)
    result = run("soh", "evaluate", "--model", model_file, "nosoc.csv", "--per-cell", "--json")
    cells = json.loads(result.stdout)["designs"][DESIGN]["per_cell"]
    assert cells["estimated"] == 20
    assert cells["rows_per_cell"] == 4.0
