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

    Cost: two comparisons over `current`, one over `cell`, then work per segment (21 per cell),
    not per sample; when every cell has the full protocol the gather is one `take`."""
    n = len(cell)
    if not (len(t) == len(current) == len(voltage) == n):
        raise ValueError("cell, t, current and voltage must have the same length")
    if n == 0:
        empty = np.empty(0)
        return Extracted(np.empty(0, np.int64), np.empty((0, N_U)), empty, empty)
    state = (current > current_eps).view(np.int8) - (current < -current_eps).view(np.int8)
    boundary = np.empty(n, dtype=bool)
    boundary[0] = True
    np.not_equal(state[1:], state[:-1], out=boundary[1:])
    new_cell = np.not_equal(cell[1:], cell[:-1])  # sample i + 1 starts a cell
    boundary[1:] |= new_cell
    starts = np.flatnonzero(boundary)
    # [start, end] of every segment, interleaved: a cell's row of 2 * SEGMENTS indices is
    # [s0, e0, s1, e1, ...], and U1..U41 are the voltages at [e0, s1, e1, ..., e20]
    se = np.empty((len(starts), 2), dtype=np.int64)
    se[:, 0] = starts
    se[:-1, 1] = starts[1:] - 1
    se[-1, 1] = n - 1
    m = len(starts) // SEGMENTS
    cell_starts = starts[::SEGMENTS]
    # every cell has the full protocol when the cells change exactly at every SEGMENTS-th
    # segment start and nowhere else: then one gather does it
    if (
        len(starts) == m * SEGMENTS
        and np.count_nonzero(new_cell) == m - 1
        and bool(new_cell[cell_starts[1:] - 1].all())
    ):
        idx = se.reshape(m, 2 * SEGMENTS)
        U = voltage.take(idx[:, 1:])
        s1, e1 = idx[:, 2], idx[:, 3]
        rows: IntArray | slice = slice(None)
    else:
        # a cell start starts a segment: the segments that start a cell, found per segment (21
        # a cell) rather than per sample, give each cell's first segment and its start
        opens = np.empty(len(starts), dtype=bool)
        opens[0] = True
        opens[1:] = new_cell[starts[1:] - 1]
        first = np.flatnonzero(opens)
        cell_starts = starts[first]
        m = len(cell_starts)
        counts = np.diff(first, append=len(starts))
        if int(counts.max()) > SEGMENTS:  # segments after the protocol's last are ignored
            rank = np.arange(len(starts)) - np.repeat(first, counts)
            se = se[rank < SEGMENTS]
            counts = np.minimum(counts, SEGMENTS)
            first = np.cumsum(counts) - counts
        # the [start, end] pairs of a cell's segments, in order, fill its row of U from one
        # place before it (U1 is the first rest's end): one scatter of consecutive runs, with
        # the first rest's start sent to a spare slot after the last row
        flat = np.full(m * N_U + 1, np.nan)
        at = np.arange(2 * len(se)) + np.repeat(np.arange(m) * N_U - 2 * first - 1, 2 * counts)
        at[2 * first] = m * N_U
        flat[at] = voltage.take(se.ravel())
        U = flat[: m * N_U].reshape(m, N_U)
        rows = np.flatnonzero(counts >= 2)  # cells with a first pulse
        s1, e1 = se[first[rows] + 1, 0], se[first[rows] + 1, 1]
    width = np.full(m, np.nan)
    rated = np.full(m, np.nan)
    # the pulse lasts until the next sample (the first of the rest after it), if the cell has
    # one: never the next cell's first sample
    cell_end = np.append(cell_starts[1:], n)[rows]
    te1 = t[e1]
    step = np.where(e1 + 1 < cell_end, t[np.minimum(e1 + 1, n - 1)] - te1, 0.0)
    width[rows] = (te1 - t[s1] + step) * 1000.0
    rated[rows] = np.abs(current[s1]) / AMPLITUDES_C[0]
    return Extracted(np.asarray(cell[cell_starts]), U, width, rated)
