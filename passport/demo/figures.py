"""Figures of the real retired-cell data that the demo carries over: numbers, never rows.

The demo runs on machines without ../shared, so it synthesises its reference and intake cells
from these. They are the output of `python bench/demo_figures.py` on
`../shared/data/soh/pulse_features_dev.csv` (PulseBat, MIT licence), rounded; a test checks
that they still match it. What each means is documented in that script.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RealFigures:
    chemistry: str
    rated_ah: float
    soh_p05_p50_p95: tuple[float, float, float]  # retired cells' measured SoH
    u1_v_p05_p50_p95: tuple[float, float, float]  # rest voltage before the pulses
    r0_new_mohm: float  # ohmic step resistance, fitted line extrapolated to SoH 1
    r0_growth_per_loss: float  # R0 = r0_new * (1 + growth * (1 - SoH))
    r0_spread_log: float  # cell-to-cell spread of log R0 around that line
    resolution_mv: float  # voltage resolution of the tester


REAL: dict[str, RealFigures] = {
    "LFP-35Ah": RealFigures("LFP", 35.0, (0.768, 0.833, 0.926), (3.193, 3.309, 3.345),
                            2.084, 0.46, 0.075, 0.1),
    "LFP-68Ah": RealFigures("LFP", 68.0, (0.69, 0.826, 0.858), (3.19, 3.311, 3.344),
                            0.655, 0.65, 0.07, 0.1),
    "NMC-21Ah": RealFigures("NMC", 21.0, (0.848, 0.996, 1.007), (3.451, 3.615, 3.681),
                            1.873, 3.34, 0.07, 0.1),
    "NMC-2.1Ah": RealFigures("NMC", 2.1, (0.689, 0.831, 0.911), (3.493, 3.689, 3.892),
                             16.517, 0.07, 0.052, 0.1),
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class DemoDesign:
    """A demo cell model, built after one real design."""

    model: str
    after: str  # the real design whose figures it carries
    nominal_v: str
    min_v: str
    max_v: str
    cycle_life: int
    cycles_per_year: tuple[float, float]  # full equivalent cycles a year, range
    # pulse widths the intake line runs on every cell, one test row each (the real LFP designs
    # were measured at 30, 100, 1000 and 5000 ms, the others at 5000 ms only)
    widths_ms: tuple[float, ...] = (1000.0,)

    @property
    def real(self) -> RealFigures:
        return REAL[self.after]


DESIGNS: tuple[DemoDesign, ...] = (
    DemoDesign("ACME-LFP-35", "LFP-35Ah", "3.2", "2.5", "3.65", 6000, (250.0, 450.0),
               (100.0, 1000.0)),
    DemoDesign("ACME-LFP-68", "LFP-68Ah", "3.2", "2.5", "3.65", 6000, (250.0, 450.0),
               (100.0, 1000.0)),
    DemoDesign("ACME-NMC-21", "NMC-21Ah", "3.65", "2.7", "4.2", 2000, (150.0, 300.0)),
    DemoDesign("ACME-NMC-2.1", "NMC-2.1Ah", "3.6", "2.5", "4.2", 800, (80.0, 200.0)),
)  # fmt: skip
