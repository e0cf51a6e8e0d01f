"""From what was read, verified and measured to each cell's evidence and grade: the passport
check (claim against measurement), resistance growth and the within-design outlier scores."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from passport.grading import Evidence, GradingPolicy, grade
from passport.image import Image
from passport.intake.facts import Facts
from passport.intake.measure import Measurement
from passport.soh import check_claims, resistance_growth
from passport.soh.check import Ageing


@dataclass(slots=True)
class CellState:
    path: Path
    image: Image | None = None
    facts: Facts | None = None
    verified: bool = False
    failures: list[str] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)
    error: str = ""
    alerts: list[str] = field(default_factory=list)
    measurement: Measurement | None = None
    twins: int = 0  # tags in this batch carrying the same passport (clones), 0 when unique

    @property
    def keys(self) -> list[str]:
        keys = [self.path.stem, self.path.name]
        if self.facts is not None:
            keys += [self.facts.battery_id, self.facts.passport_id]
        return keys


def _robust_z(values: dict[int, float], groups: dict[int, str]) -> dict[int, float]:
    """(x - median) / (1.4826 MAD) within each group; high values are positive. (Not a
    residual against the measured SoH: the pulse-test estimate itself drops for a cell whose
    resistance is off, which would hide the outlier it is meant to show.)"""
    out: dict[int, float] = {}
    for name in set(groups.values()):
        idx = [i for i in values if groups[i] == name]
        x = np.array([values[i] for i in idx])
        if len(x) < 3:
            continue
        med = float(np.median(x))
        mad = 1.4826 * float(np.median(np.abs(x - med)))
        if mad <= 0:
            continue
        for i, v in zip(idx, x, strict=True):
            out[i] = (float(v) - med) / mad
    return out


def assess(
    cells: list[CellState], policy: GradingPolicy, ageing: Ageing, threshold: float
) -> list[dict[str, Any]]:
    n = len(cells)
    nan = math.nan
    soh = np.full(n, nan)
    sigma = np.full(n, nan)
    claimed = np.full(n, nan)
    claimed_sigma = np.full(n, nan)
    fec = np.full(n, nan)
    days = np.full(n, nan)
    for i, c in enumerate(cells):
        m, f = c.measurement, c.facts
        if m is not None and m.soh is not None and m.soh_sigma is not None:
            soh[i], sigma[i] = m.soh, m.soh_sigma
        if c.verified and f is not None and f.claimed_soh is not None:
            claimed[i] = f.claimed_soh
            claimed_sigma[i] = nan if f.claimed_sigma is None else f.claimed_sigma
            fec[i] = nan if f.fec_since is None else f.fec_since
            days[i] = nan if f.days_since is None else f.days_since
    check = check_claims(soh, sigma, claimed, claimed_sigma, fec, days,
                         ageing=ageing, threshold=threshold)  # fmt: skip
    resistance = np.full(n, nan)
    initial = np.full(n, nan)
    discharge: dict[int, float] = {}
    design: dict[int, str] = {}
    for i, c in enumerate(cells):
        m, f = c.measurement, c.facts
        design[i] = f.model if f is not None else (m.design if m is not None else "")
        if m is not None and m.resistance_ohm is not None:
            resistance[i] = m.resistance_ohm
        if f is not None:
            initial[i] = f.initial_resistance_uohm
        if m is not None and m.self_discharge_mv_day is not None:
            discharge[i] = m.self_discharge_mv_day
    ratio = resistance_growth(resistance, initial)
    growth = {i: float(g) for i, g in enumerate(ratio) if g > 0}  # NaN compares False
    growth_z = _robust_z({i: math.log(g) for i, g in growth.items()}, design)
    discharge_z = _robust_z(discharge, design)
    design_cells: dict[str, int] = {}
    for i in growth:
        design_cells[design[i]] = design_cells.get(design[i], 0) + 1
    discharge_cells: dict[str, int] = {}  # the self-discharge z's own population
    for i in discharge:
        discharge_cells[design[i]] = discharge_cells.get(design[i], 0) + 1
    results = []
    for i, c in enumerate(cells):
        results.append(_result(policy, c, i, soh, sigma, check, growth, growth_z, discharge_z,
                               design, design_cells, discharge_cells))  # fmt: skip
    return results


def _num(x: float) -> float | None:
    return None if math.isnan(x) else round(float(x), 6)


def _result(
    policy: GradingPolicy, c: CellState, i: int, soh: Any, sigma: Any, check: Any,
    growth: dict[int, float], growth_z: dict[int, float], discharge_z: dict[int, float],
    design: dict[int, str], design_cells: dict[str, int], discharge_cells: dict[str, int],
) -> dict[str, Any]:  # fmt: skip
    m, f = c.measurement, c.facts
    has_claim = f is not None and c.verified and f.claimed_soh is not None
    measured = _num(soh[i])
    evidence = Evidence(
        cell_id=f.battery_id if f is not None else c.path.stem,
        design=design[i] or None,
        verified=c.verified,
        verify_rules=tuple(dict.fromkeys(c.rules)),
        alerts=tuple(c.alerts),
        events=f.events if f is not None and c.verified else (),
        event_records=f.event_records if f is not None and c.verified else (),
        deep_discharges=f.deep_discharges if f is not None and c.verified else None,
        minutes_hot=f.minutes_hot if f is not None and c.verified else None,
        tests_covered=m.tests_covered if m is not None else (),
        has_test=m is not None,
        estimate_error=m.error if m is not None else "",
        unlike_reference=m.unlike_reference if m is not None else False,
        measured_soh=measured,
        measured_sigma=_num(sigma[i]),
        claimed_soh=f.claimed_soh if has_claim and f is not None else None,
        claimed_sigma=f.claimed_sigma if has_claim and f is not None else None,
        claim_record=f.claim_record if has_claim and f is not None else None,
        claim_z=_num(check.z[i]) if has_claim and measured is not None else None,
        claim_flagged=bool(check.flagged[i]),
        soh=_num(check.posterior[i]) if measured is not None else None,
        soh_sigma=_num(check.posterior_sigma[i]) if measured is not None else None,
        resistance_growth=_num(growth[i]) if i in growth else None,
        resistance_z=_num(growth_z[i]) if i in growth_z else None,
        self_discharge_mv_day=m.self_discharge_mv_day if m is not None else None,
        self_discharge_z=_num(discharge_z[i]) if i in discharge_z else None,
        design_cells=design_cells.get(design[i], 0),
        self_discharge_cells=discharge_cells.get(design[i], 0),
        exhaustion_threshold=f.exhaustion_threshold if f is not None and c.verified else None,
        birth_sha256=f.birth_sha256 if f is not None else None,
        passport_id=f.passport_id if f is not None else None,
    )
    if c.error:
        decided: dict[str, Any] = {
            "grade": "ERROR", "outcome": "error", "rules": [], "group": None,
            "reasons": [f"the image cannot be read: {c.error}"], "policy": policy.ref(),
            "also": [],
        }  # fmt: skip
    else:
        decided = grade(evidence, policy).to_dict()
    return {
        "cell_id": evidence.cell_id,
        "image": str(c.path),
        "passport_id": evidence.passport_id,
        "design": evidence.design,
        "verified": c.verified,
        "verify_failures": c.failures,
        "soh": measured,
        "soh_sigma": evidence.measured_sigma,
        "resistance_mohm": None
        if m is None or m.resistance_ohm is None
        else round(m.resistance_ohm * 1e3, 6),
        "claimed_soh": evidence.claimed_soh,
        "claim_z": evidence.claim_z,
        "claim_flagged": evidence.claim_flagged,
        "posterior_soh": evidence.soh,
        "posterior_sigma": evidence.soh_sigma,
        "resistance_growth": evidence.resistance_growth,
        **decided,
        "test_line": m.line if m is not None else None,
        "test_rows": m.combined if m is not None else 0,  # rows the measured SoH combines
        "test_far_rows": m.far_rows if m is not None else 0,  # of them, unlike the reference
        "test_error": m.error if m is not None else "",
        "error": c.error,
        "evidence": evidence.to_dict(),
        "intake_entry": "",
        "output_image": "",
        "note": "",
    }
