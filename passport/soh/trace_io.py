"""Long-format trace files in (cell_id, t_s, current_a, voltage_v; optional design and run),
whole cells at a time, for the vectorised extractor in `traces`.

A cell tested several times (the protocol at each pulse width, or repeated) sends each protocol
run as its own block of samples, told apart by the optional `run` column (any text): a block
is the consecutive samples of one (cell_id, run) and gives one output row. A cell's blocks
follow each other; a cell, or a run of a cell, that comes back after another is refused."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import IO

import numpy as np
import numpy.typing as npt

from passport.errors import InputError
from passport.soh.io import (
    ERR_BAD_ROW,
    MAX_FIELD,
    FloatArray,
    _numbers,
    _rows,
    _utf8_error,
    closing,
    open_text,
)

TRACE_REQUIRED = ("cell_id", "t_s", "current_a", "voltage_v")
TRACE_CHUNK_SAMPLES = 250_000  # about a third of the peak memory of 1,000,000, no slower
ERR_NOT_MONOTONIC = "time-goes-backwards"


@dataclass(frozen=True, slots=True)
class TraceChunk:
    """Whole cells of a long-format trace file: samples as arrays, cells as lists."""

    cell_id: list[str]  # one per block (a cell's protocol run), in order of appearance
    design: list[str]  # "" when the file has no design column
    line: list[int]  # line of each block's first sample
    error: list[str]  # "" or why the block's samples are unusable
    code: npt.NDArray[np.int64]  # per sample: index into cell_id
    t: FloatArray
    current: FloatArray
    voltage: FloatArray
    run: list[str] | None = None  # per block; None when the file has no run column


def is_trace_header(header: Sequence[str]) -> bool:
    names = {h.strip() for h in header}
    return set(TRACE_REQUIRED) <= names and "U1" not in names


def sniff_header(path: str | os.PathLike[str]) -> list[str]:
    """The first row of a CSV file, or a Parquet file's column names (to tell a trace file
    from a feature table)."""
    try:
        with open_text(path, str(path)) as handle:
            return next(csv.reader(handle), [])
    except (OSError, csv.Error, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise InputError(f"cannot read: {reason}", source=str(path)) from None


def read_trace_csv(
    source: str | os.PathLike[str],
    *,
    chunk_samples: int = TRACE_CHUNK_SAMPLES,
) -> Iterator[TraceChunk]:
    """Yield whole cells, about `chunk_samples` samples at a time. A cell's samples must be
    contiguous: a cell id seen again after another cell is an `InputError` naming the line."""
    label = str(source)
    handle = open_text(source, label)
    return closing(handle, _trace_chunks(handle, label, chunk_samples))


class _TraceBuilder:
    """One chunk's blocks, and its samples as the text of their fields: numbers are parsed
    a column at a time when the chunk is built."""

    def __init__(self) -> None:
        self.cells: list[str] = []
        self.runs: list[str] = []
        self.designs: list[str] = []
        self.lines: list[int] = []
        self.errors: list[str] = []
        self.code: list[int] = []
        self.t: list[str] = []
        self.current: list[str] = []
        self.voltage: list[str] = []

    def build(self, with_runs: bool) -> TraceChunk:
        code = np.asarray(self.code, dtype=np.int64)
        errors = list(self.errors)
        columns = []
        wrong = np.zeros(len(code), dtype=bool)
        for texts in (self.t, self.current, self.voltage):
            values, _ = _numbers(texts)
            wrong |= np.isnan(values)  # NaN: empty, not a number, or not finite
            columns.append(values)
        if wrong.any():  # a sample that does not parse spoils its block, and is left out
            for c in np.unique(code[wrong]).tolist():
                errors[c] = errors[c] or ERR_BAD_ROW
            keep = ~wrong
            code = code[keep]
            columns = [v[keep] for v in columns]
        t, current, voltage = columns
        # time must not go backwards within a cell
        back = np.flatnonzero((np.diff(t) < 0) & (code[1:] == code[:-1]))
        for c in np.unique(code[back + 1]):
            if not errors[c]:
                errors[c] = ERR_NOT_MONOTONIC
        return TraceChunk(
            self.cells, self.designs, self.lines, errors, code, t, current, voltage,
            list(self.runs) if with_runs else None,
        )  # fmt: skip


def _trace_chunks(handle: IO[str], label: str, chunk_samples: int) -> Iterator[TraceChunk]:
    reader = csv.reader(handle)
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise InputError("empty file (no header)", source=label) from None
    except csv.Error as exc:
        raise InputError(f"not a CSV table: {exc}", source=label) from None
    except UnicodeDecodeError:
        raise _utf8_error(handle, label, 0) from None
    index = {name: i for i, name in enumerate(header)}
    missing = [c for c in TRACE_REQUIRED if c not in index]
    if missing:
        raise InputError(f"missing trace columns: {', '.join(missing)}", source=label)
    i_cell, i_t, i_i, i_v = (index[c] for c in TRACE_REQUIRED)
    i_design = index.get("design")
    i_run = index.get("run")
    seen: set[str] = set()
    runs_seen: set[str] = set()  # of the current cell
    chunk = _TraceBuilder()
    current_cell: str | None = None
    current_run: str | None = None
    width = len(header)
    try:
        for start, row in _rows(reader):
            cell_id = row[i_cell].strip()[:MAX_FIELD] if i_cell < len(row) else ""
            run = row[i_run].strip()[:MAX_FIELD] if i_run is not None and i_run < len(row) else ""
            if cell_id != current_cell or run != current_run:
                if cell_id != current_cell:
                    if cell_id in seen:
                        raise InputError(
                            f"line {start}: samples of cell {cell_id!r} are not "
                            "contiguous (sort the file by cell_id, then run, then t_s)",
                            source=label,
                        )
                    if len(chunk.code) >= chunk_samples:
                        yield chunk.build(i_run is not None)
                        chunk = _TraceBuilder()
                    seen.add(cell_id)
                    runs_seen.clear()
                elif run in runs_seen:
                    raise InputError(
                        f"line {start}: samples of run {run!r} of cell {cell_id!r} are not "
                        "contiguous (sort the file by cell_id, then run, then t_s)",
                        source=label,
                    )
                runs_seen.add(run)
                current_cell, current_run = cell_id, run
                chunk.cells.append(cell_id)
                chunk.runs.append(run)
                design = row[i_design] if i_design is not None and i_design < len(row) else ""
                chunk.designs.append(design.strip()[:MAX_FIELD])
                chunk.lines.append(start)
                chunk.errors.append("")
            if len(row) < width:
                chunk.errors[-1] = chunk.errors[-1] or ERR_BAD_ROW
                continue
            chunk.code.append(len(chunk.cells) - 1)
            chunk.t.append(row[i_t])
            chunk.current.append(row[i_i])
            chunk.voltage.append(row[i_v])
    except csv.Error as exc:
        raise InputError(f"line {reader.line_num}: not a CSV row: {exc}", source=label) from None
    except UnicodeDecodeError:
        raise _utf8_error(handle, label, reader.line_num) from None
    if chunk.cells:
        yield chunk.build(i_run is not None)
