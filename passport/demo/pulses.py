"""Pulse tests for the demo: reference cells with measured capacity (to fit the model) and the
intake line's test of every retired cell, synthesised by the equivalent-circuit model with the
real designs' figures carried over: resistance of a new cell, its growth with lost capacity
and cell-to-cell spread, the rest-voltage level, the tester's 0.1 mV resolution."""

from __future__ import annotations

import numpy as np

from passport.demo.figures import DemoDesign
from passport.soh.synthetic import Ecm, Rows, aged_cells, pulse_rows

NOISE_V = 0.0001  # the tester's voltage noise (1 sigma), its resolution's order
CONTACT_NOISE_V = 0.002  # a test through a poor contact (the poor-contact scenario)
REFERENCE_CELLS = 150  # per design


def design_rows(
    design: DemoDesign,
    soh: np.ndarray,
    rng: np.random.Generator,
    *,
    r0_factor: np.ndarray | None = None,
) -> Rows:
    """Pulse-test rows of cells of `design` at these true SoH values: one row per pulse width
    of the design's test (`widths_ms`), a cell's rows together, at the same state of charge."""
    real = design.real
    ecm = aged_cells(
        soh, real.rated_ah, rng, r0_new=real.r0_new_mohm / 1000,
        r0_growth=real.r0_growth_per_loss, spread=real.r0_spread_log,
    )  # fmt: skip
    if r0_factor is not None:
        ecm = Ecm(ecm.capacity_ah, ecm.r0 * r0_factor, ecm.r1, ecm.tau1, ecm.r2, ecm.tau2,
                  ecm.soc0)  # fmt: skip
    runs = [pulse_rows(ecm, real.rated_ah, w / 1000.0) for w in design.widths_ms]
    per = len(runs)
    rows = Rows(
        np.stack([r.U for r in runs], axis=1).reshape(len(soh) * per, -1),
        np.stack([r.rated_ah for r in runs], axis=1).ravel(),
        np.stack([r.width_ms for r in runs], axis=1).ravel(),
    )
    # Shift the model's OCV curve to the design's real rest-voltage level, add the tester's
    # noise and round to its resolution.
    offset = real.u1_v_p05_p50_p95[1] - float(Ecm.ocv(np.array([0.5]))[0])
    U = rows.U + offset + rng.normal(0.0, NOISE_V, rows.U.shape)
    step = real.resolution_mv / 1000
    U = np.round(U / step) * step
    return Rows(U, rows.rated_ah, rows.width_ms)


def reference_soh(design: DemoDesign, rng: np.random.Generator) -> np.ndarray:
    """Reference cells span new to well past the retired range, so that the model covers it."""
    low = design.real.soh_p05_p50_p95[0] - 0.12
    return rng.uniform(low, 1.02, REFERENCE_CELLS)
