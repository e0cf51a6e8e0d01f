"""Grading one cell: a pure function of its evidence and the policy, so that an auditor holding
the evidence (it is in every result) and the policy (found by its SHA-256) replays the decision.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from passport.errors import InputError
from passport.grading.policy import GRADE_ORDER, GradingPolicy

COVERS_DEEP_DISCHARGE = "deep-discharge"
COVERS_OVER_TEMPERATURE = "over-temperature"
TEST_COVERAGE = (COVERS_DEEP_DISCHARGE, COVERS_OVER_TEMPERATURE)

_GATE_OUTCOMES = {
    "UNVERIFIED": "unverified",
    "QUARANTINE": "quarantine",
    "TEST-REQUIRED": "test-required",
    "D": "recycle",
}


@dataclass(frozen=True, slots=True)
class Evidence:
    """Everything grading looks at, as measured or read from a verified passport. SoH values
    are fractions; `resistance_growth` is measured / initial resistance."""

    cell_id: str
    design: str | None = None
    verified: bool = False
    verify_rules: tuple[str, ...] = ()  # failed verification rules
    alerts: tuple[str, ...] = ()  # fork / clone alerts, "kind: message"
    events: tuple[str, ...] = ()  # negative events ever reported (Event names, lower case)
    event_records: tuple[str, ...] = ()  # SHA-256 of the records that reported them
    deep_discharges: int | None = None
    minutes_hot: int | None = None
    tests_covered: tuple[str, ...] = ()  # history risks the intake test covered
    has_test: bool = False
    estimate_error: str = ""
    # every row of the test is unlike the SoH model's reference cells (`SohModel.
    # far_from_training`): a measurement the model cannot vouch for
    unlike_reference: bool = False
    measured_soh: float | None = None
    measured_sigma: float | None = None
    claimed_soh: float | None = None
    claimed_sigma: float | None = None
    claim_record: str | None = None  # SHA-256 of the record that made the claim
    claim_z: float | None = None
    claim_flagged: bool = False
    soh: float | None = None  # the SoH graded on: the posterior of claim and measurement
    soh_sigma: float | None = None
    resistance_growth: float | None = None
    resistance_z: float | None = None  # robust z of log growth within the design, this batch
    self_discharge_mv_day: float | None = None
    self_discharge_z: float | None = None
    design_cells: int = 0  # cells of this design with a resistance growth (its outlier rule)
    self_discharge_cells: int = 0  # cells of this design with a self-discharge (its rule)
    exhaustion_threshold: float | None = None  # the OEM's, from the birth record
    birth_sha256: str | None = None
    passport_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Evidence:
        """The inverse of `to_dict`, refusing unknown or mistyped fields (a replay input)."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise InputError(f"evidence: unknown field(s) {', '.join(unknown)}")
        kwargs: dict[str, Any] = {}
        for name, value in data.items():
            kwargs[name] = _typed(name, str(known[name].type), value)
        if not isinstance(kwargs.get("cell_id"), str):
            raise InputError("evidence: cell_id is missing")
        return cls(**kwargs)


def _typed(name: str, annotation: str, value: Any) -> Any:
    """`value` checked against a field's annotation (a string: annotations are postponed)."""
    if value is None and annotation.endswith("| None"):
        return None
    kind = annotation.removesuffix(" | None")
    if kind == "tuple[str, ...]":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise InputError(f"evidence: {name} must be a list of strings")
        return tuple(value)
    if kind == "bool":
        if not isinstance(value, bool):
            raise InputError(f"evidence: {name} must be true or false")
        return value
    if kind == "str":
        if not isinstance(value, str):
            raise InputError(f"evidence: {name} must be a string")
        return value
    if kind in ("int", "float"):
        allowed = int if kind == "int" else int | float
        if isinstance(value, bool) or not isinstance(value, allowed):
            raise InputError(
                f"evidence: {name} must be {'an integer' if kind == 'int' else 'a number'}"
            )
        if not math.isfinite(value):
            raise InputError(f"evidence: {name} must be finite")
        return value if kind == "int" else float(value)
    raise InputError(f"evidence: {name} has an unexpected type")  # pragma: no cover


@dataclass(frozen=True, slots=True)
class GradeResult:
    grade: str  # A, B, C, D, QUARANTINE, UNVERIFIED or TEST-REQUIRED
    outcome: str  # remanufacture, ev-reuse, stationary, recycle, quarantine, ...
    rules: tuple[str, ...]  # the rule ids that decided it, in the order they applied
    reasons: tuple[str, ...]  # the same, in plain language with the numbers
    group: str | None  # regrouping bin for reuse grades: "<model>/<grade>"
    policy: dict[str, Any]
    also: tuple[str, ...] = ()  # later gates that hold too ("rule id: detail"), for the record

    def to_dict(self) -> dict[str, Any]:
        return {
            "grade": self.grade, "outcome": self.outcome, "rules": list(self.rules),
            "reasons": list(self.reasons), "group": self.group, "policy": self.policy,
            "also": list(self.also),
        }  # fmt: skip


def p_at_least(soh: float, sigma: float, threshold: float) -> float:
    """P(true SoH >= threshold) for a normal estimate."""
    if sigma <= 0 or not math.isfinite(sigma):
        return 1.0 if soh >= threshold else 0.0
    return 0.5 * math.erfc((threshold - soh) / (sigma * math.sqrt(2.0)))


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


# Each condition returns None (does not hold) or a plain-language detail with the numbers.
def _unverified(ev: Evidence, p: dict[str, Any]) -> str | None:
    if ev.verified:
        return None
    return "failed: " + ", ".join(ev.verify_rules) if ev.verify_rules else "failed"


def _registry_alert(ev: Evidence, p: dict[str, Any]) -> str | None:
    return "; ".join(ev.alerts) if ev.alerts else None


def _safety_event(ev: Evidence, p: dict[str, Any]) -> str | None:
    hit = sorted(set(ev.events) & p["events"])
    return "reported: " + ", ".join(hit) if hit else None


def _overstated(ev: Evidence, p: dict[str, Any]) -> str | None:
    if not ev.claim_flagged:
        return None
    claimed = "?" if ev.claimed_soh is None else _pct(ev.claimed_soh)
    measured = "?" if ev.measured_soh is None else _pct(ev.measured_soh)
    z = "?" if ev.claim_z is None else f"{ev.claim_z:.1f}"
    return f"claimed {claimed}, measured {measured}, z = {z}"


def _no_test(ev: Evidence, p: dict[str, Any]) -> str | None:
    if not ev.has_test:
        return "no pulse test row for this cell"
    if ev.estimate_error or ev.soh is None:
        return f"the estimator returned {ev.estimate_error or 'no value'}"
    return None


def _unlike_reference(ev: Evidence, p: dict[str, Any]) -> str | None:
    if not ev.unlike_reference or ev.measured_soh is None or ev.measured_sigma is None:
        return None
    spread = "more than 100 %" if ev.measured_sigma >= 1.0 else _pct(ev.measured_sigma)
    return f"measured {_pct(ev.measured_soh)} +/- {spread}"


def _abuse(ev: Evidence, p: dict[str, Any]) -> str | None:
    found = []
    deep = ev.deep_discharges or 0
    if deep > p["max_deep_discharges"] and COVERS_DEEP_DISCHARGE not in ev.tests_covered:
        found.append(f"{deep} deep discharge(s)")
    hot = ev.minutes_hot or 0
    if hot > p["max_minutes_hot"] and COVERS_OVER_TEMPERATURE not in ev.tests_covered:
        found.append(f"{hot} min above the maximum temperature")
    return ", ".join(found) if found else None


def _resistance_outlier(ev: Evidence, p: dict[str, Any]) -> str | None:
    z = ev.resistance_z
    if z is None or ev.design_cells < p["min_design_cells"] or z <= p["max_robust_z"]:
        return None
    growth = "?" if ev.resistance_growth is None else f"{ev.resistance_growth:.2f}x"
    return f"growth {growth}, robust z = {z:.1f} among {ev.design_cells} cells"


def _self_discharge(ev: Evidence, p: dict[str, Any]) -> str | None:
    v = ev.self_discharge_mv_day
    if v is None:
        return None
    if v > p["max_mv_per_day"]:
        return f"{v:.2f} mV/day > {p['max_mv_per_day']:.2f} mV/day"
    z, n = ev.self_discharge_z, ev.self_discharge_cells
    if z is not None and n >= p["min_design_cells"] and z > p["max_robust_z"]:
        return f"{v:.2f} mV/day, robust z = {z:.1f} among {n} cells"
    return None


_CONDITIONS: dict[str, Callable[[Evidence, dict[str, Any]], str | None]] = {
    "unverified": _unverified,
    "registry-alert": _registry_alert,
    "safety-event": _safety_event,
    "overstated-claim": _overstated,
    "no-test": _no_test,
    "unlike-reference": _unlike_reference,
    "abuse-history": _abuse,
    "resistance-outlier": _resistance_outlier,
    "self-discharge-outlier": _self_discharge,
}


def grade(ev: Evidence, policy: GradingPolicy) -> GradeResult:
    """Gates first (the first that holds decides; any later one that holds is listed in
    `also`), then the best grade met with confidence."""
    ref = policy.ref()
    for n, gate in enumerate(policy.gates):
        detail = _CONDITIONS[gate.when](ev, gate.params)
        if detail is not None:
            also = []
            for later in policy.gates[n + 1 :]:
                more = _CONDITIONS[later.when](ev, later.params)
                if more is not None:
                    also.append(f"{later.rule.id}: {more}")
            return GradeResult(
                gate.outcome, _GATE_OUTCOMES[gate.outcome], (gate.rule.id,),
                (f"{gate.rule.reason} ({detail})",), None, ref, tuple(also),
            )  # fmt: skip
    soh, sigma = ev.soh, ev.soh_sigma
    if soh is None or sigma is None:  # only when the policy has no no-test gate
        raise InputError(f"{ev.cell_id}: no state of health to grade on")
    rules: list[str] = []
    reasons: list[str] = []
    best = 0
    for cap in policy.caps:
        threshold = ev.exhaustion_threshold
        if cap.when == "exhausted" and threshold is not None and soh < threshold:
            best = max(best, GRADE_ORDER.index(cap.max_grade))
            rules.append(cap.rule.id)
            reasons.append(f"{cap.rule.reason} ({_pct(soh)} < {_pct(threshold)})")
    for rule in policy.grades:
        if GRADE_ORDER.index(rule.grade) < best:
            continue
        if rule.min_soh is not None and soh < rule.min_soh:
            continue
        limit = rule.max_resistance_growth
        if limit is not None and (ev.resistance_growth is None or ev.resistance_growth > limit):
            if ev.resistance_growth is None and rule.grade != GRADE_ORDER[-1]:
                rules.append(rule.rule.id)
                reasons.append(f"grade {rule.grade} needs a resistance growth, none measured")
            continue
        if rule.min_soh is not None:
            p = p_at_least(soh, sigma, rule.min_soh)
            if p < policy.min_probability:
                rules.append(policy.confidence.id)
                reasons.append(
                    f"{policy.confidence.reason}: P(SoH >= {_pct(rule.min_soh)}) = {p:.2f} < "
                    f"{policy.min_probability:.2f} for grade {rule.grade} "
                    f"(SoH {_pct(soh)} +/- {_pct(sigma)}): next grade down"
                )
                continue
        rules.append(rule.rule.id)
        detail = f"SoH {_pct(soh)} +/- {_pct(sigma)}"
        if ev.resistance_growth is not None:
            detail += f", resistance {ev.resistance_growth:.2f}x initial"
        reasons.append(f"{rule.rule.reason} ({detail})")
        group = None
        if rule.grade != GRADE_ORDER[-1]:
            rules.append(policy.regroup.id)
            reasons.append(f"{policy.regroup.reason}: {ev.design or '?'}")
            group = f"{ev.design or '?'}/{rule.grade}"
        return GradeResult(rule.grade, rule.outcome, tuple(rules), tuple(reasons), group, ref)
    raise InputError(f"{ev.cell_id}: the policy's grades cover no SoH {_pct(soh)}")
