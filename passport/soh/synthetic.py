"""Synthetic cells: an equivalent-circuit model (R0 + two RC pairs, a smooth OCV curve) driven
through the pulse protocol, for tests, the demo and benchmarks.

`simulate` gives the long-format trace; `aged_cells` draws cells whose resistances grow as
their capacity fades (as real cells' do), so a model trained on `reference_rows` learns SoH
from the pulse response the way it does on real reference cells.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from passport.soh.features import U_COLUMNS
from passport.soh.traces import AMPLITUDES_C, REST_FACTOR, extract

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Ecm:
    """Per-cell parameters (arrays of the same length): capacity, R0 and two RC pairs, start
    SOC; the open-circuit voltage follows a smooth curve in SOC."""

    capacity_ah: FloatArray
    r0: FloatArray
    r1: FloatArray
    tau1: FloatArray
    r2: FloatArray
    tau2: FloatArray
    soc0: FloatArray

    @staticmethod
    def ocv(soc: FloatArray) -> FloatArray:
        s = np.clip(soc, 1e-3, 1 - 1e-3)
        return 3.45 + 0.55 * s + 0.04 * np.log(s / (1 - s))


def protocol(width_s: float, rest0_s: float = 600.0) -> list[tuple[float, float]]:
    """(C-rate, duration) segments: the rest, then per amplitude charge, rest, discharge, rest."""
    segments = [(0.0, rest0_s)]
    for amplitude in AMPLITUDES_C:
        rest = REST_FACTOR * width_s
        segments += [(amplitude, width_s), (0.0, rest), (-amplitude, width_s), (0.0, rest)]
    return segments


def simulate(
    ecm: Ecm, rated_ah: float, width_s: float, samples_per_segment: int = 5
) -> tuple[IntArray, FloatArray, FloatArray, FloatArray]:
    """Sample the protocol on every cell: (cell, t, current, voltage) in the long format.

    Currents are C-rates of the *rated* capacity, as an intake line applies them. Each segment
    is sampled `samples_per_segment` times from its first instant (the current already
    switched: the ohmic step shows) to its last (just before the next switch)."""
    cells = len(ecm.capacity_ah)
    segments = protocol(width_s)
    k = samples_per_segment
    per_cell = len(segments) * k
    t = np.empty((cells, per_cell))
    current = np.empty((cells, per_cell))
    voltage = np.empty((cells, per_cell))
    soc = ecm.soc0.astype(np.float64).copy()
    v1 = np.zeros(cells)
    v2 = np.zeros(cells)
    clock = 0.0
    column = 0
    for rate, duration in segments:
        amps = np.full(cells, rate * rated_ah)
        offsets = np.linspace(0.0, duration, k)
        offsets[-1] = duration * (1 - 1e-9)  # still inside the segment
        previous = 0.0
        for offset in offsets:
            dt = offset - previous
            previous = offset
            soc += amps * dt / (3600.0 * ecm.capacity_ah)
            a1 = np.exp(-dt / ecm.tau1)
            a2 = np.exp(-dt / ecm.tau2)
            v1 = v1 * a1 + amps * ecm.r1 * (1 - a1)
            v2 = v2 * a2 + amps * ecm.r2 * (1 - a2)
            t[:, column] = clock + offset
            current[:, column] = amps
            voltage[:, column] = Ecm.ocv(soc) + amps * ecm.r0 + v1 + v2
            column += 1
        dt = duration - previous  # to the end of the segment, current still on
        soc += amps * dt / (3600.0 * ecm.capacity_ah)
        a1, a2 = np.exp(-dt / ecm.tau1), np.exp(-dt / ecm.tau2)
        v1 = v1 * a1 + amps * ecm.r1 * (1 - a1)
        v2 = v2 * a2 + amps * ecm.r2 * (1 - a2)
        clock += duration
    codes = np.repeat(np.arange(cells, dtype=np.int64), per_cell)
    return codes, t.ravel(), current.ravel(), voltage.ravel()


def random_ecm(cells: int, rated_ah: float, rng: np.random.Generator) -> Ecm:
    """Plausible cells: capacity 60-105 % of rated, resistances scaling inversely with size."""
    scale = 1.0 / rated_ah
    return Ecm(
        capacity_ah=rated_ah * rng.uniform(0.6, 1.05, cells),
        r0=scale * rng.uniform(0.02, 0.06, cells),
        r1=scale * rng.uniform(0.005, 0.02, cells),
        tau1=rng.uniform(0.5, 3.0, cells),
        r2=scale * rng.uniform(0.005, 0.03, cells),
        tau2=rng.uniform(20.0, 120.0, cells),
        soc0=rng.uniform(0.2, 0.6, cells),
    )


def aged_cells(
    soh: FloatArray,
    rated_ah: float,
    rng: np.random.Generator,
    *,
    r0_new: float | None = None,
    r0_growth: float = 1.5,
    spread: float = 0.03,
) -> Ecm:
    """Cells of one design at the given SoH (fractions): R0 grows by `r0_growth` times its new
    value per unit of capacity lost with a log-normal cell-to-cell `spread`; the polarisation
    resistances grow by ~1.5x (faster, as real cells' do) with 3 % spread; start SOC 30-70 %.
    `r0_new` is the ohmic resistance of a new cell (ohm; default 20 mOhm for 5 Ah, scaled)."""
    n = len(soh)
    lost = 1.0 - np.asarray(soh, dtype=np.float64)
    growth = 1.0 + 1.5 * lost
    r_new = 0.1 / rated_ah if r0_new is None else r0_new / 0.2  # R0 is a fifth of the total

    def varied(sigma: float = 0.03) -> FloatArray:
        return np.exp(rng.normal(0.0, sigma, n))

    return Ecm(
        capacity_ah=rated_ah * np.asarray(soh, dtype=np.float64),
        r0=r_new * 0.2 * np.maximum(1.0 + r0_growth * lost, 0.1) * varied(spread),
        r1=r_new * 0.05 * growth**1.5 * varied(),
        tau1=rng.uniform(0.8, 1.5, n),
        r2=r_new * 0.08 * growth**2 * varied(),
        tau2=rng.uniform(40.0, 80.0, n),
        soc0=rng.uniform(0.3, 0.7, n),
    )


@dataclass(frozen=True, slots=True)
class Rows:
    """Feature rows as the CSV tables hold them (one per cell)."""

    U: FloatArray  # (n, 41)
    rated_ah: FloatArray
    width_ms: FloatArray


def pulse_rows(ecm: Ecm, rated_ah: float, width_s: float = 1.0) -> Rows:
    """The turning points an intake line would record for these cells."""
    cell, t, current, voltage = simulate(ecm, rated_ah, width_s, samples_per_segment=2)
    got = extract(cell, t, current, voltage)
    return Rows(got.U, got.rated_ah, got.width_ms)


def pulse_table_csv(
    design: Sequence[str],
    cell_id: Sequence[str],
    rows: Rows,
    *,
    soh: FloatArray | None = None,
    extra: Mapping[str, Sequence[object]] | None = None,
) -> str:
    """The rows as a pulse-feature table (the reference data's columns), with `soh` when known
    and `extra` columns (e.g. passport claims) appended."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    extra = dict(extra or {})
    head = ["design", "rated_ah", "pulse_width_ms", "cell_id"]
    writer.writerow(head + (["soh"] if soh is not None else []) + U_COLUMNS + list(extra))
    for r in range(len(cell_id)):
        volts = ["" if v != v else f"{v:.6f}" for v in rows.U[r]]
        known = [f"{soh[r]:.5f}"] if soh is not None else []
        more = ["" if v is None else str(v) for v in (col[r] for col in extra.values())]
        ident = [design[r], f"{rows.rated_ah[r]:g}", f"{rows.width_ms[r]:g}", cell_id[r]]
        writer.writerow([*ident, *known, *volts, *more])
    return out.getvalue()
