"""Raw pulse traces -> the U1..U41 features, vectorised; and an equivalent-circuit simulator.

Long format, one row per sample, rows of a cell together and in time order::

    cell_id, t_s, current_a, voltage_v        (current > 0 charges the cell)

The protocol (the reference data's): a rest, then for each amplitude 0.5, 1, 1.5, 2, 2.5 C a
charge pulse of width W, a rest of 15 W, a discharge pulse of width W, a rest of 15 W. Every
time the current switches on, off or changes sign a segment ends. U1 is the voltage at the end of
the first rest (open circuit); then each segment gives two turning points, the voltage at its
first and at its last sample: U2, U3 (charge pulse), U4, U5 (rest), U6, U7 (discharge pulse),
U8, U9 (rest), U10... for the next amplitude, up to U41. W is the first pulse's duration and the
rated capacity follows from its current (0.5 C). A few whole-array passes do it for any number
of cells at once. (`synthetic` simulates such traces from an equivalent-circuit model.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

from passport.soh.features import U_COLUMNS

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

AMPLITUDES_C = (0.5, 1.0, 1.5, 2.0, 2.5)
REST_FACTOR = 15
N_U = len(U_COLUMNS)
SEGMENTS = 1 + 4 * len(AMPLITUDES_C)  # the first rest, then four per amplitude
DEFAULT_CURRENT_EPS = 0.01  # A: below this the cell is at rest


@dataclass(frozen=True, slots=True)
class Extracted:
    cell: npt.NDArray[np.generic]  # the cell code of each output row, in order of appearance
    U: FloatArray  # (cells, 41), NaN where the trace did not reach that turning point
    width_ms: FloatArray  # duration of the first pulse
    rated_ah: FloatArray  # from the first pulse's current (0.5 C)


def extract(
    cell: npt.NDArray[np.generic],
    t: FloatArray,
    current: FloatArray,
    voltage: FloatArray,
    *,
    current_eps: float = DEFAULT_CURRENT_EPS,
) -> Extracted:
    """Turning-point voltages per cell. `cell` codes (any numeric dtype) must be grouped: each
    cell's samples contiguous and in time order. |current| <= `current_eps` (A) is rest.

    Cost: two comparisons over `current`, one over `cell` (into two n-byte buffers), then work
    per segment (21 per cell), not per sample, and one copy of 41 voltages per cell; when every
    cell has the full protocol the gather is one `take`. NaN current counts as rest."""
    n = len(cell)
    voltage = np.asarray(voltage, dtype=np.float64)  # U is float64 whatever the input's dtype
    if not (len(t) == len(current) == len(voltage) == n):
        raise ValueError("cell, t, current and voltage must have the same length")
    if n == 0:
        empty = np.empty(0)
        return Extracted(np.empty(0, np.int64), np.empty((0, N_U)), empty, empty)
    # two n-byte buffers for the per-sample passes: the state (-1, 0, 1), then where the
    # cell code changes; and where the current's state or the cell changes (a segment starts)
    changes = np.empty(n, dtype=np.int8)
    boundary = np.empty(n, dtype=np.int8).view(bool)
    np.greater(current, current_eps, out=changes.view(bool))
    np.less(current, -current_eps, out=boundary)
    np.subtract(changes, boundary.view(np.int8), out=changes)
    boundary[0] = True
    np.not_equal(changes[1:], changes[:-1], out=boundary[1:])
    new_cell = changes.view(bool)[1:]  # sample i + 1 starts a cell
    np.not_equal(cell[1:], cell[:-1], out=new_cell)
    np.logical_or(boundary[1:], new_cell, out=boundary[1:])
    starts = np.flatnonzero(boundary)
    segments = len(starts)
    # the segments that start a cell, found per segment (about 20 a cell), not per sample
    opens = np.empty(segments, dtype=bool)
    opens[0] = True
    opens[1:] = new_cell.take(starts[1:] - 1)
    first = np.flatnonzero(opens)
    m = len(first)
    # [start, end] of every segment, interleaved (a cell's run of them is [s0, e0, s1, e1,
    # ...], and U1..U41 are the voltages at [e0, s1, e1, ..., e20]), then N_U - 1 spare
    # indices so that every cell's window of N_U below lies inside the array
    se = np.zeros(2 * segments + N_U - 1, dtype=np.int64)
    se[0 : 2 * segments : 2] = starts
    np.subtract(starts[1:], 1, out=se[1 : 2 * segments - 1 : 2])
    se[2 * segments - 1] = n - 1
    rows: IntArray | slice = slice(None)  # cells with a first pulse
    if segments == m * SEGMENTS and bool(opens[::SEGMENTS].all()):
        # every cell has the full protocol: one gather does it
        U = voltage.take(se[: 2 * segments].reshape(m, 2 * SEGMENTS)[:, 1:])
    else:
        # each cell's window of N_U voltages from one place after its first segment's start,
        # copied row by row; a cell of c < SEGMENTS segments has 2c - 1 of them, and the rest
        # of its window (the next cell's, or the spare indices') is blanked. Segments after
        # the protocol's last fall outside the window: ignored.
        counts = np.diff(first, append=segments)
        U = sliding_window_view(voltage.take(se), N_U)[2 * first + 1]
        tally = np.bincount(counts, minlength=SEGMENTS)
        for c in np.flatnonzero(tally[:SEGMENTS]).tolist():
            U[counts == c, 2 * c - 1 :] = np.nan
        if tally[1]:
            rows = np.flatnonzero(counts >= 2)
    cell_starts = starts[first]
    width = np.full(m, np.nan)
    rated = np.full(m, np.nan)
    # the pulse lasts until the next sample (the first of the rest after it), if the cell has
    # one: never the next cell's first sample
    pulse = first[rows] + 1
    s1, e1 = se[2 * pulse], se[2 * pulse + 1]
    cell_end = np.append(cell_starts[1:], n)[rows]
    te1 = t[e1]
    step = np.where(e1 + 1 < cell_end, t[np.minimum(e1 + 1, n - 1)] - te1, 0.0)
    width[rows] = (te1 - t[s1] + step) * 1000.0
    rated[rows] = np.abs(current[s1]) / AMPLITUDES_C[0]
    return Extracted(np.asarray(cell[cell_starts]), U, width, rated)
