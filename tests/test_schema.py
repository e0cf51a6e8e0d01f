"""Every record we encode validates against schemas/passport.cddl (pycddl).

cddl-rs (behind pycddl 0.6) does not advance past a `bstr .cbor` item inside an array, so the
COSE envelope is checked with the `.cbor` items as plain byte strings and the protected header
and payload are then checked against their named rules of the same CDDL file.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import cbor2
import pycddl
import pytest
from factories import GS1_ID, actor, birth_body, cell_key, sign_birth
from hypothesis import given, settings
from hypothesis import strategies as st

from passport.records import (
    CapacityTest,
    Checkpoint,
    Chemistry,
    Entry,
    Event,
    Kind,
    SignedRecord,
    SohMethod,
    Status,
    Values,
)

CDDL = (Path(__file__).resolve().parent.parent / "schemas" / "passport.cddl").read_text()
ENVELOPE = "root = #6.18([bstr, {}, bstr, signature])\n"


def schema(rule: str) -> pycddl.Schema:
    return pycddl.Schema(f"root = {rule}\n{CDDL}")


RULES = {
    rule: schema(rule)
    for rule in (
        "birth-protected",
        "birth-payload",
        "cell-protected",
        "actor-protected",
        "entry-payload",
        "checkpoint-payload",
    )
}
ENVELOPE_SCHEMA = pycddl.Schema(ENVELOPE + CDDL)

OEM, _ = actor("ACME OEM")
CELL = cell_key(1)
X5T = (-15, bytes(range(8)))


def birth(battery_id: str = GS1_ID) -> SignedRecord:
    """A birth with a sub-zero test temperature: deci-celsius must take negative values."""
    cold = CapacityTest(temperature_dc=-200, c_rate_centi=20)
    return sign_birth(
        birth_body(CELL, battery_id=battery_id, chemistry=Chemistry.LFP, capacity_test=cold)
    )


def check(record: SignedRecord) -> None:
    """Validate a record's envelope, protected header and payload against the CDDL."""
    ENVELOPE_SCHEMA.validate_cbor(record.raw)
    kind = record.kind
    if kind is Kind.BIRTH:
        protected, payload = "birth-protected", "birth-payload"
    elif kind is Kind.CHECKPOINT:
        protected, payload = "cell-protected", "checkpoint-payload"
    else:
        protected = "cell-protected" if record.x5t is None else "actor-protected"
        payload = "entry-payload"
    RULES[protected].validate_cbor(record.protected_bytes)
    RULES[payload].validate_cbor(record.payload_bytes)


@pytest.mark.parametrize("battery_id", [GS1_ID, "LIACME0000123456"])
def test_birth_validates(battery_id: str) -> None:
    check(birth(battery_id))


ALL_VALUES = Values(
    fec_deci=12345,
    ah_deci=987654,
    wh=45000,
    soh_capacity_cpct=9712,
    soh_power_cpct=9500,
    resistance_uohm=15100,
    soh_method=SohMethod.PULSE_TEST,
    soh_sigma_cpct=80,
    minutes_hot=12,
    minutes_cold=3,
    minutes_charging_extreme=1,
    deep_discharges=2,
    overcharges=1,
    events=(Event.THERMAL_EVENT, Event.ACCIDENT),
    status=Status.REPURPOSED,
    parents=(uuid.UUID(int=1), uuid.UUID(int=2)),
)


@pytest.mark.parametrize("kind", [k for k in Kind if k.is_entry], ids=lambda k: k.name.lower())
@pytest.mark.parametrize("actor", [False, True], ids=["cell", "actor"])
def test_entries_validate(kind: Kind, actor: bool) -> None:
    entry = Entry(kind, 3, bytes(32), 1_800_000_000, ALL_VALUES)
    record = SignedRecord.sign(entry, OEM, x5t=X5T) if actor else SignedRecord.sign(entry, CELL)
    check(record)


def test_checkpoint_validates() -> None:
    check(SignedRecord.sign(Checkpoint(9, bytes(32), 1_800_000_000, bytes(32), ALL_VALUES), CELL))


values_strategy = st.fixed_dictionaries(
    {},
    optional={
        "fec_deci": st.integers(0, 2**32 - 1),
        "ah_deci": st.integers(0, 2**32 - 1),
        "soh_capacity_cpct": st.integers(0, 65535),
        "soh_method": st.sampled_from(SohMethod),
        "events": st.sets(st.sampled_from(Event), min_size=1).map(lambda s: tuple(sorted(s))),
        "overcharges": st.integers(0, 2**32 - 1),
        "status": st.sampled_from(Status),
    },
).map(lambda kw: Values(**kw))


@settings(max_examples=60)
@given(values=values_strategy, seq=st.integers(1, 2**32 - 1), time=st.integers(0, 2**40))
def test_any_telemetry_entry_validates(values: Values, seq: int, time: int) -> None:
    check(SignedRecord.sign(Entry(Kind.TELEMETRY, seq, bytes(32), time, values), CELL))


# The schema is not vacuous: payloads our decoder refuses are refused by the CDDL too.
BASE_ENTRY = {0: 1, 1: 3, 2: 1, 3: bytes(32), 4: 5}
INVALID_PAYLOADS = {
    "unknown-key": {**BASE_ENTRY, 99: 1},
    "missing-prev": {k: v for k, v in BASE_ENTRY.items() if k != 3},
    "version-2": {**BASE_ENTRY, 0: 2},
    "kind-99": {**BASE_ENTRY, 1: 99},
    "soh-over-u16": {**BASE_ENTRY, 8: 70000},
    "prev-31-bytes": {**BASE_ENTRY, 3: bytes(31)},
    "negative-counter": {**BASE_ENTRY, 5: -1},
    "float-counter": {**BASE_ENTRY, 5: 1.5},
    "unknown-event": {**BASE_ENTRY, 18: [9]},
    "status-5": {**BASE_ENTRY, 19: 5},
    "parent-15-bytes": {**BASE_ENTRY, 19: 1, 20: [bytes(15)]},
}


@pytest.mark.parametrize("payload", INVALID_PAYLOADS.values(), ids=INVALID_PAYLOADS.keys())
def test_cddl_rejects_invalid_entry_payloads(payload: dict[int, object]) -> None:
    with pytest.raises(pycddl.ValidationError):
        RULES["entry-payload"].validate_cbor(cbor2.dumps(payload))


def test_cddl_rejects_wrong_envelopes() -> None:
    good = birth().raw
    untagged = cbor2.dumps(cbor2.loads(good).value)
    with pytest.raises(pycddl.ValidationError):
        ENVELOPE_SCHEMA.validate_cbor(untagged)
    outer = cbor2.loads(good).value
    short_sig = cbor2.dumps(cbor2.CBORTag(18, [outer[0], {}, outer[2], outer[3][:63]]))
    with pytest.raises(pycddl.ValidationError):
        ENVELOPE_SCHEMA.validate_cbor(short_sig)
    with pytest.raises(pycddl.ValidationError):
        RULES["cell-protected"].validate_cbor(cbor2.dumps({1: -9}))
