"""Trace -> feature extraction, on traces from an equivalent-circuit model we know."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from passport.soh.synthetic import Ecm, protocol, random_ecm, simulate
from passport.soh.traces import AMPLITUDES_C, extract

RATED = 20.0


def one_cell(**overrides: float) -> Ecm:
    values = dict(capacity_ah=18.0, r0=0.002, r1=0.0005, tau1=1.0, r2=0.001, tau2=60.0, soc0=0.4)
    values.update(overrides)
    return Ecm(**{k: np.array([v]) for k, v in values.items()})


def test_protocol_has_the_reference_shape() -> None:
    segments = protocol(1.0)
    assert len(segments) == 1 + 4 * len(AMPLITUDES_C)
    assert segments[1] == (0.5, 1.0)
    assert segments[2] == (0.0, 15.0)
    assert segments[3] == (-0.5, 1.0)


def test_turning_points_recover_the_ohmic_resistance() -> None:
    """U2 - U1 is the ohmic step of the 0.5 C charge pulse (RC states start at zero and the
    first sample is the switching instant), so it recovers R0 to within the OCV change."""
    ecm = one_cell()
    cell, t, current, voltage = simulate(ecm, RATED, width_s=0.1)
    out = extract(cell, t, current, voltage)
    current_a = 0.5 * RATED
    assert out.U.shape == (1, 41)
    assert np.all(np.isfinite(out.U))
    assert out.U[0, 1] - out.U[0, 0] == pytest.approx(current_a * 0.002, rel=1e-6)
    assert out.rated_ah[0] == pytest.approx(RATED)
    assert out.width_ms[0] == pytest.approx(100.0, rel=1e-6)
    # The discharge pulse starts below the rest voltage by at least its ohmic step.
    assert out.U[0, 3] - out.U[0, 5] > current_a * 0.002 * 0.99


def test_extraction_matches_every_sample_it_should_take() -> None:
    """Each turning point is the voltage of a segment's first or last sample."""
    ecm = random_ecm(3, RATED, np.random.default_rng(1))
    cell, t, current, voltage = simulate(ecm, RATED, width_s=1.0, samples_per_segment=4)
    out = extract(cell, t, current, voltage)
    per_cell = len(protocol(1.0)) * 4
    for c in range(3):
        v = voltage[c * per_cell : (c + 1) * per_cell].reshape(-1, 4)
        assert out.U[c, 0] == v[0, -1]
        expected = np.column_stack([v[1:, 0], v[1:, -1]]).ravel()[:40]
        np.testing.assert_array_equal(out.U[c, 1:], expected)


def test_a_short_trace_leaves_the_unreached_points_empty() -> None:
    ecm = one_cell()
    cell, t, current, voltage = simulate(ecm, RATED, width_s=1.0, samples_per_segment=3)
    keep = 3 * 5  # the rest and the first four segments: U1..U9
    out = extract(cell[:keep], t[:keep], current[:keep], voltage[:keep])
    assert np.all(np.isfinite(out.U[0, :9]))
    assert np.all(np.isnan(out.U[0, 9:]))


def test_voltages_of_another_dtype_give_float64_turning_points() -> None:
    """A short cell's unreached points are NaN whatever the voltages' dtype: millivolts held as
    integers (no NaN to write) or float32 (rounded once, on reading) come out as float64."""
    ecm = random_ecm(2, RATED, np.random.default_rng(5))
    cell, t, current, voltage = simulate(ecm, RATED, width_s=1.0, samples_per_segment=3)
    keep = np.r_[0 : 3 * 5, len(cell) // 2 : len(cell)]  # cell 0 stops after U9
    mv = np.round(voltage[keep] * 1000).astype(np.int64)
    for given_v in (mv, mv.astype(np.float32)):
        out = extract(cell[keep], t[keep], current[keep], given_v)
        assert out.U.dtype == np.float64
        np.testing.assert_array_equal(out.U[0, :9], mv[[2, 3, 5, 6, 8, 9, 11, 12, 14]])
        assert np.isnan(out.U[0, 9:]).all()
        assert np.isfinite(out.U[1]).all()


def test_a_nan_current_counts_as_rest() -> None:
    """A sample whose current did not parse into a number reads as rest: inside a rest it
    changes nothing; inside a pulse it ends the pulse there (a rest of one sample)."""
    cell, t, current, voltage = simulate(one_cell(), RATED, width_s=1.0, samples_per_segment=4)
    clean = extract(cell, t, current, voltage)
    in_rest = current.copy()
    in_rest[1] = np.nan  # the first rest's second sample
    np.testing.assert_array_equal(extract(cell, t, in_rest, voltage).U, clean.U)
    in_pulse = current.copy()
    in_pulse[5] = np.nan  # the first pulse's second sample
    cut = extract(cell, t, in_pulse, voltage)
    assert cut.U[0, 2] == voltage[4]  # U3, the first pulse's last voltage, is now its first
    assert cut.width_ms[0] == pytest.approx((t[5] - t[4]) * 1000.0)


@settings(max_examples=25)
@given(st.integers(1, 40), st.integers(2, 6), st.floats(0.03, 5.0))
def test_many_cells_at_once_equal_one_at_a_time(cells: int, samples: int, width: float) -> None:
    ecm = random_ecm(cells, RATED, np.random.default_rng(cells))
    cell, t, current, voltage = simulate(ecm, RATED, width_s=width, samples_per_segment=samples)
    together = extract(cell, t, current, voltage)
    per_cell = len(protocol(width)) * samples
    for c in range(cells):
        part = slice(c * per_cell, (c + 1) * per_cell)
        alone = extract(cell[part], t[part], current[part], voltage[part])
        np.testing.assert_array_equal(together.U[c], alone.U[0])
    assert together.cell.tolist() == list(range(cells))


def test_lengths_must_agree_and_empty_input_is_empty() -> None:
    with pytest.raises(ValueError, match="same length"):
        extract(np.zeros(3, np.int64), np.zeros(3), np.zeros(2), np.zeros(3))
    empty = extract(np.zeros(0, np.int64), np.zeros(0), np.zeros(0), np.zeros(0))
    assert empty.U.shape == (0, 41)


def reference_extract(
    t: np.ndarray, current: np.ndarray, voltage: np.ndarray
) -> tuple[np.ndarray, float, float]:
    """One cell, the documented rule sample by sample: segments end where the current switches
    on, off or changes sign; U1 is the first segment's last voltage, then each later segment
    (up to the protocol's 21st) gives its first and last; the width runs from the first pulse's
    first sample to the sample after its last, when the cell has one."""
    state = [0 if abs(i) <= 0.01 else (1 if i > 0 else -1) for i in current]
    bounds = [k for k in range(len(state)) if k == 0 or state[k] != state[k - 1]]
    segments = [(s, e - 1) for s, e in zip(bounds, [*bounds[1:], len(state)], strict=True)]
    U = np.full(41, np.nan)
    U[0] = voltage[segments[0][1]]
    for rank, (s, e) in enumerate(segments[1:21], start=1):
        U[2 * rank - 1], U[2 * rank] = voltage[s], voltage[e]
    if len(segments) < 2:
        return U, math.nan, math.nan
    s1, e1 = segments[1]
    step = t[e1 + 1] - t[e1] if e1 + 1 < len(t) else 0.0
    return U, (t[e1] - t[s1] + step) * 1000.0, abs(current[s1]) / AMPLITUDES_C[0]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 26), min_size=1, max_size=12), st.integers(1, 4))
@example([2, 21], 3)  # a trace that stops after the first pulse: its width is not measured
# up to the next cell's first sample (the extractor once gave -30 ms here)
def test_cells_cut_short_or_running_on_match_the_sample_by_sample_rule(
    segments: list[int], samples: int
) -> None:
    """Cells whose traces stop after any segment, or run on past the protocol (extra pulses
    that are ignored), side by side in one array: each cell's turning points, width and
    rating are those of the rule applied to that cell alone."""
    cells = len(segments)
    ecm = random_ecm(cells, RATED, np.random.default_rng(cells * 31 + samples))
    cell, t, current, voltage = simulate(ecm, RATED, width_s=0.5, samples_per_segment=samples)
    per_cell = len(protocol(0.5)) * samples
    parts = []
    for c, count in enumerate(segments):
        idx = np.arange(c * per_cell, c * per_cell + min(count, 21) * samples)
        if count > 21:  # runs on: the protocol's pulses again, after it
            extra = np.arange(c * per_cell + samples, c * per_cell + (1 + count - 21) * samples)
            idx = np.concatenate((idx, extra))
        parts.append(idx)
    keep = np.concatenate(parts)
    t_kept = t[keep].copy()
    for c, idx in enumerate(parts):  # time keeps running through the extra segments
        start = sum(len(p) for p in parts[:c])
        t_kept[start : start + len(idx)] = np.arange(len(idx)) * 0.01 + t[idx[0]]
    got = extract(cell[keep], t_kept, current[keep], voltage[keep])
    assert got.cell.tolist() == list(range(cells))
    start = 0
    for c, idx in enumerate(parts):
        part = slice(start, start + len(idx))
        U, width, rated = reference_extract(t_kept[part], current[keep][part], voltage[keep][part])
        np.testing.assert_array_equal(got.U[c], U)
        np.testing.assert_allclose([got.width_ms[c], got.rated_ah[c]], [width, rated], rtol=1e-12)
        start += len(idx)


CURRENTS = (0.0, 0.005, -0.005, 0.01, 1.0, 2.5, -1.0, -0.02)  # rest, near the threshold, pulses


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.lists(st.sampled_from(CURRENTS), min_size=1, max_size=70), min_size=1, max_size=8),
    st.integers(0, 2**32 - 1),
)
def test_any_current_sequence_matches_the_sample_by_sample_rule(
    cells: list[list[float]], seed: int
) -> None:
    """Cells of arbitrary currents, not only the protocol's (any number of segments of any
    length from one sample, currents at the rest threshold, charge straight to discharge): each
    cell's turning points, width and rating are the documented rule's for that cell alone."""
    rng = np.random.default_rng(seed)
    current = np.concatenate([np.array(c) for c in cells])
    code = np.repeat(np.arange(len(cells)) * 7, [len(c) for c in cells])  # any codes, grouped
    t = np.cumsum(rng.uniform(0.001, 0.1, len(current)))
    voltage = rng.uniform(2.5, 4.2, len(current))
    got = extract(code, t, current, voltage)
    assert got.cell.tolist() == [7 * c for c in range(len(cells))]
    start = 0
    for c, part_currents in enumerate(cells):
        part = slice(start, start + len(part_currents))
        U, width, rated = reference_extract(t[part], current[part], voltage[part])
        np.testing.assert_array_equal(got.U[c], U)
        np.testing.assert_allclose([got.width_ms[c], got.rated_ah[c]], [width, rated], rtol=1e-12)
        start += len(part_currents)
