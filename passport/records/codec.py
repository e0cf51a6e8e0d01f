"""Payload maps <-> record bodies, with the format-level checks of every field.

Keys and units are those of `schemas/passport.cddl`. Decoding is strict: unknown keys, missing
required keys, wrong types and out-of-range values are refused with the key named.
"""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from collections.abc import Callable, Mapping
from enum import IntEnum
from typing import Any

from passport import cbor
from passport.errors import DecodeError, InputError
from passport.records._fields import (
    U16,
    U32,
    U64,
    array,
    bstr,
    check_keys,
    code,
    fail,
    sint,
    text,
    uint,
)
from passport.records.model import (
    FORMAT_VERSION,
    Birth,
    Body,
    CapacityTest,
    Checkpoint,
    Chemistry,
    Entry,
    Event,
    Kind,
    ResistanceTest,
    SohMethod,
    Status,
    Values,
)

# Payload keys common to every record
K_VERSION = 0
K_KIND = 1

# Birth payload keys
B_PASSPORT_ID = 2
B_MODEL = 3
B_CHEMISTRY = 4
B_RATED_CAPACITY = 5
B_VOLTAGES = 6
B_INITIAL_CAPACITY = 7
B_INITIAL_RESISTANCE = 8
B_MANUFACTURE_DATE = 9
B_SITE = 10
B_CYCLE_LIFE = 11
B_EXHAUSTION = 12
B_DATASHEET = 13
B_CELL_KEY = 14

# Entry and checkpoint payload keys
E_SEQ = 2  # checkpoint: count
E_PREV = 3  # checkpoint: head
E_TIME = 4
C_BIRTH = 21

# CWT claims (RFC 8392) carried in the birth record's protected header (label 15)
CWT_ISS = 1
CWT_SUB = 2
CWT_IAT = 6

MAX_PARENTS = 200
_EPOCH = dt.date(1970, 1, 1)
GS1_RESOLVER = "https://id.gs1.org"


# --------------------------------------------------------------------------------------------
# Values (keys 5..20), shared by entries and checkpoints

# key -> (field name, upper bound for a plain unsigned integer, or a decoder for the rest)
_VALUE_KEYS: dict[int, tuple[str, int | Callable[[object, str], object]]] = {
    5: ("fec_deci", U32),
    6: ("ah_deci", U32),
    7: ("wh", U32),
    8: ("soh_capacity_cpct", U16),
    9: ("soh_power_cpct", U16),
    10: ("resistance_uohm", U32),
    11: ("soh_method", lambda v, w: code(v, SohMethod, w)),
    12: ("soh_sigma_cpct", U16),
    13: ("minutes_hot", U32),
    14: ("minutes_cold", U32),
    15: ("minutes_charging_extreme", U32),
    16: ("deep_discharges", U32),
    17: ("overcharges", U32),
    18: ("events", lambda v, w: _events(v, w)),
    19: ("status", lambda v, w: code(v, Status, w)),
    20: ("parents", lambda v, w: _parents(v, w)),
}
_VALUE_KEY_OF = {name: key for key, (name, _) in _VALUE_KEYS.items()}
VALUE_KEYS = frozenset(_VALUE_KEYS)


def _events(value: object, what: str) -> tuple[Event, ...]:
    if type(value) is not list or not value:
        raise fail(what, f"expected a non-empty array of event codes, got {value!r}")
    events = tuple(code(v, Event, what) for v in value)
    if any(a >= b for a, b in itertools.pairwise(events)):
        raise fail(what, "event codes must be unique and in increasing order")
    return events


def _parents(value: object, what: str) -> tuple[uuid.UUID, ...]:
    if type(value) is not list or not 0 < len(value) <= MAX_PARENTS:
        raise fail(what, f"expected 1..{MAX_PARENTS} passport ids")
    parents = tuple(uuid.UUID(bytes=bstr(v, what, 16)) for v in value)
    if len(set(parents)) != len(parents):
        raise fail(what, "duplicate parent passport id")
    return parents


_FIRST_VALUE_KEY = 5
_VALUE_CHECKS = [
    _VALUE_KEYS[k] for k in range(_FIRST_VALUE_KEY, _FIRST_VALUE_KEY + len(Values._fields))
]
assert [name for name, _ in _VALUE_CHECKS] == list(Values._fields)


def _decode_values(payload: Mapping[int, object]) -> Values:
    # Values' fields are keys 5..20 in order, so the tuple is filled by position.
    slots: list[Any] | None = None
    for key, value in payload.items():
        index = key - _FIRST_VALUE_KEY
        if not 0 <= index < 16:
            continue
        if slots is None:
            slots = list(_EMPTY)
        name, check = _VALUE_CHECKS[index]
        if type(check) is int:
            if type(value) is not int or not 0 <= value <= check:
                raise fail(
                    f"payload key {key} ({name})",
                    f"expected an integer in 0..{check}, got {value!r}",
                )
            slots[index] = value
        else:
            slots[index] = check(value, f"payload key {key} ({name})")  # type: ignore[operator]
    if slots is None:
        return _EMPTY
    values: Values = tuple.__new__(Values, slots)
    if values.soh_sigma_cpct is not None and values.soh_capacity_cpct is None:
        raise fail("payload key 12 (soh_sigma_cpct)", "an uncertainty needs a capacity SoH")
    if values.parents and values.status is None:
        raise fail("payload key 20 (parents)", "lineage parents need a status")
    return values


_EMPTY = Values()


def _encode_values(values: Values, out: dict[int, object]) -> None:
    for name, key in _VALUE_KEY_OF.items():
        value = getattr(values, name)
        if name == "events":
            if value:
                out[key] = sorted({int(e) for e in value})
        elif name == "parents":
            if value:
                out[key] = [p.bytes for p in value]
        elif value is not None:
            # Enums go out as plain ints; anything else is left as it is, so the decoder's
            # check refuses it instead of int() silently truncating a float.
            out[key] = int(value) if isinstance(value, IntEnum) else value


# --------------------------------------------------------------------------------------------
# Bodies

_BIRTH_KEYS = frozenset(range(0, 15))
_ENTRY_KEYS = frozenset({K_VERSION, K_KIND, E_SEQ, E_PREV, E_TIME}) | VALUE_KEYS
_CHECKPOINT_KEYS = _ENTRY_KEYS | {C_BIRTH}
_ENTRY_REQUIRED = frozenset({K_VERSION, K_KIND, E_SEQ, E_PREV, E_TIME})


def encode_body(body: Body) -> tuple[dict[int, object], dict[int, object]]:
    """Return (payload map, extra protected header labels) for a body."""
    if isinstance(body, Birth):
        payload: dict[int, object] = {
            K_VERSION: FORMAT_VERSION,
            K_KIND: int(Kind.BIRTH),
            B_PASSPORT_ID: body.passport_id.bytes,
            B_MODEL: body.model,
            B_CHEMISTRY: int(body.chemistry),
            B_RATED_CAPACITY: body.rated_capacity_mah,
            B_VOLTAGES: [body.nominal_voltage_mv, body.min_voltage_mv, body.max_voltage_mv],
            B_INITIAL_CAPACITY: [
                body.initial_capacity_mah,
                body.capacity_test.temperature_dc,
                body.capacity_test.c_rate_centi,
            ],
            B_INITIAL_RESISTANCE: [
                body.initial_resistance_uohm,
                body.resistance_test.temperature_dc,
                body.resistance_test.soc_pct,
                body.resistance_test.pulse_ms,
            ],
            B_MANUFACTURE_DATE: (body.manufacture_date - _EPOCH).days,
            B_SITE: body.site,
            B_CYCLE_LIFE: body.expected_cycle_life,
            B_EXHAUSTION: body.exhaustion_threshold_cpct,
            B_DATASHEET: body.datasheet_sha256,
            B_CELL_KEY: body.cell_public_key,
        }
        claims = {
            CWT_ISS: body.manufacturer,
            CWT_SUB: _compact_battery_id(body.battery_id),
            CWT_IAT: body.issued_at,
        }
        return payload, {15: claims}
    if isinstance(body, Entry):
        payload = {
            K_VERSION: FORMAT_VERSION,
            K_KIND: int(body.kind),
            E_SEQ: body.seq,
            E_PREV: body.prev,
            E_TIME: body.time,
        }
        _encode_values(body.values, payload)
        return payload, {}
    payload = {
        K_VERSION: FORMAT_VERSION,
        K_KIND: int(Kind.CHECKPOINT),
        E_SEQ: body.count,
        E_PREV: body.head,
        E_TIME: body.time,
        C_BIRTH: body.birth,
    }
    _encode_values(body.values, payload)
    return payload, {}


def _compact_battery_id(battery_id: str) -> str:
    """GS1 Digital Link URIs on the canonical resolver lose the resolver on the cell (as NFC
    URI records abbreviate "https://"): 18 bytes matter in a 300-byte birth record."""
    if battery_id.startswith("/"):
        raise InputError(f"battery id {battery_id!r} must not start with '/'")
    if battery_id.startswith(GS1_RESOLVER + "/"):
        return battery_id[len(GS1_RESOLVER) :]
    return battery_id


def _expand_battery_id(sub: str) -> str:
    if sub.startswith("/"):
        return GS1_RESOLVER + sub
    if sub.startswith(GS1_RESOLVER + "/"):
        raise fail("CWT claim sub (battery id)", f"the {GS1_RESOLVER} prefix must be elided")
    return sub


def check_body(body: Body) -> None:
    """Apply the decoder's checks to `body` without signing it; raises `DecodeError`."""
    payload, header = encode_body(body)
    normalized = cbor.loads(cbor.dumps(payload), what="payload")
    claims = cbor.loads(cbor.dumps(header[15]), what="claims") if 15 in header else None
    decode_body(decode_kind(normalized), normalized, claims)


def decode_kind(payload: object) -> Kind:
    if type(payload) is not dict:
        raise DecodeError("payload must be a map", rule="record.malformed")
    version = payload.get(K_VERSION)
    if type(version) is not int or version != FORMAT_VERSION:
        raise DecodeError(
            f"payload format version {version!r} is not supported (expected {FORMAT_VERSION})",
            rule="record.version",
        )
    code = payload.get(K_KIND)
    kind = _KINDS.get(code) if type(code) is int else None
    if kind is None:
        raise DecodeError(f"unknown record kind {code!r}", rule="record.kind")
    return kind


_KINDS: dict[object, Kind] = {k.value: k for k in Kind}


def decode_body(kind: Kind, payload: dict[int, object], claims: object) -> Body:
    """Build the body of a record whose `kind` was read with `decode_kind`."""
    if kind is Kind.BIRTH:
        return _decode_birth(payload, claims)
    if kind is Kind.CHECKPOINT:
        check_keys(payload, _CHECKPOINT_KEYS, _ENTRY_REQUIRED | {C_BIRTH}, "checkpoint")
        values = _decode_values(payload)
        return Checkpoint(
            count=uint(payload[E_SEQ], "payload key 2 (count)", U32, 1),
            head=bstr(payload[E_PREV], "payload key 3 (head)", 32),
            time=uint(payload[E_TIME], "payload key 4 (time)", U64),
            birth=bstr(payload[C_BIRTH], "payload key 21 (birth)", 32),
            values=values,
        )
    check_keys(payload, _ENTRY_KEYS, _ENTRY_REQUIRED, "entry")
    values = _decode_values(payload)
    if kind is Kind.STATUS and values.status is None:
        raise fail("status entry", "lacks payload key 19 (status)", "record.missing-field")
    if kind is Kind.MEASUREMENT and (values.soh_capacity_cpct is None or values.soh_method is None):
        raise fail(
            "measurement entry",
            "needs keys 8 (soh_capacity) and 11 (soh_method)",
            "record.missing-field",
        )
    seq, prev, time = payload[E_SEQ], payload[E_PREV], payload[E_TIME]
    if type(seq) is not int or not 1 <= seq <= U32:
        uint(seq, "payload key 2 (seq)", U32, 1)
    if type(prev) is not bytes or len(prev) != 32:
        bstr(prev, "payload key 3 (prev)", 32)
    if type(time) is not int or not 0 <= time <= U64:
        uint(time, "payload key 4 (time)", U64)
    return Entry(kind, seq, prev, time, values)  # type: ignore[arg-type]


def _decode_birth(payload: dict[int, object], claims: object) -> Birth:
    check_keys(payload, _BIRTH_KEYS, _BIRTH_KEYS, "birth")
    if (
        type(claims) is not dict
        or any(type(k) is not int for k in claims)
        or claims.keys() != {CWT_ISS, CWT_SUB, CWT_IAT}
    ):
        raise DecodeError(
            "birth CWT claims (header 15) must hold exactly iss (1), sub (2) and iat (6)",
            rule="record.claims",
        )
    nominal, vmin, vmax = (
        uint(v, "payload key 6 (voltages)", 100_000)
        for v in array(payload[B_VOLTAGES], "payload key 6 (voltages)", 3)
    )
    if not vmin <= nominal <= vmax:
        raise fail("payload key 6 (voltages)", "expected min <= nominal <= max")
    cap = array(payload[B_INITIAL_CAPACITY], "payload key 7 (initial capacity)", 3)
    res = array(payload[B_INITIAL_RESISTANCE], "payload key 8 (initial resistance)", 4)
    w7, w8 = "payload key 7 (initial capacity)", "payload key 8 (initial resistance)"
    days = uint(payload[B_MANUFACTURE_DATE], "payload key 9 (manufacture date)", 2_932_896)
    return Birth(
        passport_id=uuid.UUID(
            bytes=bstr(payload[B_PASSPORT_ID], "payload key 2 (passport id)", 16)
        ),
        battery_id=_expand_battery_id(text(claims[CWT_SUB], "CWT claim sub (battery id)")),
        manufacturer=text(claims[CWT_ISS], "CWT claim iss (manufacturer)"),
        issued_at=uint(claims[CWT_IAT], "CWT claim iat", U64),
        model=text(payload[B_MODEL], "payload key 3 (model)", 64),
        chemistry=code(payload[B_CHEMISTRY], Chemistry, "payload key 4 (chemistry)"),
        rated_capacity_mah=uint(
            payload[B_RATED_CAPACITY], "payload key 5 (rated capacity)", U32, 1
        ),
        nominal_voltage_mv=nominal,
        min_voltage_mv=vmin,
        max_voltage_mv=vmax,
        initial_capacity_mah=uint(cap[0], w7, U32, 1),
        capacity_test=CapacityTest(
            temperature_dc=sint(cap[1], w7, -1000, 2000),
            c_rate_centi=uint(cap[2], w7, U16, 1),
        ),
        initial_resistance_uohm=uint(res[0], w8, U32, 1),
        resistance_test=ResistanceTest(
            temperature_dc=sint(res[1], w8, -1000, 2000),
            soc_pct=uint(res[2], w8, 100),
            pulse_ms=uint(res[3], w8, U32, 1),
        ),
        manufacture_date=_EPOCH + dt.timedelta(days=days),
        site=text(payload[B_SITE], "payload key 10 (site)", 64),
        expected_cycle_life=uint(payload[B_CYCLE_LIFE], "payload key 11 (cycle life)", U32, 1),
        exhaustion_threshold_cpct=uint(
            payload[B_EXHAUSTION], "payload key 12 (exhaustion)", 10_000
        ),
        datasheet_sha256=bstr(payload[B_DATASHEET], "payload key 13 (datasheet hash)", 32),
        cell_public_key=bstr(payload[B_CELL_KEY], "payload key 14 (cell key)", 32),
    )
