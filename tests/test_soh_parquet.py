"""Parquet input: a Parquet table is read as its CSV export, so everything the CSV path does
(estimates, traces, training, the intake's measurement, error codes, line numbers) comes out
the same; a file that is not readable Parquet is refused by name."""

from __future__ import annotations

import csv
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_soh_io import num
from test_soh_io import write_rows as write_csv
from typer.testing import CliRunner

from cli.app import app
from passport.errors import InputError
from passport.intake.measure import measure
from passport.soh import estimate_csv, fit_csv, save_model
from passport.soh.model import SohModel
from passport.soh.synthetic import aged_cells, pulse_rows, simulate
from passport.soh.trace_io import sniff_header

RATED = 5.0
DESIGN = "SYN-5Ah"
U = [f"U{i}" for i in range(1, 42)]
HEADER = ["design", "rated_ah", "pulse_width_ms", "cell_id", "soc_pct", "soh", *U]


def feature_rows(n: int, seed: int) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    truth = rng.uniform(0.6, 1.02, n)
    rows = pulse_rows(aged_cells(truth, RATED, rng), RATED)
    return [
        [DESIGN, num(rows.rated_ah[i]), num(rows.width_ms[i]), f"c{i:03d}", "50", num(truth[i])]
        + [num(u) for u in rows.U[i]]
        for i in range(n)
    ]


def to_parquet(csv_path: Path, **kwargs: object) -> Path:
    """The same table as Parquet, with the column types Arrow infers from the CSV (numbers as
    doubles, a column with text in it as strings, empty fields as nulls)."""
    out = csv_path.with_suffix(".parquet")
    pq.write_table(pacsv.read_csv(csv_path), out, **kwargs)  # type: ignore[arg-type]
    return out


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> SohModel:
    folder = tmp_path_factory.mktemp("train")
    return fit_csv(write_csv(folder / "train.csv", HEADER, feature_rows(100, 11)))


def test_a_parquet_table_gives_exactly_what_its_csv_gives(model: SohModel, tmp_path: Path) -> None:
    """Estimates, error codes and line numbers (a cell id with a line break in it shifts the
    later lines in both) agree, in row groups smaller than the reader's batches too."""
    rows = feature_rows(40, 12)
    rows[3][U.index("U5") + 6] = "abc"  # text in a voltage column: bad-row
    rows[7][U.index("U9") + 6] = ""  # an empty voltage: missing-features
    rows[9][3] = 'two\nlines, "quoted"'
    source = write_csv(tmp_path / "in.csv", HEADER, rows)
    parquet = to_parquet(source, row_group_size=7)
    estimate_csv(model, source, tmp_path / "a.csv")
    estimate_csv(model, parquet, tmp_path / "b.csv")
    a = (tmp_path / "a.csv").read_text(encoding="utf-8")
    assert a == (tmp_path / "b.csv").read_text(encoding="utf-8")
    out = list(csv.DictReader(a.splitlines(keepends=True)))
    assert [r["error"] for r in out[:10]].count("") == 8
    assert out[3]["error"] == "bad-row"
    assert out[7]["error"] == "missing-features"
    assert out[9]["cell_id"] == 'two\nlines, "quoted"'
    assert (out[9]["line"], out[10]["line"]) == ("11", "13")


def test_parquet_traces_give_what_their_csv_gives(model: SohModel, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    truth = rng.uniform(0.6, 1.02, 6)
    code, t, current, voltage = simulate(aged_cells(truth, RATED, rng), RATED, 1.0, 3)
    rows = [
        [f"T{c}", repr(a), repr(b), repr(v), DESIGN]
        for c, a, b, v in zip(
            code.tolist(), t.tolist(), current.tolist(), voltage.tolist(), strict=True
        )
    ]
    header = ["cell_id", "t_s", "current_a", "voltage_v", "design"]
    source = write_csv(tmp_path / "traces.csv", header, rows)
    parquet = to_parquet(source)
    assert sniff_header(parquet) == header
    a = estimate_csv(model, source, tmp_path / "a.csv")
    b = estimate_csv(model, parquet, tmp_path / "b.csv")
    assert a.to_dict() == b.to_dict()
    assert b.kind == "traces"
    assert b.estimated == 6
    text = (tmp_path / "a.csv").read_text(encoding="utf-8")
    assert text == (tmp_path / "b.csv").read_text(encoding="utf-8")


def test_training_from_parquet_gives_the_same_model(model: SohModel, tmp_path: Path) -> None:
    parquet = to_parquet(write_csv(tmp_path / "train.csv", HEADER, feature_rows(100, 11)))
    assert fit_csv(parquet).to_dict() == model.to_dict()


def test_the_intake_measures_a_parquet_test_file_as_its_csv(
    model: SohModel, tmp_path: Path
) -> None:
    rows = feature_rows(12, 13)
    header = [*HEADER, "tests_covered"]
    rows = [[*r, "deep-discharge; Over-Temperature"] for r in rows]
    source = write_csv(tmp_path / "tests.csv", header, rows)
    a = measure(model, source, {})
    b = measure(model, to_parquet(source), {})
    assert a == b
    assert len(b) == 12
    assert {m.tests_covered for m in b.values()} == {("deep-discharge", "over-temperature")}


def test_the_cli_estimates_a_parquet_file(model: SohModel, tmp_path: Path) -> None:
    save_model(model, tmp_path / "model.json")
    source = write_csv(tmp_path / "in.csv", HEADER, feature_rows(10, 14))
    parquet = to_parquet(source)
    runner = CliRunner()
    for name, path in (("a.csv", source), ("b.csv", parquet)):
        result = runner.invoke(
            app,
            ["soh", "estimate", "--model", str(tmp_path / "model.json"), str(path),
             "--out", str(tmp_path / name)],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()


def _truncated(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])


def _magic_only(path: Path) -> None:
    path.write_bytes(b"PAR1")


def _magic_then_garbage(path: Path) -> None:
    path.write_bytes(b"PAR1" + bytes(range(256)) * 8 + b"PAR1")


def _nested_column(path: Path) -> None:
    """Every column there, but U1 a list per row: no CSV form."""
    table = pq.read_table(path)
    at = table.schema.get_field_index("U1")
    nested = pa.array([[v, v] for v in table.column("U1").to_pylist()])
    pq.write_table(table.set_column(at, "U1", nested), path)


def _corrupted_page(path: Path) -> None:
    """Written with page checksums (Parquet makes them optional), then bytes of the data
    pages changed: the reader verifies the checksums it finds."""
    pq.write_table(pq.read_table(path), path, write_page_checksum=True)
    data = bytearray(path.read_bytes())
    for i in range(len(data) // 3, len(data) // 3 + 64):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))


def _no_required_columns(path: Path) -> None:
    pq.write_table(pa.table({"x": [1.0, 2.0]}), path)


BAD_FILES: list[tuple[str, Callable[[Path], None], str]] = [
    ("truncated", _truncated, "not a readable Parquet file"),
    ("magic-only", _magic_only, "not a readable Parquet file"),
    ("magic-then-garbage", _magic_then_garbage, "not a readable Parquet file"),
    ("nested-column", _nested_column, "a column holds values that are not numbers or text"),
    ("corrupted-page", _corrupted_page, "CRC checksum verification failed"),
    ("no-required-columns", _no_required_columns, "missing columns"),
]


@pytest.mark.parametrize(
    ("spoil", "expected"), [b[1:] for b in BAD_FILES], ids=[b[0] for b in BAD_FILES]
)
def test_a_bad_parquet_file_is_refused_by_name(
    model: SohModel, tmp_path: Path, spoil: Callable[[Path], None], expected: str
) -> None:
    path = to_parquet(write_csv(tmp_path / "in.csv", HEADER, feature_rows(30, 15)))
    spoil(path)
    with pytest.raises(InputError, match=expected) as info:
        estimate_csv(model, path, tmp_path / "out.csv")
    assert info.value.source == str(path)
    assert not (tmp_path / "out.csv").exists()


def test_a_bad_parquet_file_exits_2_on_the_cli(model: SohModel, tmp_path: Path) -> None:
    save_model(model, tmp_path / "model.json")
    path = to_parquet(write_csv(tmp_path / "in.csv", HEADER, feature_rows(5, 16)))
    _truncated(path)
    result = CliRunner().invoke(
        app, ["soh", "estimate", "--model", str(tmp_path / "model.json"), str(path)]
    )
    assert result.exit_code == 2
    assert str(path) in result.output
    assert "Traceback" not in result.output


def test_without_pyarrow_a_parquet_file_says_what_to_install(
    model: SohModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = to_parquet(write_csv(tmp_path / "in.csv", HEADER, feature_rows(5, 17)))
    for name in ("pyarrow", "pyarrow.csv", "pyarrow.parquet"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails as if not installed
    with pytest.raises(InputError, match=r"needs pyarrow \(pip install") as info:
        estimate_csv(model, path, tmp_path / "out.csv")
    assert info.value.source == str(path)


def test_an_empty_parquet_table_gives_a_header_only_output(model: SohModel, tmp_path: Path) -> None:
    path = tmp_path / "empty.parquet"
    schema = pa.schema(
        [(c, pa.string() if c in ("design", "cell_id") else pa.float64()) for c in HEADER]
    )
    pq.write_table(schema.empty_table(), path)
    summary = estimate_csv(model, path, tmp_path / "out.csv")
    assert summary.rows == 0
    lines = (tmp_path / "out.csv").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("line,cell_id,design,soh,soh_sigma")


def test_the_row_count_for_the_progress_bar_comes_from_the_footer(tmp_path: Path) -> None:
    from passport.soh.io import is_parquet, parquet_rows

    source = write_csv(tmp_path / "in.csv", HEADER, feature_rows(23, 18))
    path = to_parquet(source, row_group_size=5)
    assert is_parquet(path)
    assert not is_parquet(source)
    assert parquet_rows(path) == 23
    _truncated(path)
    assert parquet_rows(path) is None


_TEXT = st.one_of(st.none(), st.text(max_size=5), st.sampled_from(["3.3", "", "nan", "a,b", '"']))
_FLOAT = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.floats(3.0, 4.0))


@settings(max_examples=40, deadline=None)
@given(
    rows=st.integers(0, 9),
    data=st.data(),
    group=st.integers(1, 4),
)
def test_any_small_parquet_table_reads_as_its_csv_export(
    model: SohModel, rows: int, data: st.DataObject, group: int
) -> None:
    """Typed columns with nulls, NaN, infinities and hostile text, in row groups of any size:
    the Parquet file gives exactly what Arrow's CSV export of the same table gives."""

    def column(values: st.SearchStrategy[object]) -> list[object]:
        return data.draw(st.lists(values, min_size=rows, max_size=rows))

    columns: dict[str, pa.Array] = {
        "design": pa.array(column(st.sampled_from([DESIGN, "", None])), pa.string()),
        "cell_id": pa.array(column(_TEXT), pa.string()),
        "rated_ah": pa.array(column(_FLOAT), pa.float64()),
        "pulse_width_ms": pa.array([1000.0] * rows, pa.float64()),
    }
    for name in ("U1", "U2", "U5"):
        texts = data.draw(st.booleans())
        columns[name] = pa.array(
            column(_TEXT if texts else _FLOAT), pa.string() if texts else pa.float64()
        )
    table = pa.table(columns)
    with tempfile.TemporaryDirectory() as tmp:
        parquet, export = Path(tmp) / "t.parquet", Path(tmp) / "t.csv"
        pq.write_table(table, parquet, row_group_size=group)
        pacsv.write_csv(table, export)
        a = estimate_csv(model, export, Path(tmp) / "a.csv")
        b = estimate_csv(model, parquet, Path(tmp) / "b.csv")
        assert a.to_dict() == b.to_dict()
        assert (Path(tmp) / "a.csv").read_bytes() == (Path(tmp) / "b.csv").read_bytes()
