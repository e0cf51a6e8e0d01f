"""Trace -> feature extraction, on traces from an equivalent-circuit model we know."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
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
