"""The grading policy: which gates, grades and caps apply, each with an id, a citation and a
reason. Data, not code paths: the conditions are a fixed vocabulary (`CONDITIONS`), the numbers
and the order come from the TOML file (the annotated default is `default.toml`)."""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from passport._fileio import read_bytes
from passport._toml import load_toml
from passport.errors import InputError
from passport.records import Event

POLICY_VERSION = 1
DEFAULT_POLICY_FILE = "default.toml"

#: gate/cap condition -> what it means (the code in `grade.py` evaluates these)
CONDITIONS: dict[str, str] = {
    "unverified": "the passport did not verify",
    "registry-alert": "a fork or clone alert for the passport (registry or this batch)",
    "safety-event": "the history reports one of the listed negative events",
    "overstated-claim": "the SoH check flagged the passport's claim as overstated",
    "no-test": "no usable pulse test (missing, or the estimator returned an error)",
    "unlike-reference": "every row of the pulse test is unlike the SoH model's reference cells "
    "(noisy voltages, or a cell unlike those it was trained on)",
    "abuse-history": "deep discharges or minutes above the maximum temperature beyond the "
    "limits, and the intake test does not cover them",
    "resistance-outlier": "robust z of resistance growth within the design above the limit",
    "self-discharge-outlier": "self-discharge an outlier within the design or above the limit",
    "exhausted": "SoH below the manufacturer's exhaustion threshold",
}
GATE_OUTCOMES = ("UNVERIFIED", "QUARANTINE", "TEST-REQUIRED", "D")
GRADE_ORDER = ("A", "B", "C", "D")
_EVENT_NAMES = {e.name.lower(): e for e in Event}
_PARAMS: dict[str, dict[str, type]] = {
    "safety-event": {"events": list},
    "abuse-history": {"max_deep_discharges": int, "max_minutes_hot": int},
    "resistance-outlier": {"max_robust_z": float, "min_design_cells": int},
    "self-discharge-outlier": {
        "max_robust_z": float, "min_design_cells": int, "max_mv_per_day": float,
    },
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    citation: str
    reason: str


@dataclass(frozen=True, slots=True)
class Gate:
    rule: Rule
    when: str
    outcome: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class GradeRule:
    rule: Rule
    grade: str
    outcome: str
    min_soh: float | None = None
    max_resistance_growth: float | None = None


@dataclass(frozen=True, slots=True)
class Cap:
    rule: Rule
    when: str
    max_grade: str


@dataclass(frozen=True, slots=True)
class GradingPolicy:
    id: str
    version: int
    gates: tuple[Gate, ...]
    grades: tuple[GradeRule, ...]
    caps: tuple[Cap, ...]
    confidence: Rule
    min_probability: float
    regroup: Rule
    sha256: str  # of the file's exact bytes
    source: str
    raw: bytes = field(default=b"", repr=False, compare=False)  # those bytes (saved with a run)

    def ref(self) -> dict[str, Any]:
        """What a result carries so that the policy it was graded under can be found again."""
        return {"id": self.id, "version": self.version, "sha256": self.sha256}

    def gate(self, when: str) -> Gate | None:
        return next((g for g in self.gates if g.when == when), None)

    @classmethod
    def default(cls) -> GradingPolicy:
        data = resources.files("passport.grading").joinpath(DEFAULT_POLICY_FILE).read_bytes()
        return cls.from_bytes(data, source="default grading policy")

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None) -> GradingPolicy:
        if path is None:
            return cls.default()
        return cls.from_bytes(read_bytes(path, limit=1 << 20), source=str(path))

    @classmethod
    def from_bytes(cls, data: bytes, *, source: str) -> GradingPolicy:
        doc = load_toml(data, source=source)
        try:
            return _parse(doc, data, source)
        except InputError as exc:
            raise exc.at(source) from None


def _parse(doc: dict[str, Any], data: bytes, source: str) -> GradingPolicy:
    version = doc.get("version")
    if type(version) is not int or version != POLICY_VERSION:  # not true, not 1.0
        raise InputError(f"version must be {POLICY_VERSION} (found {version!r})")
    ident = _text(doc, "id", "policy")
    seen: set[str] = set()

    def rule(table: dict[str, Any], where: str) -> Rule:
        r = Rule(_text(table, "id", where), _text(table, "citation", where),
                 _text(table, "reason", where))  # fmt: skip
        if r.id in seen:
            raise InputError(f"{where}: rule id {r.id!r} is used twice")
        seen.add(r.id)
        return r

    gates = []
    for i, table in enumerate(_tables(doc, "gate")):
        where = f"gate {i + 1}"
        when = _text(table, "when", where)
        if when not in CONDITIONS or when == "exhausted":
            raise InputError(f"{where}: unknown condition {when!r}")
        outcome = _text(table, "outcome", where)
        if outcome not in GATE_OUTCOMES:
            raise InputError(f"{where}: outcome must be one of {', '.join(GATE_OUTCOMES)}")
        params = {}
        for name, kind in _PARAMS.get(when, {}).items():
            params[name] = _param(table, name, kind, where)
        if when == "safety-event":
            unknown = [e for e in params["events"] if not isinstance(e, str)
                       or e not in _EVENT_NAMES]  # fmt: skip
            if unknown:
                raise InputError(f"{where}: unknown event(s) {unknown}: use {sorted(_EVENT_NAMES)}")
            params["events"] = frozenset(params["events"])
        gates.append(Gate(rule(table, where), when, outcome, params))
    grades = []
    for i, table in enumerate(_tables(doc, "grade")):
        where = f"grade {i + 1}"
        grade = _text(table, "grade", where)
        if grade not in GRADE_ORDER:
            raise InputError(f"{where}: grade must be one of {', '.join(GRADE_ORDER)}")
        grades.append(GradeRule(
            rule(table, where), grade, _text(table, "outcome", where),
            _opt_float(table, "min_soh", where), _opt_float(table, "max_resistance_growth", where),
        ))  # fmt: skip
    if (
        not grades
        or grades[-1].min_soh is not None
        or (grades[-1].max_resistance_growth is not None)
    ):
        raise InputError("the last [[grade]] must have no conditions (everything else gets it)")
    order = [GRADE_ORDER.index(g.grade) for g in grades]
    if order != sorted(set(order)):
        raise InputError("grades must be listed best first, each once")
    caps = []
    for i, table in enumerate(_tables(doc, "cap")):
        where = f"cap {i + 1}"
        when = _text(table, "when", where)
        if when != "exhausted":
            raise InputError(f"{where}: unknown cap condition {when!r} (known: exhausted)")
        max_grade = _text(table, "max_grade", where)
        if max_grade not in GRADE_ORDER:
            raise InputError(f"{where}: max_grade must be one of {', '.join(GRADE_ORDER)}")
        caps.append(Cap(rule(table, where), when, max_grade))
    unc = doc.get("uncertainty")
    if not isinstance(unc, dict):
        raise InputError("missing [uncertainty] table")
    p = _param(unc, "min_probability", float, "[uncertainty]")
    if not 0.5 <= p < 1.0:
        raise InputError("[uncertainty] min_probability must lie in [0.5, 1)")
    regroup = doc.get("regroup")
    if not isinstance(regroup, dict):
        raise InputError("missing [regroup] table")
    return GradingPolicy(
        id=ident,
        version=version,
        gates=tuple(gates),
        grades=tuple(grades),
        caps=tuple(caps),
        confidence=rule(unc, "[uncertainty]"),
        min_probability=p,
        regroup=rule(regroup, "[regroup]"),
        sha256=hashlib.sha256(data).hexdigest(),
        source=source,
        raw=bytes(data),
    )


def _tables(doc: dict[str, Any], name: str) -> list[dict[str, Any]]:
    value = doc.get(name, [])
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise InputError(f"{name} must be an array of tables ([[{name}]])")
    return value


def _text(table: dict[str, Any], key: str, where: str) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{where}: {key} must be a non-empty string")
    return value


def _param(table: dict[str, Any], key: str, kind: type, where: str) -> Any:
    value = table.get(key)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise InputError(f"{where}: {key} must be a {kind.__name__}")
    if isinstance(value, float) and (not math.isfinite(value) or value < 0):
        raise InputError(f"{where}: {key} must be a finite number >= 0")
    if isinstance(value, int) and value < 0:
        raise InputError(f"{where}: {key} must be >= 0")
    return value


def _opt_float(table: dict[str, Any], key: str, where: str) -> float | None:
    return None if key not in table else float(_param(table, key, float, where))
