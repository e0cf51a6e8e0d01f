"""Field checks shared by the record decoders: exact types, ranges, and the key that failed."""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum
from typing import Any, TypeVar

from passport.errors import DecodeError
from passport.records.model import Chemistry, Event, SohMethod, Status

U16 = 0xFFFF
U32 = 0xFFFF_FFFF
U64 = 0xFFFF_FFFF_FFFF_FFFF
MAX_TEXT = 128

E = TypeVar("E", bound=IntEnum)


def fail(what: str, reason: str, rule: str = "record.field") -> DecodeError:
    return DecodeError(f"{what}: {reason}", rule=rule)


def uint(value: object, what: str, hi: int = U32, lo: int = 0) -> int:
    if type(value) is not int or not lo <= value <= hi:
        raise fail(what, f"expected an integer in {lo}..{hi}, got {value!r}")
    return value


def sint(value: object, what: str, lo: int, hi: int) -> int:
    if type(value) is not int or not lo <= value <= hi:
        raise fail(what, f"expected an integer in {lo}..{hi}, got {value!r}")
    return value


def bstr(value: object, what: str, size: int) -> bytes:
    if type(value) is not bytes or len(value) != size:
        got = f"{len(value)} bytes" if isinstance(value, bytes) else repr(value)
        raise fail(what, f"expected {size} bytes, got {got}")
    return value


def text(value: object, what: str, max_bytes: int = MAX_TEXT) -> str:
    if type(value) is not str or not value:
        raise fail(what, f"expected non-empty text, got {value!r}")
    if len(value.encode("utf-8")) > max_bytes:
        raise fail(what, f"longer than {max_bytes} bytes")
    if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in value):
        raise fail(what, "contains control characters")
    return value


def code(value: object, enum: type[E], what: str) -> E:
    member = _MEMBERS[enum].get(value) if type(value) is int else None
    if member is None:
        raise fail(what, f"unknown code {value!r}")
    return member  # type: ignore[return-value]


# Lookup tables: calling an IntEnum to validate a code costs more than the rest of a field.
_MEMBERS: dict[type, dict[int, IntEnum]] = {
    e: {m.value: m for m in e} for e in (Chemistry, SohMethod, Status, Event)
}


def array(value: object, what: str, size: int) -> list[Any]:
    if type(value) is not list or len(value) != size:
        raise fail(what, f"expected an array of {size} items, got {value!r}")
    return value


def check_keys(
    payload: Mapping[int, object], allowed: frozenset[int], required: frozenset[int], what: str
) -> None:
    keys = payload.keys()
    if not keys <= allowed:
        raise DecodeError(
            f"{what} payload has unknown keys {sorted(keys - allowed, key=repr)}",
            rule="record.unknown-field",
        )
    if not required <= keys:
        raise DecodeError(
            f"{what} payload lacks required keys {sorted(required - keys)}",
            rule="record.missing-field",
        )
