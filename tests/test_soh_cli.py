"""`passport soh fit` and `passport soh estimate`, in-process through typer's CliRunner.

Synthetic cells (hermetic, fast) for the mechanics; one end-to-end run on the real reference
data, split by physical cell, for the accuracy an intake line would see. Every run is checked
for a leaked traceback; exit codes: 0 ok, 2 bad usage or unreadable input.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import warnings
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_path
from typer.testing import CliRunner, Result

import passport.soh as soh_api
import passport.soh.tables as soh_tables
from cli.app import app
from passport.soh import U_COLUMNS, combine, load_model, physical_cell
from passport.soh.io import read_pulse_csv
from passport.soh.synthetic import aged_cells, pulse_rows

RUNNER = CliRunner(
    env={
        "COLUMNS": "200",
        "NO_COLOR": "1",
        "PASSPORT_KEY_PASSWORD": None,
        "PASSPORT_DEBUG": None,
        "PASSPORT_TRUST": None,
    }
)
DESIGN = "SYN-5Ah"
RATED = 5.0
Z90 = 1.6448536269514722
HEADER = ["design", "chemistry", "rated_ah", "pulse_width_ms", "cell_id", "soc_pct", "soh"]
HEADER += U_COLUMNS
OUTPUT = ["line", "cell_id", "design", "soh", "soh_sigma", "resistance_mohm", "error"]


# --------------------------------------------------------------------------------------------
# Helpers


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Relative paths land in the test's own directory."""
    monkeypatch.chdir(tmp_path)


def run(*args: str | Path) -> Result:
    """Invoke the CLI in-process; stdout and stderr separate, a traceback fails the test."""
    result = RUNNER.invoke(app, [str(a) for a in args])
    text = result.stdout + result.stderr
    assert "Traceback" not in text, text
    if result.exception is not None:
        assert isinstance(result.exception, SystemExit), f"uncaught {result.exception!r}"
    return result


def write_cells(path: Path, n: int, seed: int, *, prefix: str = "c") -> Path:
    """`n` synthetic cells (SoH uniform 0.6-1.02) as a reference table, one row per cell."""
    rng = np.random.default_rng(seed)
    truth = rng.uniform(0.6, 1.02, n)
    rows = pulse_rows(aged_cells(truth, RATED, rng), RATED)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(HEADER)
        for i in range(n):
            numbers = [rows.rated_ah[i], rows.width_ms[i]]
            head = [DESIGN, "NMC", *(repr(float(x)) for x in numbers), f"{prefix}{i:03d}", "50"]
            writer.writerow([*head, repr(float(truth[i])), *(repr(float(x)) for x in rows.U[i])])
    return path


def read_csv_text(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def read_csv(path: Path) -> list[dict[str, str]]:
    return read_csv_text(path.read_text(encoding="utf-8"))


def listing(directory: Path) -> list[str]:
    """Every entry, hidden temporary files included."""
    return sorted(p.name for p in directory.iterdir())


def assert_one_line_error(result: Result, name: str, *, progress: str | None = None) -> None:
    """Exit 2 and a single error line on stderr that names the file (after the command's
    `progress` line, when it prints one before the work starts)."""
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    if progress is not None:
        assert lines[0].startswith(progress), result.stderr
        lines = lines[1:]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:"), result.stderr
    assert name in lines[0], result.stderr
    assert "internal error" not in result.stderr


@pytest.fixture(scope="module")
def train(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_cells(tmp_path_factory.mktemp("train") / "train.csv", 100, seed=31)


@pytest.fixture(scope="module")
def model_file(train: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model trained once for the module, by the CLI itself."""
    out = tmp_path_factory.mktemp("model") / "model.json"
    result = run("soh", "fit", train, "--out", out)
    assert result.exit_code == 0, result.stderr
    return out


# --------------------------------------------------------------------------------------------
# soh fit


def test_fit_writes_a_model_and_reports_each_design(train: Path, tmp_path: Path) -> None:
    result = run("soh", "fit", train, "--out", "model.json")
    assert result.exit_code == 0, result.stderr
    model = load_model(tmp_path / "model.json")
    assert model.designs == [DESIGN]
    assert result.stdout == ""  # the summary is for people: stderr
    assert f"{DESIGN}: 100 cells, 100 rows" in result.stderr
    assert "cross-validated MAE" in result.stderr
    assert "wrote model.json (1 design)" in result.stderr
    assert listing(tmp_path) == ["model.json"]


def test_fit_json_prints_the_designs_on_stdout(train: Path, tmp_path: Path) -> None:
    result = run("soh", "fit", train, "--out", "model.json", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["model"] == "model.json"
    assert list(data["designs"]) == [DESIGN]
    info = data["designs"][DESIGN]
    assert info["cells"] == 100
    assert info["rows"] == 100
    assert 0 < info["cv_mae_points"] < 2
    assert 0.8 <= info["cv_coverage_90"] <= 1.0


def test_fit_refuses_to_overwrite_without_force(train: Path, tmp_path: Path) -> None:
    """An existing model survives a second `fit`; `--force` replaces it."""
    existing = tmp_path / "model.json"
    existing.write_text("the model in production\n", encoding="utf-8")
    result = run("soh", "fit", train, "--out", "model.json")
    assert_one_line_error(result, "model.json")
    assert "--force" in result.stderr
    assert existing.read_text(encoding="utf-8") == "the model in production\n"
    assert listing(tmp_path) == ["model.json"]

    forced = run("soh", "fit", train, "--out", "model.json", "--force")
    assert forced.exit_code == 0, forced.stderr
    assert load_model(existing).designs == [DESIGN]


def _header_only(train: Path) -> bytes:
    return train.read_bytes().splitlines(keepends=True)[0]


FIT_FAILURES: list[tuple[str, Callable[[Path], bytes | None]]] = [
    ("missing-file", lambda train: None),
    ("empty-file", lambda train: b""),
    ("header-only", _header_only),
    ("missing-column", lambda train: train.read_bytes().replace(b"rated_ah", b"rating", 1)),
    ("no-soh-values", lambda train: train.read_bytes().replace(b",soh,", b",capacity,", 1)),
    ("binary", lambda train: bytes(range(256)) * 4),
    ("bad-number", lambda train: train.read_bytes().replace(b",NMC,", b",NMC,x", 1)),
]


@pytest.mark.parametrize(
    "content", [c for _, c in FIT_FAILURES], ids=[name for name, _ in FIT_FAILURES]
)
def test_fit_fails_cleanly_on_bad_training_data(
    train: Path, tmp_path: Path, content: Callable[[Path], bytes | None]
) -> None:
    """Exit 2 with one line naming the training file, and no model written."""
    data = content(train)
    if data is not None:
        (tmp_path / "bad.csv").write_bytes(data)
    before = listing(tmp_path)
    result = run("soh", "fit", "bad.csv", "--out", "model.json")
    assert_one_line_error(result, "bad.csv", progress="training on bad.csv")
    assert listing(tmp_path) == before


# --------------------------------------------------------------------------------------------
# soh estimate


@pytest.fixture
def fresh(tmp_path: Path) -> Path:
    """Twelve unseen cells, with one row the model cannot estimate (a design it lacks)."""
    path = write_cells(tmp_path / "input.csv", 12, seed=32, prefix="new")
    text = path.read_text(encoding="utf-8").replace(f"{DESIGN},NMC,", "LFP-20Ah,LFP,", 1)
    path.write_text(text, encoding="utf-8")
    return path


def test_a_hostile_voltage_gives_a_row_error_without_a_warning(
    model_file: Path, fresh: Path
) -> None:
    """U2 = 1e306 V: a resistance of ~1e306 ohm that overflows in milliohms. The row is
    out-of-range, and no RuntimeWarning escapes (found by a property test)."""
    rows = read_csv(fresh)
    rows[1]["U2"] = "1e306"
    with open(fresh, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, HEADER, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        soh_api.estimate_csv(load_model(model_file), fresh, Path("out.csv"))
    got = read_csv(Path("out.csv"))[1]
    assert got["error"] == "out-of-range"
    assert got["resistance_mohm"] == ""


def test_estimate_writes_one_row_per_input_row_in_order(model_file: Path, fresh: Path) -> None:
    result = run("soh", "estimate", "--model", model_file, fresh, "--out", "out.csv")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    rows = read_csv(Path("out.csv"))
    source = read_csv(fresh)
    assert set(OUTPUT) <= set(rows[0])
    assert [r["cell_id"] for r in rows] == [r["cell_id"] for r in source]
    assert [r["line"] for r in rows] == [str(i) for i in range(2, 14)]
    assert [r["design"] for r in rows] == ["LFP-20Ah"] + [DESIGN] * 11
    assert [r["error"] for r in rows] == ["no-model"] + [""] * 11
    assert rows[0]["soh"] == rows[0]["soh_sigma"] == ""
    for r, s in zip(rows[1:], source[1:], strict=True):
        assert abs(float(r["soh"]) - float(s["soh"])) < 0.05
        assert 0 < float(r["soh_sigma"]) < 0.05
    assert "12 rows: 11 estimated; errors: no-model 1 -> out.csv" in result.stderr


def test_estimate_json_summary(model_file: Path, fresh: Path) -> None:
    result = run("soh", "estimate", "-m", model_file, fresh, "-o", "out.csv", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["output"] == "out.csv"
    assert data["input"] == "features"
    assert (data["rows"], data["estimated"], data["flagged"]) == (12, 11, 0)
    assert data["errors"] == {"no-model": 1}
    assert len(read_csv(Path("out.csv"))) == 12


def write_noisy(source: Path, dest: Path, noise_v: float, seed: int) -> Path:
    """`source` (a feature table) with Gaussian noise of `noise_v` added to every voltage."""
    rows = read_csv(source)
    rng = np.random.default_rng(seed)
    for r in rows:
        for c in U_COLUMNS:
            if r[c]:
                r[c] = repr(float(r[c]) + rng.normal(0.0, noise_v))
    with open(dest, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, HEADER, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return dest


def test_rows_unlike_the_training_cells_are_counted(model_file: Path, tmp_path: Path) -> None:
    """Fresh cells of the training population count as near; the same cells measured with
    5 mV of noise on every voltage are far from every training row: their sigma is over
    FAR_SIGMA times the design's widest, and the summary counts exactly those rows."""
    model = load_model(model_file)
    widest = model.widest_sigma(DESIGN)
    m = model.models[DESIGN]
    assert widest == pytest.approx(m.sigma_values.max() * m.novelty_factors.max(initial=1.0))
    assert np.isnan(model.widest_sigma("LFP-20Ah"))  # no model
    clean = write_cells(tmp_path / "clean.csv", 40, seed=33, prefix="k")
    noisy = write_noisy(clean, tmp_path / "noisy.csv", 0.005, seed=0)
    counts = {}
    for name, source in (("clean", clean), ("noisy", noisy)):
        result = run("soh", "estimate", "-m", model_file, source, "-o", f"{name}-out.csv", "--json")
        assert result.exit_code == 0, result.stderr
        out_rows = read_csv(Path(f"{name}-out.csv"))
        sigma = np.array([float(r["soh_sigma"] or "nan") for r in out_rows])
        counts[name] = json.loads(result.stdout)["far_from_training"]
        far = sigma > soh_api.model.FAR_SIGMA * widest
        assert counts[name] == int(far.sum())
        # each row says whether it is one of them ("" for a row with an error)
        said = [r["unlike_training"] for r in out_rows]
        assert said == [
            ("" if r["error"] else str(int(f))) for r, f in zip(out_rows, far, strict=True)
        ]
        if counts[name]:
            assert f"{counts[name]} unlike the training cells" in result.stderr
    assert counts["clean"] <= 2
    assert counts["noisy"] >= 20


def test_estimate_without_out_writes_the_csv_to_stdout(model_file: Path, fresh: Path) -> None:
    """Same table as with --out; the summary stays on stderr so stdout is pure CSV."""
    to_file = run("soh", "estimate", "--model", model_file, fresh, "--out", "out.csv")
    to_stdout = run("soh", "estimate", "--model", model_file, fresh)
    assert to_file.exit_code == to_stdout.exit_code == 0
    assert to_stdout.stdout == Path("out.csv").read_text(encoding="utf-8")
    assert read_csv_text(to_stdout.stdout)[0]["error"] == "no-model"
    assert "12 rows" in to_stdout.stderr
    assert listing(Path.cwd()) == ["input.csv", "out.csv"]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty file"),
        (b"a,b\n1,2\n", "missing columns"),
        (b"cell_id,t_s,current_a,voltage_v\na,0,0,3.3\nb,0,0,3.3\na,1,0,3.3\n", "line 4"),
    ],
    ids=["empty", "no-columns", "trace-cell-returns"],
)
def test_a_refused_file_writes_nothing_to_stdout(
    model_file: Path, content: bytes, reason: str
) -> None:
    """Refused at its header or first rows: no CSV header on stdout before the error."""
    Path("bad.csv").write_bytes(content)
    result = run("soh", "estimate", "--model", model_file, "bad.csv")
    assert_one_line_error(result, "bad.csv")
    assert reason in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("spelling", ["input.csv", "./input.csv", "sub/../input.csv"])
def test_estimate_refuses_to_overwrite_its_input(
    model_file: Path, fresh: Path, spelling: str
) -> None:
    """However the same file is spelled, --out may not be the input; the input is untouched."""
    Path("sub").mkdir()
    before = fresh.read_bytes()
    result = run("soh", "estimate", "--model", model_file, "input.csv", "--out", spelling)
    assert_one_line_error(result, str(Path(spelling)))
    assert "overwrite the input" in result.stderr
    assert fresh.read_bytes() == before
    assert listing(Path.cwd()) == ["input.csv", "sub"]


def _model_not_json(directory: Path, model: Path) -> str:
    (directory / "model.json").write_text("{not json", encoding="utf-8")
    return "model.json"


def _model_truncated(directory: Path, model: Path) -> str:
    (directory / "model.json").write_bytes(model.read_bytes()[:5000])
    return "model.json"


def _model_nan(directory: Path, model: Path) -> str:
    d = json.loads(model.read_text(encoding="utf-8"))
    d["designs"][DESIGN]["intercept"] = float("nan")
    (directory / "model.json").write_text(json.dumps(d), encoding="utf-8")
    return "model.json"


def _model_missing(directory: Path, model: Path) -> str:
    return "no-such-model.json"


def _model_directory(directory: Path, model: Path) -> str:
    (directory / "models").mkdir()
    return "models"


def _input(content: bytes | None) -> Callable[[Path, Path], str]:
    def make(directory: Path, model: Path) -> str:
        (directory / "model.json").write_bytes(model.read_bytes())
        if content is not None:
            (directory / "bad.csv").write_bytes(content)
        return "bad.csv"

    return make


def _late_bad_utf8(directory: Path, model: Path) -> str:
    """Invalid UTF-8 on row 60: the output had already been started."""
    _input(None)(directory, model)
    write_cells(directory / "bad.csv", 80, seed=33)
    lines = (directory / "bad.csv").read_bytes().splitlines(keepends=True)
    lines[60] = lines[60].replace(b"c059", b"c\xff59")
    (directory / "bad.csv").write_bytes(b"".join(lines))
    return "bad.csv"


ESTIMATE_FAILURES: list[tuple[str, Callable[[Path, Path], str]]] = [
    ("model-missing", _model_missing),
    ("model-not-json", _model_not_json),
    ("model-truncated", _model_truncated),
    ("model-with-nan", _model_nan),
    ("model-is-a-directory", _model_directory),
    ("input-missing", _input(None)),
    ("input-empty", _input(b"")),
    ("input-missing-columns", _input(b"design,cell_id,U1\nSYN-5Ah,c1,3.6\n")),
    ("input-no-voltages", _input(b"design,rated_ah,pulse_width_ms,cell_id\nX,5,1000,c1\n")),
    ("input-binary", _input(bytes(range(256)) * 4)),
    ("input-invalid-utf8-late", _late_bad_utf8),
]


@pytest.mark.parametrize(
    "make", [m for _, m in ESTIMATE_FAILURES], ids=[name for name, _ in ESTIMATE_FAILURES]
)
def test_estimate_fails_cleanly(
    model_file: Path, tmp_path: Path, make: Callable[[Path, Path], str]
) -> None:
    """Exit 2, one line naming the culprit, no traceback and no output file (nor a temporary
    one) left behind."""
    culprit = make(tmp_path, model_file)
    model = culprit if culprit != "bad.csv" else "model.json"
    source = "bad.csv" if culprit == "bad.csv" else "input.csv"
    if source == "input.csv":
        write_cells(tmp_path / "input.csv", 3, seed=34)
    before = listing(tmp_path)
    result = run("soh", "estimate", "--model", model, source, "--out", "out.csv")
    assert_one_line_error(result, culprit)
    assert listing(tmp_path) == before


def test_estimate_rejects_a_non_positive_threshold(model_file: Path, fresh: Path) -> None:
    result = run("soh", "estimate", "-m", model_file, fresh, "-o", "out.csv", "--threshold", "0")
    assert result.exit_code == 2
    assert "--threshold" in result.stderr
    assert not Path("out.csv").exists()


# --------------------------------------------------------------------------------------------
# Help


def test_help_describes_the_commands_and_their_columns() -> None:
    """Users learn the tables from --help: input columns on the group, output columns on
    `estimate`, what `fit` writes."""
    group = run("soh", "--help")
    assert group.exit_code == 0
    for word in ("fit", "estimate", "design", "rated_ah", "pulse_width_ms", "cell_id", "U1"):
        assert word in group.stdout, word
    # the commands in the order of the work: train, estimate, check, extend, inspect
    listed = [line.split()[1] for line in group.stdout.splitlines() if line.startswith("│ ")]
    commands = [c for c in listed if c in ("fit", "estimate", "evaluate", "calibrate", "show")]
    assert commands == ["fit", "estimate", "evaluate", "calibrate", "show"]
    fit = run("soh", "fit", "--help")
    assert fit.exit_code == 0
    for word in ("--out", "--force", "--json", "soh", "model"):
        assert word in fit.stdout, word
    estimate = run("soh", "estimate", "--help")
    assert estimate.exit_code == 0
    columns = [*OUTPUT, "resistance_growth", "claim_z", "claim_flagged", "posterior_soh"]
    columns += ["posterior_sigma", "claimed_soh", "initial_resistance_uohm"]
    for word in (*columns, "--model", "--out", "--design", "--threshold", "stdout"):
        assert word in estimate.stdout, word


# --------------------------------------------------------------------------------------------
# The real reference data, split by physical cell


def split_by_cell(source: Path, train: Path, test: Path) -> None:
    """Every fifth physical cell of each design (sorted) goes to the test file: ~20 %."""
    with open(source, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        rows = list(reader)
    design, cell = header.index("design"), header.index("cell_id")
    cells: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        cells[row[design]].add(physical_cell(row[design], row[cell]))
    held = {(d, c) for d, cs in cells.items() for i, c in enumerate(sorted(cs)) if i % 5 == 2}
    for path, keep in ((train, False), (test, True)):
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(
                r for r in rows if ((r[design], physical_cell(r[design], r[cell])) in held) == keep
            )


def test_real_cells_never_seen_in_training(tmp_path: Path) -> None:
    """Fit and estimate through the console on the dev file split by physical cell: every
    held-out row is estimated, each design within 6 points MAE, and +/- 1.645 sigma covers
    80-97 % of the true values (nominal 90 %)."""
    source = shared_path("data", "soh", "pulse_features_dev.csv")
    split_by_cell(source, tmp_path / "train.csv", tmp_path / "test.csv")
    fit = run("soh", "fit", "train.csv", "--out", "model.json", "--json")
    assert fit.exit_code == 0, fit.stderr
    designs = set(json.loads(fit.stdout)["designs"])
    result = run("soh", "estimate", "-m", "model.json", "test.csv", "-o", "out.csv", "--json")
    assert result.exit_code == 0, result.stderr
    truth = read_csv(tmp_path / "test.csv")
    out = read_csv(tmp_path / "out.csv")
    assert json.loads(result.stdout)["estimated"] == len(truth)
    assert [r["cell_id"] for r in out] == [r["cell_id"] for r in truth]
    assert {r["design"] for r in truth} == designs
    assert all(r["error"] == "" for r in out)

    errors: dict[str, list[float]] = defaultdict(list)
    covered: list[bool] = []
    for r, t in zip(out, truth, strict=True):
        error = abs(float(r["soh"]) - float(t["soh"]))
        errors[r["design"]].append(error)
        covered.append(error <= Z90 * float(r["soh_sigma"]))
    mae = {d: 100 * float(np.mean(e)) for d, e in errors.items()}
    assert all(m < 6.0 for m in mae.values()), mae
    coverage = float(np.mean(covered))
    assert 0.8 <= coverage <= 0.97, coverage


# --------------------------------------------------------------------------------------------
# soh estimate --per-cell


@pytest.fixture
def multi(tmp_path: Path) -> Path:
    """Twelve cells, each tested in three consecutive rows (the 0.5 C block shifted by -1, 0,
    +1 mV); cell new003's middle row names a design the model lacks; new000 comes back at
    the end (a second visit: a run of its own)."""
    src = read_csv(write_cells(tmp_path / "one.csv", 12, seed=33, prefix="new"))
    out = []
    for row in src:
        for shift in (-0.001, 0.0, 0.001):
            r = dict(row)
            for i in range(2, 10):
                r[f"U{i}"] = repr(float(r[f"U{i}"]) + shift)
            out.append(r)
    out[3 * 3 + 1]["design"] = "LFP-20Ah"
    out.append(dict(src[0]))
    path = tmp_path / "input.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=HEADER, lineterminator="\n")
        writer.writeheader()
        writer.writerows(out)
    return path


def _runs(rows: list[dict[str, str]]) -> list[list[dict[str, str]]]:
    runs: list[list[dict[str, str]]] = []
    for r in rows:
        if runs and runs[-1][0]["cell_id"] == r["cell_id"]:
            runs[-1].append(r)
        else:
            runs.append([r])
    return runs


def test_per_cell_combines_each_run_of_a_cells_rows(model_file: Path, multi: Path) -> None:
    result = run("soh", "estimate", "-m", model_file, multi, "-o", "out.csv", "--per-cell")
    assert result.exit_code == 0, result.stderr
    rows = read_csv(Path("out.csv"))
    rho = load_model(model_file).models[DESIGN].row_correlation
    assert len(rows) == 37
    runs = _runs(rows)
    assert [len(r) for r in runs] == [3] * 12 + [1]
    for run_rows in runs:
        usable = [r for r in run_rows if not r["error"]]
        want = combine(
            [float(r["soh"]) for r in usable], [float(r["soh_sigma"]) for r in usable], rho
        )
        for r in run_rows:  # every row of the run carries its figure
            assert int(r["cell_rows"]) == len(usable)
            assert float(r["cell_soh"]) == pytest.approx(want[0], abs=2e-6)
            # written to 6 significant digits: far rows' sigma is above 1 (rel)
            assert float(r["cell_soh_sigma"]) == pytest.approx(want[1], rel=5e-6, abs=2e-6)
            assert float(r["cell_soh_sigma"]) <= max(float(u["soh_sigma"]) for u in usable) + 1e-6
    assert [r["error"] for r in runs[3]] == ["", "no-model", ""]
    assert runs[-1][0]["cell_soh"] == runs[-1][0]["soh"]  # a run of one row is that row
    plain = run("soh", "estimate", "-m", model_file, multi, "-o", "plain.csv")
    assert plain.exit_code == 0
    assert "cell_soh" not in read_csv(Path("plain.csv"))[0]  # only when asked for


def test_per_cell_runs_across_chunks_are_held_back_and_combined(
    model_file: Path, multi: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks of 4 rows cut most runs of 3: the result is the same as in one chunk."""
    model = load_model(model_file)
    soh_api.estimate_csv(model, multi, "whole.csv", per_cell=True)
    small = functools.partial(read_pulse_csv, chunk_rows=4)
    monkeypatch.setattr(soh_tables, "read_pulse_csv", small)
    soh_api.estimate_csv(model, multi, "chunked.csv", per_cell=True)
    whole, chunked = read_csv(Path("whole.csv")), read_csv(Path("chunked.csv"))
    assert [r["line"] for r in chunked] == [r["line"] for r in whole]
    assert [r["cell_rows"] for r in chunked] == [r["cell_rows"] for r in whole]
    for a, b in zip(whole, chunked, strict=True):
        assert float(a["cell_soh"]) == pytest.approx(float(b["cell_soh"]), abs=2e-4)
    # a run longer than the cap is cut where the chunk ends, not held
    monkeypatch.setattr(soh_tables, "PER_CELL_MAX_ROWS", 2)
    soh_api.estimate_csv(model, multi, "capped.csv", per_cell=True)
    capped = read_csv(Path("capped.csv"))
    assert [r["line"] for r in capped] == [r["line"] for r in whole]
    assert max(int(r["cell_rows"]) for r in capped) <= 3
    assert any(a["cell_rows"] != b["cell_rows"] for a, b in zip(whole, capped, strict=True))


def test_stdout_keeps_the_rows_before_a_failure_found_later_in_the_file(
    model_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Streaming to stdout cannot take rows back: a file that fails part-way (bad UTF-8 on row
    60, chunks of 16 rows) exits 2 naming the file, after the header and the rows of the chunks
    before the failing one, as the whole good file gives them (as --help says)."""
    write_cells(tmp_path / "good.csv", 80, seed=33)
    good = run("soh", "estimate", "-m", model_file, tmp_path / "good.csv")
    assert good.exit_code == 0
    _late_bad_utf8(tmp_path, model_file)
    monkeypatch.setattr(
        soh_tables, "read_pulse_csv", functools.partial(read_pulse_csv, chunk_rows=16)
    )
    result = run("soh", "estimate", "-m", model_file, tmp_path / "bad.csv")
    assert_one_line_error(result, "bad.csv")
    written = result.stdout.splitlines()
    assert len(written) == 1 + 48  # the header, then three whole chunks (row 60 is in the 4th)
    got = list(csv.DictReader(io.StringIO(result.stdout)))
    want = list(csv.DictReader(io.StringIO(good.stdout)))[: len(got)]
    assert [(r["line"], r["cell_id"]) for r in got] == [(r["line"], r["cell_id"]) for r in want]
    for a, b in zip(got, want, strict=True):  # float32 blocks of another size: within 1e-4
        assert float(a["soh"]) == pytest.approx(float(b["soh"]), abs=1e-4)
