"""Parquet tables read as their CSV export, so every reader, check and error code of the CSV path
applies unchanged: record batches are rendered to CSV text by Arrow (numbers in their shortest
round-trip form, nulls empty) and handed to `csv.reader` line by line. Line N is row N - 1 of the
table (line 1 is the header), as in the CSV export. Column chunks are streamed (no pre-buffering,
1 MiB reads), so memory does not follow the writer's row-group size: 287 MB peak for `passport
soh estimate` on 1,000,000 rows in groups of 65,536, 322 MB in one group, 328 MB for 3,000,000
rows in one group (session 20). Page checksums are verified where the writer stored them (Parquet
makes them optional; without them a damaged page reads as other numbers, which the estimator's
range checks catch only when they fall outside the design's window). pyarrow is optional
(`pip install 'battery-passport[parquet]'`)."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator
from typing import Any

from passport.errors import InputError

MAGIC = b"PAR1"
BATCH_ROWS = 4_096
STREAM_BUFFER = 1 << 20  # bytes read at a time from each column chunk


def is_parquet(path: str | os.PathLike[str]) -> bool:
    """A Parquet file starts (and ends) with the magic bytes PAR1."""
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == MAGIC
    except OSError:
        return False  # the CSV reader names the reason


def parquet_rows(path: str | os.PathLike[str]) -> int | None:
    """The row count in the file's footer (for a progress bar); None if it cannot be read."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return None
    try:
        with pq.ParquetFile(path) as file:
            return int(file.metadata.num_rows)
    except (pa.ArrowException, OSError, ValueError):  # the reader itself names the reason
        return None


class ParquetText:
    """A read-only text stream of CSV lines (the header, then the rows, batch by batch): what
    `csv.reader` and a `with` block need of a file."""

    def __init__(self, path: str | os.PathLike[str], label: str) -> None:
        self._label = label
        self._file: Any = None
        try:
            import pyarrow as pa
            import pyarrow.csv as pacsv
            import pyarrow.parquet as pq
        except ImportError:
            raise InputError(
                "a Parquet file: reading it needs pyarrow "
                "(pip install 'battery-passport[parquet]')",
                source=label,
            ) from None
        self._pa, self._pacsv = pa, pacsv
        try:
            # streamed column chunks (no pre-buffering): memory follows the batch, not the
            # writer's row-group size
            self._file = pq.ParquetFile(
                path, page_checksum_verification=True, pre_buffer=False, buffer_size=STREAM_BUFFER
            )
            names = self._file.schema_arrow.names
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise InputError(f"not a readable Parquet file: {_reason(exc)}", source=label) from None
        header = io.StringIO()
        csv.writer(header, lineterminator="\n").writerow(names)
        self._lines: Iterator[str] = self._generate(header.getvalue())

    def _generate(self, header: str) -> Iterator[str]:
        yield header
        options = self._pacsv.WriteOptions(include_header=False)
        for batch in self._file.iter_batches(batch_size=BATCH_ROWS, use_threads=False):
            sink = self._pa.BufferOutputStream()
            try:
                self._pacsv.write_csv(batch, sink, write_options=options)
            except (self._pa.ArrowException, ValueError) as exc:  # the rows were read
                raise InputError(
                    f"a column holds values that are not numbers or text: {_reason(exc)}",
                    source=self._label,
                ) from None
            # split on "\n" only: a quoted field may hold other line breaks
            yield from io.StringIO(sink.getvalue().to_pybytes().decode("utf-8"), newline="")

    def readline(self, size: int | None = -1) -> str:
        try:
            return next(self._lines)
        except StopIteration:
            return ""
        except (self._pa.ArrowException, OSError, ValueError) as exc:
            raise InputError(
                f"not a readable Parquet file: {_reason(exc)}", source=self._label
            ) from None

    def __next__(self) -> str:
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def __iter__(self) -> ParquetText:
        return self

    def __enter__(self) -> ParquetText:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _reason(exc: Any) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
