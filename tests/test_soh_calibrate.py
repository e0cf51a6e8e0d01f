"""`passport soh calibrate` / `passport.soh.calibrate_csv`: a new design added to a model from a
few calibration cells through its pooled prior, without the model's training data; the other
designs are kept exactly; bad input exits 2 naming the file."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_path
from test_soh_cli import assert_one_line_error, read_csv, run

from passport.soh import calibrate_csv, load_model, physical_cell
from passport.soh.io import read_all

TRAINED = ("LMO-10Ah", "NMC-21Ah")  # small designs: the model fits in seconds
NEW = "NMC-2.1Ah"


def _dev_rows() -> list[dict[str, str]]:
    with open(shared_path("data", "soh", "pulse_features_dev.csv"), newline="") as fh:
        return list(csv.DictReader(fh))


def _write(path: Path, rows: list[dict[str, str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A model of two designs, 3 calibration cells of a third, its other cells, and a few rows
    of a trained design (to check it is kept)."""
    tmp = tmp_path_factory.mktemp("calibrate")
    rows = _dev_rows()
    new = [r for r in rows if r["design"] == NEW]
    cells = sorted({physical_cell(NEW, r["cell_id"]) for r in new})
    cal = set(cells[:3])
    mine = [physical_cell(NEW, r["cell_id"]) in cal for r in new]
    out = {
        "train": _write(tmp / "train.csv", [r for r in rows if r["design"] in TRAINED]),
        "cal": _write(tmp / "cal.csv", [r for r, m in zip(new, mine, strict=True) if m]),
        "rest": _write(tmp / "rest.csv", [r for r, m in zip(new, mine, strict=True) if not m]),
        "old": _write(tmp / "old.csv", [r for r in rows if r["design"] in TRAINED][::7]),
    }
    out["model"] = tmp / "model.json"
    assert run("soh", "fit", out["train"], "--out", out["model"]).exit_code == 0
    return out


def _estimates(model: Path, table: Path, name: str) -> list[dict[str, str]]:
    result = run("soh", "estimate", "--model", model, table, "--out", name)
    assert result.exit_code == 0, result.stderr
    return read_csv(Path(name))


def test_a_new_design_is_calibrated_and_the_others_are_kept(files: dict[str, Path]) -> None:
    before = _estimates(files["model"], files["rest"], "before.csv")
    assert {r["error"] for r in before} == {"no-model"}
    result = run("soh", "calibrate", files["cal"], "--model", files["model"], "--out", "new.json",
                 "--json")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert list(report["calibrated"]) == [NEW]
    assert report["calibrated"][NEW]["cells"] == 3
    assert report["calibrated"][NEW]["warnings"] == []  # its cells span 0.72-0.91
    assert "warning" not in result.stderr
    assert f"{NEW}: 3 cells" in result.stderr
    # the new design's cells the calibration never saw now get estimates
    after = _estimates(Path("new.json"), files["rest"], "after.csv")
    assert {r["error"] for r in after} == {""}
    truth = np.array([float(r["soh"]) for r in read_csv(files["rest"])])
    soh = np.array([float(r["soh"]) for r in after])
    assert np.abs(soh - truth).mean() < 0.1  # a usable model: within 10 points on average
    # the trained designs' estimates are exactly what they were
    assert _estimates(files["model"], files["old"], "a.csv") == _estimates(
        Path("new.json"), files["old"], "b.csv"
    )
    # the CLI writes what the library gives
    table = read_all(files["cal"])
    assert table.design.tolist() == [NEW] * len(table.design)
    library = calibrate_csv(load_model(files["model"]), files["cal"])
    assert load_model(Path("new.json")).to_dict() == library.to_dict()


def test_cells_of_a_narrow_soh_band_get_a_warning(files: dict[str, Path]) -> None:
    """Cells of one band teach nothing about others: estimates outside it are extrapolations
    that neither the cross-validation nor the sigma can see, so the user is told."""
    rows = [r for r in _dev_rows() if r["design"] == NEW and 0.85 <= float(r["soh"]) < 0.9]
    narrow = _write(Path("narrow.csv"), rows)
    result = run("soh", "calibrate", narrow, "--model", files["model"], "--out", "n.json",
                 "--json")  # fmt: skip
    assert result.exit_code == 0, result.stderr  # a warning, not a refusal
    (warning,) = json.loads(result.stdout)["calibrated"][NEW]["warnings"]
    assert "span SoH 0.85-0.90 only" in warning
    assert f"warning: {NEW}: its" in result.stderr
    shown = run("soh", "show", "n.json")
    assert f"warning: {NEW}: its" in shown.stderr
    # held to the prior, with the slopes' own uncertainty in sigma (tests/test_soh_slope.py)
    line = next(x for x in shown.stderr.splitlines() if x.startswith(NEW))
    assert line.endswith(" slopes")
    assert json.loads(run("soh", "show", "n.json", "--json").stdout)["designs"][NEW][
        "slope_uncertainty"
    ]
    assert "warning" not in run("soh", "show", files["model"]).stderr


def test_a_design_the_model_has_needs_replace(files: dict[str, Path]) -> None:
    again = _write(
        Path("again.csv"), [r for r in read_csv(files["train"]) if r["design"] == "LMO-10Ah"][:50]
    )
    result = run("soh", "calibrate", again, "--model", files["model"], "--out", "m.json")
    assert_one_line_error(result, "again.csv")
    assert "already has LMO-10Ah" in result.stderr
    assert "--replace" in result.stderr
    assert not Path("m.json").exists()
    done = run("soh", "calibrate", again, "--model", files["model"], "--out", "m.json", "--replace")
    assert done.exit_code == 0, done.stderr
    old, new = load_model(files["model"]), load_model(Path("m.json"))
    assert new.models["LMO-10Ah"].summary.n_cells == 5
    assert new.models["NMC-21Ah"].to_dict() == old.models["NMC-21Ah"].to_dict()


def _no_soh(files: dict[str, Path]) -> tuple[list[str], str, str]:
    rows = [{**r, "soh": ""} for r in read_csv(files["cal"])]
    return [str(_write(Path("t.csv"), rows)), "--model", str(files["model"])], "t.csv", "no 'soh'"


def _bad_row(files: dict[str, Path]) -> tuple[list[str], str, str]:
    rows = read_csv(files["cal"])
    rows[2]["U5"] = "volts"
    return [str(_write(Path("t.csv"), rows)), "--model", str(files["model"])], "t.csv", "line 4"


def _one_design_model(files: dict[str, Path]) -> tuple[list[str], str, str]:
    one = _write(
        Path("one.csv"), [r for r in read_csv(files["train"]) if r["design"] == "NMC-21Ah"]
    )
    assert run("soh", "fit", one, "--out", "one.json").exit_code == 0
    return [str(files["cal"]), "--model", "one.json"], "cal.csv", "no pooled prior"


def _not_a_model(files: dict[str, Path]) -> tuple[list[str], str, str]:
    Path("m.json").write_text("{}", encoding="utf-8")
    return [str(files["cal"]), "--model", "m.json"], "m.json", "model"


def _out_exists(files: dict[str, Path]) -> tuple[list[str], str, str]:
    Path("out.json").write_text("keep me", encoding="utf-8")
    return [str(files["cal"]), "--model", str(files["model"])], "out.json", "already exists"


@pytest.mark.parametrize("case", [_no_soh, _bad_row, _one_design_model, _not_a_model, _out_exists])
def test_unusable_input_exits_2_naming_the_file(files: dict[str, Path], case: object) -> None:
    args, name, reason = case(files)  # type: ignore[operator]
    result = run("soh", "calibrate", *args, "--out", "out.json")
    assert_one_line_error(result, name)
    assert reason in result.stderr
    if name != "out.json":
        assert not Path("out.json").exists()
    else:
        assert Path("out.json").read_text(encoding="utf-8") == "keep me"


def test_show_tells_what_a_model_covers(files: dict[str, Path]) -> None:
    before = run("soh", "show", files["model"], "--json")
    assert before.exit_code == 0, before.stderr
    shown = json.loads(before.stdout)
    assert sorted(shown["designs"]) == sorted(TRAINED)
    assert sorted(shown["prior_designs"]) == sorted(TRAINED)
    model = load_model(files["model"])
    for name, d in shown["designs"].items():
        m = model.models[name]
        assert d["cells"] == m.summary.n_cells
        assert d["rated_ah"] == m.rated_ah
        assert d["u_columns"] == [f"U{i + 1}" for i in m.u_columns]
        assert d["u_window_v"] == list(m.u_window)
        assert d["width_models_ms"] == []  # one pulse width each
        assert d["row_correlation"] == round(m.row_correlation, 3)
        top = m.novelty_factors[-1] if len(m.novelty_factors) else 1.0
        assert d["novelty_widening_max"] == round(top, 3)
        assert d["novelty_growth"] is bool(len(m.novelty_knots))
        assert d["slope_uncertainty"] is False
        line = next(x for x in before.stderr.splitlines() if x.startswith(name))
        # the 'wider' column: the last knot's factor, growing beyond it ('+'), or never
        assert line.endswith(f"x{top:.2f}+" if len(m.novelty_knots) else " -")
    assert "U1-U21" in before.stderr
    assert "wider" in before.stderr
    assert "pooled prior: LMO-10Ah, NMC-21Ah" in before.stderr
    assert (
        run(
            "soh", "calibrate", files["cal"], "--model", files["model"], "--out", "n.json"
        ).exit_code
        == 0
    )
    after = json.loads(run("soh", "show", "n.json", "--json").stdout)
    assert sorted(after["designs"]) == sorted([*TRAINED, NEW])
    assert after["designs"][NEW]["cells"] == 3
    assert after["designs"][NEW]["novelty_widening_max"] == 1.0  # 3 cells: no widening
    assert after["designs"][NEW]["novelty_growth"] is False  # linear: no centres, no knots
    assert after["designs"][NEW]["slope_uncertainty"] is False  # cells across 0.72-0.91
    assert sorted(after["prior_designs"]) == sorted(TRAINED)  # the prior is not refitted


def test_show_names_a_bad_model_file() -> None:
    Path("m.json").write_text("[1, 2", encoding="utf-8")
    result = run("soh", "show", "m.json")
    assert_one_line_error(result, "m.json")
    assert "not a model file" in result.stderr
