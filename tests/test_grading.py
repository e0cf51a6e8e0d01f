"""The grading policy (TOML loader and its validation) and the pure grading function."""

from __future__ import annotations

import dataclasses
import hashlib
import math
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from passport.errors import InputError
from passport.grading import Evidence, GradingPolicy, grade, p_at_least

DEFAULT_TEXT = (
    resources.files("passport.grading").joinpath("default.toml").read_bytes().decode("utf-8")
)


def edit(old: str, new: str, count: int = 1) -> bytes:
    """The default policy's text with `old` replaced (it must occur)."""
    assert DEFAULT_TEXT.count(old) >= count, old
    return DEFAULT_TEXT.replace(old, new, count).encode("utf-8")


def without(header: str) -> bytes:
    """The default policy with the table that starts at `header` (up to the next blank line)
    removed."""
    start = DEFAULT_TEXT.index(header)
    end = DEFAULT_TEXT.find("\n\n", start)
    end = len(DEFAULT_TEXT) if end < 0 else end
    return (DEFAULT_TEXT[:start] + DEFAULT_TEXT[end:]).encode("utf-8")


def swap_grades_a_b() -> bytes:
    a_start = DEFAULT_TEXT.index('[[grade]]\nid = "grade.a-remanufacture"')
    b_start = DEFAULT_TEXT.index('[[grade]]\nid = "grade.b-ev-reuse"')
    c_start = DEFAULT_TEXT.index('[[grade]]\nid = "grade.c-stationary"')
    a, b = DEFAULT_TEXT[a_start:b_start], DEFAULT_TEXT[b_start:c_start]
    return (DEFAULT_TEXT[:a_start] + b + a + DEFAULT_TEXT[c_start:]).encode("utf-8")


# --------------------------------------------------------------------------------------------
# The policy file


def test_default_policy_loads_and_names_its_bytes() -> None:
    policy = GradingPolicy.default()
    raw = resources.files("passport.grading").joinpath("default.toml").read_bytes()
    assert policy.sha256 == hashlib.sha256(raw).hexdigest()
    assert policy.ref() == {"id": "battery-passport/default", "version": 1, "sha256": policy.sha256}
    assert [g.when for g in policy.gates][:2] == ["unverified", "registry-alert"]
    assert [g.grade for g in policy.grades] == ["A", "B", "C", "D"]
    assert GradingPolicy.load(None) == policy


def test_policy_loaded_from_a_file_hashes_that_file(tmp_path: Path) -> None:
    data = edit("min_soh = 0.90", "min_soh = 0.95")
    path = tmp_path / "strict.toml"
    path.write_bytes(data)
    policy = GradingPolicy.load(path)
    assert policy.sha256 == hashlib.sha256(data).hexdigest()
    assert policy.sha256 != GradingPolicy.default().sha256
    assert policy.source == str(path)
    assert policy.grades[0].min_soh == 0.95


INVALID_POLICIES: list[tuple[str, bytes, str]] = [
    ("wrong-version", edit("version = 1", "version = 2"), "version must be 1"),
    ("version-true", edit("version = 1", "version = true"), "version must be 1"),
    ("version-float", edit("version = 1", "version = 1.0"), "version must be 1"),
    ("missing-id", edit('id = "battery-passport/default"\n', ""), "id must be"),
    (
        "duplicate-rule-id",
        edit('id = "gate.safety-event"', 'id = "gate.unverified"'),
        "used twice",
    ),
    ("unknown-gate-condition", edit('when = "no-test"', 'when = "bad-vibes"'), "unknown condition"),
    ("cap-condition-as-gate", edit('when = "no-test"', 'when = "exhausted"'), "unknown condition"),
    ("unknown-outcome", edit('outcome = "QUARANTINE"', 'outcome = "SHRUG"'), "outcome must be"),
    ("unknown-event", edit('"fire_exposure"]', '"fire_exposure", "alien"]'), "unknown event"),
    ("event-not-a-string", edit('"fire_exposure"]', '"fire_exposure", ["x"]]'), "event"),
    (
        "events-not-a-list",
        edit(
            'events = ["thermal_event", "accident", "external_short", "fire_exposure"]',
            'events = "thermal_event"',
        ),
        "events must be",
    ),
    ("negative-count", edit("max_minutes_hot = 60", "max_minutes_hot = -1"), "must be >= 0"),
    ("negative-number", edit("max_mv_per_day = 5.0", "max_mv_per_day = -5.0"), ">= 0"),
    ("negative-min-soh", edit("min_soh = 0.60", "min_soh = -0.6"), ">= 0"),
    ("nan-limit", edit("max_robust_z = 3.5", "max_robust_z = nan"), "finite"),
    ("float-count", edit("min_design_cells = 8", "min_design_cells = 8.5"), "must be a int"),
    ("bool-count", edit("max_deep_discharges = 0", "max_deep_discharges = true"), "must be"),
    ("missing-gate-parameter", edit("max_minutes_hot = 60\n", ""), "max_minutes_hot"),
    (
        "last-grade-with-min-soh",
        edit('grade = "D"\noutcome = "recycle"', 'grade = "D"\noutcome = "recycle"\nmin_soh = 0.1'),
        "last [[grade]] must have no conditions",
    ),
    (
        "last-grade-with-zero-growth-limit",
        edit(
            'grade = "D"\noutcome = "recycle"',
            'grade = "D"\noutcome = "recycle"\nmax_resistance_growth = 0.0',
        ),
        "last [[grade]] must have no conditions",
    ),
    ("grades-out-of-order", swap_grades_a_b(), "best first"),
    ("grade-twice", edit('grade = "B"', 'grade = "A"'), "best first"),
    ("unknown-grade", edit('grade = "B"', 'grade = "B+"'), "grade must be one of"),
    ("unknown-cap-condition", edit('when = "exhausted"', 'when = "old"'), "unknown cap"),
    ("cap-to-unknown-grade", edit('max_grade = "C"', 'max_grade = "Z"'), "max_grade"),
    ("missing-uncertainty", without("[uncertainty]"), "missing [uncertainty]"),
    ("missing-regroup", without("[regroup]"), "missing [regroup]"),
    ("min-probability-1", edit("min_probability = 0.9", "min_probability = 1.0"), "[0.5, 1)"),
    ("min-probability-low", edit("min_probability = 0.9", "min_probability = 0.4"), "[0.5, 1)"),
    (
        "gate-not-a-table",
        DEFAULT_TEXT.replace("[[gate]]", "[[gatex]]")
        .replace("version = 1", "version = 1\ngate = 1")
        .encode(),
        "array of tables",
    ),
    (
        "empty-citation",
        edit('citation = "UL 1974 (cell screening: self-discharge)"', 'citation = ""'),
        "citation must be",
    ),
    ("not-toml", b"id = [unclosed\n", "not a TOML policy"),
    ("not-utf8", b'id = "\xff\xfe"\nversion = 1\n', "not a TOML policy"),
    ("empty-file", b"", "version must be 1"),
]


@pytest.mark.parametrize(
    ("data", "message"),
    [pytest.param(d, m, id=name) for name, d, m in INVALID_POLICIES],
)
def test_invalid_policy_is_refused_naming_the_file(
    tmp_path: Path, data: bytes, message: str
) -> None:
    path = tmp_path / "policy.toml"
    path.write_bytes(data)
    with pytest.raises(InputError) as info:
        GradingPolicy.load(path)
    assert info.value.source == str(path)
    assert message in info.value.reason
    with pytest.raises(InputError) as info:
        GradingPolicy.from_bytes(data, source="inline policy")
    assert info.value.source == "inline policy"


def test_missing_policy_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        GradingPolicy.load(tmp_path / "nope.toml")
    assert "nope.toml" in str(info.value)


# --------------------------------------------------------------------------------------------
# Decisions

DEFAULT = GradingPolicy.default()
GOOD = Evidence(
    cell_id="cell-1",
    design="ACME-21700-50E",
    verified=True,
    has_test=True,
    measured_soh=0.95,
    measured_sigma=0.005,
    soh=0.95,
    soh_sigma=0.005,
    resistance_growth=1.1,
    resistance_z=0.2,
    design_cells=10,
    exhaustion_threshold=0.6,
    deep_discharges=0,
    minutes_hot=10,
)
A_RULES = ("grade.a-remanufacture", "regroup.same-model")


def ev(**changes: Any) -> Evidence:
    return dataclasses.replace(GOOD, **changes)


# (id, evidence, grade, rules, numbers the reasons must quote)
DECISIONS: list[tuple[str, Evidence, str, tuple[str, ...], tuple[str, ...]]] = [
    ("clean-a", GOOD, "A", A_RULES, ("95.0 %", "0.5 %", "1.10x")),
    (
        "unverified",
        ev(verified=False, verify_rules=("cose.signature", "chain.prev")),
        "UNVERIFIED",
        ("gate.unverified",),
        ("cose.signature, chain.prev",),
    ),
    (
        "unverified-wins-over-alert",
        ev(verified=False, alerts=("fork: two heads",), events=("thermal_event",)),
        "UNVERIFIED",
        ("gate.unverified",),
        ("failed",),
    ),
    (
        "alert",
        ev(alerts=("fork: two heads at seq 4",)),
        "QUARANTINE",
        ("gate.fork-or-clone",),
        ("two heads at seq 4",),
    ),
    (
        "alert-wins-over-thermal-event",
        ev(alerts=("clone: on 2 tags",), events=("thermal_event",)),
        "QUARANTINE",
        ("gate.fork-or-clone",),
        ("on 2 tags",),
    ),
    (
        "thermal-event",
        ev(events=("thermal_event",)),
        "QUARANTINE",
        ("gate.safety-event",),
        ("thermal_event",),
    ),
    (
        "accident",
        ev(events=("water_ingress", "accident")),
        "QUARANTINE",
        ("gate.safety-event",),
        ("reported: accident)",),
    ),
    ("unlisted-event-grades", ev(events=("water_ingress", "overcurrent")), "A", A_RULES, ()),
    (
        "overstated-claim",
        ev(claim_flagged=True, claimed_soh=0.97, measured_soh=0.8, claim_z=4.25),
        "QUARANTINE",
        ("gate.overstated-claim",),
        ("claimed 97.0 %", "measured 80.0 %", "z = 4.2"),
    ),
    (
        "no-test",
        ev(has_test=False, soh=None, soh_sigma=None),
        "TEST-REQUIRED",
        ("gate.no-test",),
        ("no pulse test row",),
    ),
    (
        "estimator-error",
        ev(estimate_error="design-mismatch", soh=None, soh_sigma=None),
        "TEST-REQUIRED",
        ("gate.no-test",),
        ("design-mismatch",),
    ),
    ("no-soh-without-error", ev(soh=None), "TEST-REQUIRED", ("gate.no-test",), ("no value",)),
    (
        "unlike-reference",
        ev(unlike_reference=True, measured_soh=0.71, measured_sigma=0.124),
        "TEST-REQUIRED",
        ("gate.unlike-reference",),
        ("measured 71.0 % +/- 12.4 %", "test it again"),
    ),
    (
        "unlike-reference-sigma-past-all-meaning",  # a sigma of 17 (1,700 points) says "unknown"
        ev(unlike_reference=True, measured_soh=0.686, measured_sigma=16.95),
        "TEST-REQUIRED",
        ("gate.unlike-reference",),
        ("measured 68.6 % +/- more than 100 %",),
    ),
    (
        # the flagged claim decides (quarantine first); the far test is listed in `also`
        "unlike-reference-overstated-claim",
        ev(
            unlike_reference=True,
            claim_flagged=True,
            claimed_soh=0.97,
            measured_soh=0.5,
            measured_sigma=0.12,
            claim_z=3.6,
        ),
        "QUARANTINE",
        ("gate.overstated-claim",),
        ("z = 3.6",),
    ),
    (
        # an outlier's resistance is measured however unusual its pulse: recycled, not retested
        "unlike-reference-resistance-outlier",
        ev(unlike_reference=True, resistance_growth=2.6, resistance_z=6.0),
        "D",
        ("gate.resistance-outlier",),
        ("2.60x",),
    ),
    (
        "unlike-reference-without-soh",  # no number: the no-test gate says why
        ev(unlike_reference=True, has_test=False, measured_soh=None, soh=None, soh_sigma=None),
        "TEST-REQUIRED",
        ("gate.no-test",),
        ("no pulse test row",),
    ),
    (
        "deep-discharges",
        ev(deep_discharges=2),
        "TEST-REQUIRED",
        ("gate.abuse-history",),
        ("2 deep discharge(s)",),
    ),
    (
        "deep-discharges-covered",
        ev(deep_discharges=2, tests_covered=("deep-discharge",)),
        "A",
        A_RULES,
        (),
    ),
    (
        "deep-discharges-covered-other-risk",
        ev(deep_discharges=2, tests_covered=("over-temperature",)),
        "TEST-REQUIRED",
        ("gate.abuse-history",),
        ("2 deep discharge(s)",),
    ),
    ("minutes-hot-at-limit", ev(minutes_hot=60), "A", A_RULES, ()),
    (
        "minutes-hot-over-limit",
        ev(minutes_hot=61),
        "TEST-REQUIRED",
        ("gate.abuse-history",),
        ("61 min",),
    ),
    (
        "minutes-hot-covered",
        ev(minutes_hot=500, tests_covered=("over-temperature",)),
        "A",
        A_RULES,
        (),
    ),
    (
        "resistance-outlier",
        ev(resistance_growth=1.9, resistance_z=4.04),
        "D",
        ("gate.resistance-outlier",),
        ("1.90x", "z = 4.0", "10 cells"),
    ),
    (
        "resistance-outlier-too-few-cells",
        ev(resistance_growth=1.2, resistance_z=9.0, design_cells=7),
        "A",
        A_RULES,
        (),
    ),
    ("resistance-z-at-limit", ev(resistance_z=3.5), "A", A_RULES, ()),
    (
        "self-discharge-over-absolute-limit",
        ev(self_discharge_mv_day=6.0, design_cells=1),
        "D",
        ("gate.self-discharge-outlier",),
        ("6.00 mV/day > 5.00 mV/day",),
    ),
    (
        "self-discharge-outlier",
        ev(self_discharge_mv_day=1.5, self_discharge_z=5.0, self_discharge_cells=9),
        "D",
        ("gate.self-discharge-outlier",),
        ("1.50 mV/day", "z = 5.0", "among 9 cells"),
    ),
    (
        "self-discharge-outlier-too-few-cells",
        ev(
            self_discharge_mv_day=1.5, self_discharge_z=5.0, design_cells=10, self_discharge_cells=3
        ),
        "A",
        A_RULES,
        (),
    ),
    ("a-certain", ev(soh=0.95, soh_sigma=0.005), "A", A_RULES, ("95.0 %",)),
    (
        "a-uncertain-gives-b",
        ev(soh=0.905, soh_sigma=0.02),
        "B",
        ("uncertainty.confidence", "grade.b-ev-reuse", "regroup.same-model"),
        ("P(SoH >= 90.0 %) = 0.60 < 0.90", "90.5 %", "2.0 %"),
    ),
    (
        "b-needs-low-growth",
        ev(soh=0.85, soh_sigma=0.005, resistance_growth=1.6),
        "C",
        ("grade.c-stationary", "regroup.same-model"),
        ("85.0 %", "1.60x"),
    ),
    (
        "b-at-growth-limit",
        ev(soh=0.85, soh_sigma=0.005, resistance_growth=1.5),
        "B",
        ("grade.b-ev-reuse", "regroup.same-model"),
        ("1.50x",),
    ),
    (
        "missing-growth-is-not-b",
        ev(soh=0.85, soh_sigma=0.005, resistance_growth=None, resistance_z=None),
        "D",
        ("grade.b-ev-reuse", "grade.c-stationary", "grade.d-recycle"),
        ("grade B needs a resistance growth",),
    ),
    (
        "exhausted-capped-to-c",
        ev(soh=0.85, soh_sigma=0.005, resistance_growth=1.2, exhaustion_threshold=0.88),
        "C",
        ("cap.exhausted", "grade.c-stationary", "regroup.same-model"),
        ("85.0 % < 88.0 %",),
    ),
    (
        "exhausted-a-capped-to-c",
        ev(exhaustion_threshold=0.96),
        "C",
        ("cap.exhausted", "grade.c-stationary", "regroup.same-model"),
        ("95.0 % < 96.0 %",),
    ),
    ("at-threshold-not-exhausted", ev(exhaustion_threshold=0.95), "A", A_RULES, ()),
    (
        "soh-0.5",
        ev(soh=0.5, soh_sigma=0.01, exhaustion_threshold=0.4),
        "D",
        ("grade.d-recycle",),
        ("50.0 %",),
    ),
    (
        "soh-0.5-exhausted",
        ev(soh=0.5, soh_sigma=0.01),
        "D",
        ("cap.exhausted", "grade.d-recycle"),
        ("50.0 % < 60.0 %",),
    ),
    (
        "c-uncertain-gives-d",
        ev(soh=0.62, soh_sigma=0.05),
        "D",
        ("uncertainty.confidence", "grade.d-recycle"),
        ("for grade C",),
    ),
]

DECISIONS_BY_ID = {name: e for name, e, _, _, _ in DECISIONS}


@pytest.mark.parametrize(
    ("evidence", "expected", "rules", "numbers"),
    [pytest.param(e, g, r, n, id=name) for name, e, g, r, n in DECISIONS],
)
def test_grading_decision(
    evidence: Evidence, expected: str, rules: tuple[str, ...], numbers: tuple[str, ...]
) -> None:
    result = grade(evidence, DEFAULT)
    assert result.grade == expected
    assert result.rules == rules
    assert len(result.reasons) == len(result.rules)
    text = " ".join(result.reasons)
    for number in numbers:
        assert number in text
    assert result.policy == DEFAULT.ref()
    if expected in ("A", "B", "C"):
        assert result.group == f"{evidence.design}/{expected}"
        assert result.reasons[-1].endswith(str(evidence.design))
    else:
        assert result.group is None
    outcome = {
        "A": "remanufacture",
        "B": "ev-reuse",
        "C": "stationary",
        "D": "recycle",
        "QUARANTINE": "quarantine",
        "UNVERIFIED": "unverified",
        "TEST-REQUIRED": "test-required",
    }
    assert result.outcome == outcome[expected]
    assert result.to_dict()["rules"] == list(rules)


def test_a_later_gate_that_holds_is_listed_in_also() -> None:
    result = grade(DECISIONS_BY_ID["unlike-reference-overstated-claim"], DEFAULT)
    assert [a.split(":")[0] for a in result.also] == ["gate.unlike-reference"]
    assert "measured 50.0 % +/- 12.0 %" in result.also[0]


def test_group_without_design() -> None:
    assert grade(ev(design=None), DEFAULT).group == "?/A"


def test_policy_without_no_test_gate_refuses_evidence_without_soh() -> None:
    data = without('[[gate]]\nid = "gate.no-test"')
    policy = GradingPolicy.from_bytes(data, source="no-test-less")
    with pytest.raises(InputError, match="no state of health"):
        grade(ev(has_test=False, soh=None, soh_sigma=None), policy)


def test_custom_policy_changes_decision_and_policy_reference() -> None:
    strict = GradingPolicy.from_bytes(edit("min_soh = 0.90", "min_soh = 0.96"), source="strict")
    default = grade(GOOD, DEFAULT)
    custom = grade(GOOD, strict)
    assert default.grade == "A"
    assert custom.grade == "B"
    assert custom.rules == ("grade.b-ev-reuse", "regroup.same-model")
    assert custom.policy["sha256"] == strict.sha256 != default.policy["sha256"]


def test_custom_gate_outcome_and_event_list() -> None:
    data = edit('"fire_exposure"]', '"fire_exposure", "water_ingress"]')
    policy = GradingPolicy.from_bytes(data, source="wet")
    assert grade(ev(events=("water_ingress",)), policy).grade == "QUARANTINE"
    assert grade(ev(events=("water_ingress",)), DEFAULT).grade == "A"


# --------------------------------------------------------------------------------------------
# p_at_least


@pytest.mark.parametrize(
    ("soh", "sigma", "threshold", "expected"),
    [
        pytest.param(0.92, 0.01, 0.90, 0.9772498680518208, id="two-sigma-above"),
        pytest.param(0.88, 0.01, 0.90, 0.022750131948179195, id="two-sigma-below"),
        pytest.param(0.90, 0.05, 0.90, 0.5, id="at-threshold"),
        pytest.param(0.905, 0.02, 0.90, 0.5987063256829237, id="quarter-sigma"),
        pytest.param(0.90, 0.0, 0.90, 1.0, id="sigma-0-at"),
        pytest.param(0.8999, 0.0, 0.90, 0.0, id="sigma-0-below"),
        pytest.param(0.95, -0.01, 0.90, 1.0, id="sigma-negative"),
        pytest.param(0.85, math.inf, 0.90, 0.0, id="sigma-infinite"),
        pytest.param(0.85, math.nan, 0.90, 0.0, id="sigma-nan"),
    ],
)
def test_p_at_least(soh: float, sigma: float, threshold: float, expected: float) -> None:
    assert p_at_least(soh, sigma, threshold) == pytest.approx(expected, abs=1e-12)


# --------------------------------------------------------------------------------------------
# Evidence as data

_text = st.text(max_size=12)
_opt_float = st.none() | st.floats(0, 5, allow_nan=False)
_opt_int = st.none() | st.integers(0, 10_000)
_texts = st.lists(_text, max_size=3).map(tuple)

EVIDENCE = st.builds(
    Evidence,
    cell_id=_text,
    design=st.none() | _text,
    verified=st.booleans(),
    verify_rules=_texts,
    alerts=_texts,
    events=_texts,
    event_records=_texts,
    deep_discharges=_opt_int,
    minutes_hot=_opt_int,
    tests_covered=_texts,
    has_test=st.booleans(),
    estimate_error=_text,
    unlike_reference=st.booleans(),
    measured_soh=_opt_float,
    measured_sigma=_opt_float,
    claimed_soh=_opt_float,
    claimed_sigma=_opt_float,
    claim_record=st.none() | _text,
    claim_z=st.none() | st.floats(-50, 50, allow_nan=False),
    claim_flagged=st.booleans(),
    soh=_opt_float,
    soh_sigma=_opt_float,
    resistance_growth=_opt_float,
    resistance_z=st.none() | st.floats(-50, 50, allow_nan=False),
    self_discharge_mv_day=_opt_float,
    self_discharge_z=st.none() | st.floats(-50, 50, allow_nan=False),
    design_cells=st.integers(0, 1000),
    self_discharge_cells=st.integers(0, 1000),
    exhaustion_threshold=_opt_float,
    birth_sha256=st.none() | _text,
    passport_id=st.none() | _text,
)


@given(EVIDENCE)
def test_evidence_round_trips_through_a_dict(evidence: Evidence) -> None:
    data = evidence.to_dict()
    assert all(not isinstance(v, tuple) for v in data.values())
    assert Evidence.from_dict(data) == evidence


def test_evidence_from_dict_fills_defaults() -> None:
    assert Evidence.from_dict({"cell_id": "x"}) == Evidence(cell_id="x")
    assert Evidence.from_dict({"cell_id": "x", "soh": 1}).soh == 1.0


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param({"cell_id": "x", "grade": "A"}, "unknown field(s) grade", id="unknown-field"),
        pytest.param({"verified": True}, "cell_id", id="missing-cell-id"),
        pytest.param({"cell_id": None}, "cell_id", id="cell-id-null"),
        pytest.param({"cell_id": 7}, "cell_id", id="cell-id-number"),
        pytest.param({"cell_id": "x", "verified": "yes"}, "verified", id="bool-as-string"),
        pytest.param({"cell_id": "x", "verified": 1}, "verified", id="bool-as-number"),
        pytest.param(
            {"cell_id": "x", "unlike_reference": "no"}, "unlike_reference", id="flag-as-string"
        ),
        pytest.param({"cell_id": "x", "alerts": "fork"}, "alerts", id="list-as-string"),
        pytest.param({"cell_id": "x", "alerts": [1]}, "alerts", id="list-of-numbers"),
        pytest.param({"cell_id": "x", "soh": "0.9"}, "soh", id="number-as-string"),
        pytest.param({"cell_id": "x", "soh": True}, "soh", id="number-as-bool"),
        pytest.param({"cell_id": "x", "soh": [0.9]}, "soh", id="number-as-list"),
        pytest.param({"cell_id": "x", "soh": math.nan}, "soh", id="number-nan"),
        pytest.param({"cell_id": "x", "resistance_z": math.inf}, "resistance_z", id="number-inf"),
        pytest.param({"cell_id": "x", "design_cells": None}, "design_cells", id="count-null"),
        pytest.param({"cell_id": "x", "design_cells": 2.5}, "design_cells", id="count-float"),
        pytest.param(
            {"cell_id": "x", "deep_discharges": "3"}, "deep_discharges", id="count-as-string"
        ),
        pytest.param({"cell_id": "x", "design": 3}, "design", id="text-as-number"),
        pytest.param({"cell_id": "x", "estimate_error": None}, "estimate_error", id="text-null"),
    ],
)
def test_evidence_from_dict_refuses(data: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError) as info:
        Evidence.from_dict(data)
    assert message in info.value.reason
