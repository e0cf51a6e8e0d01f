"""Pulse-feature tables in and estimates out, streamed in chunks so memory stays bounded.

The input is a CSV (or a Parquet file, read as its CSV export) with the columns of the
reference data (`design`, `rated_ah`, `pulse_width_ms`, `cell_id`, `U1`..`U41`; `chemistry`,
`soc_pct` and `soh` optional and never needed). A row whose numbers do not parse keeps its place
with an error code, so the output has one row per input row, in input order.
"""

from __future__ import annotations

import contextlib
import csv
import io
import operator
import os
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar, cast

import numpy as np
import numpy.typing as npt

from passport.errors import InputError
from passport.soh._parquet import ParquetText
from passport.soh._parquet import is_parquet as is_parquet  # re-exported
from passport.soh._parquet import parquet_rows as parquet_rows  # re-exported
from passport.soh.features import U_COLUMNS

REQUIRED = ("design", "rated_ah", "pulse_width_ms", "cell_id")
OPTIONAL = ("chemistry", "soc_pct", "soh")
# What a passport says (the intake composes these from the verified image): when present,
# estimates come with the passport check. Fractions, cycles, days, micro-ohm; empty = unknown.
CLAIM_COLUMNS = (
    "claimed_soh", "claimed_soh_sigma", "fec_since", "days_since", "initial_resistance_uohm",
)  # fmt: skip
ERR_BAD_ROW = "bad-row"
# rows per chunk: 16,384 read faster than 65,536 and peak at a third of the memory (wide rows
# are held as Python strings until parsed)
CHUNK_ROWS = 16_384
MAX_FIELD = 256

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
T = TypeVar("T")
StrArray = npt.NDArray[np.object_]


@dataclass(frozen=True, slots=True)
class PulseChunk:
    """Up to CHUNK_ROWS rows as arrays; `error` is "" for rows that parsed."""

    line: npt.NDArray[np.int64]  # 1-based line number in the file
    cell_id: StrArray
    design: StrArray
    rated_ah: FloatArray
    width_ms: FloatArray
    U: FloatArray  # (n, 41), NaN where absent
    soh: FloatArray  # NaN when the column is absent or empty
    error: StrArray
    claims: dict[str, FloatArray] = field(default_factory=dict)  # CLAIM_COLUMNS present
    # the soc_pct text as written, None without the column: it only tells training which rows
    # form one test (one cell at one state of charge); never parsed, never an input
    soc_pct: StrArray | None = None
    # rows from traces with a run column: the protocol run of each row, text as written
    run: StrArray | None = None

    def __len__(self) -> int:
        return len(self.line)


def _number(text: str) -> float:
    text = text.strip()
    if not text:
        return float("nan")
    value = float(text)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError("not finite")
    return value


def read_pulse_csv(
    source: str | os.PathLike[str] | IO[str],
    *,
    chunk_rows: int = CHUNK_ROWS,
    name: str | None = None,
) -> Iterator[PulseChunk]:
    """Yield the table in chunks. Raises `InputError` (naming the file) for a table that is
    not usable at all: unreadable, no header, missing required or all U columns."""
    label = name or (str(source) if not hasattr(source, "read") else "<stream>")
    if hasattr(source, "read"):
        return _chunks(source, label, chunk_rows)  # type: ignore[arg-type]
    handle = open_text(source, label)
    return closing(handle, _chunks(handle, label, chunk_rows))


def open_text(path: str | os.PathLike[str], label: str) -> IO[str]:
    """A CSV file opened for `csv.reader` (a UTF-8 BOM is skipped), or a Parquet file as the
    lines of its CSV export (`_parquet`); `InputError` if it cannot."""
    if is_parquet(path):
        return cast(IO[str], ParquetText(path, label))
    try:
        return open(path, newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", source=label) from None


def closing(handle: IO[str], chunks: Iterator[T]) -> Iterator[T]:
    """Yield from `chunks`, closing `handle` when done or abandoned."""
    with handle:
        yield from chunks


def _chunks(handle: IO[str], label: str, chunk_rows: int) -> Iterator[PulseChunk]:
    reader = csv.reader(handle)
    try:
        header = next(reader)
    except StopIteration:
        raise InputError("empty file (no header)", source=label) from None
    except csv.Error as exc:
        raise InputError(f"not a CSV table: {exc}", source=label) from None
    except UnicodeDecodeError:
        raise _utf8_error(handle, label, 0) from None
    index = {name.strip(): i for i, name in enumerate(header)}
    missing = [c for c in REQUIRED if c not in index]
    if missing:
        raise InputError(f"missing columns: {', '.join(missing)}", source=label)
    u_index = [index.get(c) for c in U_COLUMNS]
    if all(i is None for i in u_index):
        raise InputError("no voltage columns U1..U41", source=label)
    soh_index = index.get("soh")
    soc_index = index.get("soc_pct")
    claim_index = {c: index[c] for c in CLAIM_COLUMNS if c in index}
    rows: list[list[str]] = []
    lines: list[int] = []
    width = len(header)
    try:
        for start, row in _rows(reader):
            if len(row) != width and (len(row) < width or any(f.strip() for f in row[width:])):
                row = []  # a short (cut off) or overlong row: kept in place as a bad row
            rows.append(row)
            lines.append(start)
            if len(rows) == chunk_rows:
                yield _parse(rows, lines, index, u_index, soh_index, soc_index, claim_index)
                rows, lines = [], []
    except csv.Error as exc:
        raise InputError(f"line {reader.line_num}: not a CSV row: {exc}", source=label) from None
    except UnicodeDecodeError:
        raise _utf8_error(handle, label, reader.line_num) from None
    if rows:
        yield _parse(rows, lines, index, u_index, soh_index, soc_index, claim_index)


def _rows(reader: Any) -> Iterator[tuple[int, list[str]]]:
    """Non-blank rows with the line each starts on (a quoted field may span lines)."""
    before = reader.line_num
    for row in reader:
        start = before + 1
        before = reader.line_num
        if row and (len(row) > 1 or row[0].strip()):
            yield start, row


def _utf8_error(handle: IO[str], label: str, near: int) -> InputError:
    """Name the line holding the first invalid byte: the decoder fails where it read ahead."""
    line = None
    name = getattr(handle, "name", None)
    if isinstance(name, str) and os.path.isfile(name):
        try:
            with open(name, "rb") as raw:
                for number, data in enumerate(raw, 1):
                    try:
                        data.decode("utf-8")
                    except UnicodeDecodeError:
                        line = number
                        break
        except OSError:
            pass
    where = f"line {line}" if line is not None else f"near line {near + 1}"
    return InputError(f"{where}: not UTF-8 text", source=label)


def _parse(
    rows: list[list[str]],
    lines: list[int],
    index: dict[str, int],
    u_index: Sequence[int | None],
    soh_index: int | None,
    soc_index: int | None,
    claim_index: dict[str, int],
) -> PulseChunk:
    """Rows (full width, or [] for a row cut short or overlong) -> arrays, column by column:
    a number that does not parse, or is not finite, makes its row `bad-row`; empty is NaN."""
    n = len(rows)
    U = np.full((n, len(U_COLUMNS)), np.nan)
    rated = np.full(n, np.nan)
    width = np.full(n, np.nan)
    soh = np.full(n, np.nan)
    cell = np.empty(n, dtype=object)
    design = np.empty(n, dtype=object)
    error = np.full(n, "", dtype=object)
    claims = {c: np.full(n, np.nan) for c in claim_index}
    soc = None if soc_index is None else np.full(n, "", dtype=object)
    i_design, i_rated, i_width, i_cell = (index[c] for c in REQUIRED)
    filled = np.array([bool(row) for row in rows], dtype=bool)
    error[~filled] = ERR_BAD_ROW
    at = np.flatnonzero(filled)
    full = [row for row in rows if row]
    # the fields column by column, transposed once (in C; a row may run on with empty fields
    # past the header's width, never stop short of it)
    fields: list[tuple[str, ...]] = list(zip(*full, strict=False))

    def text(i: int) -> Sequence[str]:
        return fields[i] if fields else ()

    cell[at] = [f.strip()[:MAX_FIELD] for f in text(i_cell)]
    # interned: a chunk's rows share a few design objects (dict look-ups by identity)
    design[at] = [sys.intern(f.strip()[:MAX_FIELD]) for f in text(i_design)]
    bad = np.zeros(len(at), dtype=bool)

    def column(i: int) -> FloatArray:
        values, wrong = _numbers(text(i))
        if wrong is not None:
            bad[wrong] = True
        return values

    rated[at] = column(i_rated)
    width[at] = column(i_width)
    for j, i in enumerate(u_index):
        if i is not None:
            U[at, j] = column(i)
    if soh_index is not None:
        soh[at] = column(soh_index)
    if soc is not None and soc_index is not None:
        soc[at] = [f.strip()[:MAX_FIELD] for f in text(soc_index)]
    for c, i in claim_index.items():
        claims[c][at] = column(i)
    error[at[bad]] = ERR_BAD_ROW
    return PulseChunk(
        np.asarray(lines, dtype=np.int64), cell, design, rated, width, U, soh, error, claims, soc
    )


def _numbers(texts: Sequence[str]) -> tuple[FloatArray, BoolArray | None]:
    """`_number` over a column: C-speed `float` when every field parses, or when the only
    fields that do not are empty (a design's columns past the last turning point it measured:
    half of a mixed table's U columns), field by field only for a column with a wrong one. The
    rows whose field is wrong (or not finite), or None when none is."""
    n = len(texts)
    # empty fields read as NaN (found by a scan in C); a field saying "nan" stays wrong
    any_empty = "" in texts
    try:
        parsed = map(float, [f or "nan" for f in texts] if any_empty else texts)
        values = np.fromiter(parsed, dtype=np.float64, count=n)
    except ValueError:
        return _numbers_one_by_one(texts)
    fine = np.isfinite(values)
    if any_empty:
        fine |= np.fromiter(map(operator.not_, texts), dtype=bool, count=n)
    if fine.all():
        return values, None
    values[~fine] = np.nan
    return values, ~fine


def _numbers_one_by_one(texts: Sequence[str]) -> tuple[FloatArray, BoolArray | None]:
    """Field by field (`_number`): a column with a field that does not parse."""
    values = np.empty(len(texts))
    wrong = np.zeros(len(texts), dtype=bool)
    for k, text in enumerate(texts):
        try:
            values[k] = _number(text)
        except ValueError:
            values[k] = np.nan
            wrong[k] = True
    return values, (wrong if wrong.any() else None)


def row_tests(chunk: PulseChunk) -> StrArray | None:
    """One label per test (one cell at one state of charge: rows that share it are the pulse
    widths of one test) from the `soc_pct` text; a row without one is a test of its own. None
    when the table has no soc_pct column."""
    if chunk.soc_pct is None:
        return None
    rows = zip(chunk.design, chunk.cell_id, chunk.soc_pct, chunk.line, strict=True)
    return np.array([f"{d}/{c}@{s}" if s else f"line {n}" for d, c, s, n in rows], dtype=object)


def read_all(source: str | os.PathLike[str], *, name: str | None = None) -> PulseChunk:
    """The whole table at once (training data, which must fit in memory anyway)."""
    chunks = list(read_pulse_csv(source, name=name))
    if not chunks:
        raise InputError("no rows", source=name or str(source))

    def cat(name: str) -> Any:
        return np.concatenate([getattr(c, name) for c in chunks])

    return PulseChunk(
        line=cat("line"), cell_id=cat("cell_id"), design=cat("design"), rated_ah=cat("rated_ah"),
        width_ms=cat("width_ms"), U=cat("U"), soh=cat("soh"), error=cat("error"),
        claims={k: np.concatenate([c.claims[k] for c in chunks]) for k in chunks[0].claims},
        soc_pct=None if chunks[0].soc_pct is None else cat("soc_pct"),
    )  # fmt: skip


OUTPUT_COLUMNS = (
    "line", "cell_id", "design", "soh", "soh_sigma", "resistance_mohm", "error",
    "unlike_training",
)  # fmt: skip


class EstimateWriter:
    """CSV out, one row per input row, written as chunks arrive; the file appears (atomically)
    only on `close`, so a failed run leaves no half-written output."""

    def __init__(self, path: str | os.PathLike[str] | None, extra: Sequence[str] = ()) -> None:
        self.path = Path(path) if path is not None else None
        self.columns = (*OUTPUT_COLUMNS, *extra)
        self._tmp: Path | None = None
        self._buffer: IO[str]
        if self.path is None:
            self._buffer = sys.stdout
        else:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(
                    dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp"
                )
            except OSError as exc:
                raise InputError(
                    f"cannot write: {exc.strerror or exc}", source=str(self.path)
                ) from None
            self._tmp = Path(tmp)
            self._buffer = os.fdopen(fd, "w", newline="", encoding="utf-8")
        self._write_rows([self.columns])

    def write(self, columns: Mapping[str, npt.NDArray[np.generic] | Sequence[object]]) -> None:
        n = len(next(iter(columns.values())))
        empty = [""] * n
        cols = [_fmt_column(columns.get(c, empty)) for c in self.columns]
        self._write_rows(list(zip(*cols, strict=True)) if cols else [])

    def _write_rows(self, rows: Sequence[Sequence[object]]) -> None:
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows(rows)
        try:
            self._buffer.write(out.getvalue())
        except OSError as exc:
            self.abort()
            raise InputError(f"cannot write: {exc.strerror or exc}", source=self._name) from None

    @property
    def _name(self) -> str:
        return str(self.path) if self.path is not None else "<stdout>"

    def close(self) -> None:
        try:
            self._buffer.flush()
            if self._tmp is None or self.path is None:
                return
            os.fsync(self._buffer.fileno())
            self._buffer.close()
            os.replace(self._tmp, self.path)
        except OSError as exc:
            self.abort()
            raise InputError(f"cannot write: {exc.strerror or exc}", source=self._name) from None

    def abort(self) -> None:
        if self._tmp is not None:
            with contextlib.suppress(OSError):
                self._buffer.close()
            self._tmp.unlink(missing_ok=True)
            self._tmp = None


def _fmt_column(column: npt.NDArray[np.generic] | Sequence[object]) -> list[str]:
    """`_fmt` over a column, without a numpy scalar per value for float and bool arrays."""
    if isinstance(column, np.ndarray) and column.dtype.kind == "f":
        return ["" if v != v else f"{v:.6g}" for v in column.tolist()]
    if isinstance(column, np.ndarray) and column.dtype.kind == "b":
        return ["1" if v else "0" for v in column.tolist()]
    return [_fmt(v) for v in (column.tolist() if isinstance(column, np.ndarray) else column)]


def _fmt(value: object) -> str:
    if isinstance(value, float | np.floating):
        return "" if value != value else f"{float(value):.6g}"
    if isinstance(value, bool | np.bool_):
        return "1" if value else "0"
    return str(value)
