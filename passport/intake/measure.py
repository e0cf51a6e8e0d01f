"""The intake line's pulse tests -> one measurement per cell id.

TESTS.csv is the SoH estimator's input (a pulse-feature table, or long-format traces told apart
by the header). Two optional columns of a feature table serve grading: `tests_covered` (what
the intake test covered of the cell's history risks, `;`-separated: deep-discharge,
over-temperature) and `self_discharge_mv_day` (open-circuit voltage drop over the intake rest).
A cell with several rows that gave an estimate (the pulse widths of one test, or repeated
tests of the visit) gets one SoH from all of them (`passport.soh.combine`: weighted mean, sigma
narrowed as far as the design's row correlation allows); its last such row gives the line
number, resistance and the grading columns. A cell whose every such row is unlike the model's
reference cells (`Measurement.unlike_reference`) is sent for another test by the grading policy.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace

import numpy as np

from passport.errors import InputError
from passport.grading import TEST_COVERAGE
from passport.soh import SohModel, combine, estimate, trace_chunk_to_rows
from passport.soh.io import PulseChunk, open_text, read_pulse_csv
from passport.soh.trace_io import is_trace_header, read_trace_csv, sniff_header

ERR_DESIGN_MISMATCH = "design-mismatch"


@dataclass(frozen=True, slots=True)
class Measurement:
    line: int
    design: str
    soh: float | None  # fraction; None with an error
    soh_sigma: float | None
    resistance_ohm: float | None
    error: str  # "" when fine
    tests_covered: tuple[str, ...] = ()
    self_discharge_mv_day: float | None = None
    rows: int = 1  # how many test rows this cell had
    combined: int = 1  # how many of them gave the SoH (0 with an error)
    far_rows: int = 0  # how many of those are unlike the model's reference cells

    @property
    def unlike_reference(self) -> bool:
        """Every row that gave the SoH is unlike the model's reference cells (`SohModel.
        far_from_training`): noisy voltages, or a cell unlike those the model was trained
        on. One ordinary row is enough to stand on: `combine` weighs the far ones down."""
        return self.combined > 0 and self.far_rows == self.combined


def _extras(path: str | os.PathLike[str]) -> dict[int, tuple[tuple[str, ...], float | None]]:
    """line -> (tests_covered, self_discharge_mv_day) for a feature table that has them."""
    out: dict[int, tuple[tuple[str, ...], float | None]] = {}
    label = str(path)
    with open_text(path, label) as handle:
        reader = csv.DictReader(handle)
        names = [n.strip() for n in reader.fieldnames or []]
        if "tests_covered" not in names and "self_discharge_mv_day" not in names:
            return out
        reader.fieldnames = names
        before = reader.line_num
        for row in reader:
            line = before + 1
            before = reader.line_num
            covered = tuple(
                c.strip().lower() for c in (row.get("tests_covered") or "").split(";") if c.strip()
            )
            unknown = [c for c in covered if c not in TEST_COVERAGE]
            if unknown:
                raise InputError(
                    f"line {line}: tests_covered {unknown[0]!r} is not one of "
                    f"{', '.join(TEST_COVERAGE)}",
                    source=label,
                )
            text = (row.get("self_discharge_mv_day") or "").strip()
            value = None
            if text:
                try:
                    value = float(text)
                except ValueError:
                    value = math.nan
                if not math.isfinite(value) or value < 0:
                    raise InputError(
                        f"line {line}: self_discharge_mv_day {text!r} is not a number >= 0",
                        source=label,
                    )
            out[line] = (covered, value)
    return out


def _chunks(path: str | os.PathLike[str], traces: bool) -> Iterator[PulseChunk]:
    if not traces:
        yield from read_pulse_csv(path)
        return
    for chunk in read_trace_csv(path):
        yield trace_chunk_to_rows(chunk)


def measure(
    model: SohModel,
    path: str | os.PathLike[str],
    designs: Mapping[str, str],
) -> dict[str, Measurement]:
    """Estimate every row; `designs` (cell id -> the passport's model) fills an empty design
    and catches a test filed under another design than the passport's."""
    traces = is_trace_header([h.strip() for h in sniff_header(path)])
    extras = {} if traces else _extras(path)
    best: dict[str, Measurement] = {}
    counts: dict[str, int] = {}
    usable: dict[str, list[tuple[float, float]]] = {}
    far_rows: dict[str, int] = {}
    for chunk in _chunks(path, traces):
        design = np.array(
            [d or designs.get(c, "") for c, d in zip(chunk.cell_id, chunk.design, strict=True)],
            dtype=object,
        )
        est = estimate(model, design, chunk.U, chunk.rated_ah, chunk.width_ms)
        far = model.far_from_training(design, est.soh_sigma)
        for i in range(len(chunk)):
            cell = str(chunk.cell_id[i])
            if not cell:
                continue
            counts[cell] = counts.get(cell, 0) + 1
            error = str(chunk.error[i]) or str(est.error[i])
            expected = designs.get(cell)
            if expected is not None and design[i] and design[i] != expected:
                error = ERR_DESIGN_MISMATCH
            line = int(chunk.line[i])
            covered, self_discharge = extras.get(line, ((), None))
            ok = not error
            m = Measurement(
                line=line,
                design=str(design[i]),
                soh=float(est.soh[i]) if ok else None,
                soh_sigma=float(est.soh_sigma[i]) if ok else None,
                # measured even when the SoH estimator refuses the row (out of its range)
                resistance_ohm=_finite(est.resistance_ohm[i]) if not chunk.error[i] else None,
                error=error,
                tests_covered=covered,
                self_discharge_mv_day=self_discharge,
            )
            if ok:
                usable.setdefault(cell, []).append((float(est.soh[i]), float(est.soh_sigma[i])))
                far_rows[cell] = far_rows.get(cell, 0) + bool(far[i])
            held = best.get(cell)
            if held is None or ok or held.error:
                best[cell] = m
    out: dict[str, Measurement] = {}
    for cell, m in best.items():
        rows = usable.get(cell, [])
        if rows:
            soh, sigma = combine(
                [r[0] for r in rows], [r[1] for r in rows], model.row_correlation(m.design)
            )
            m = replace(m, soh=soh, soh_sigma=sigma)
        out[cell] = replace(m, rows=counts[cell], combined=len(rows),
                            far_rows=far_rows.get(cell, 0))  # fmt: skip
    return out


def _finite(x: float) -> float | None:
    value = float(x)
    return value if math.isfinite(value) and value > 0 else None
