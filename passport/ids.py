"""Battery identifiers: GS1 Digital Link URIs and ISO/IEC 15459 strings."""

from __future__ import annotations

import re

from passport.errors import InputError

_GS1_DL = re.compile(
    r"^https://[A-Za-z0-9.-]+(?:/[A-Za-z0-9._~-]+)*?/01/(\d{14})((?:/[A-Za-z0-9]+/[^/\s]+)*)$"
)
_ISO15459 = re.compile(r"^[A-Z0-9][A-Z0-9.-]{4,49}$")


def gs1_check_digit_ok(digits: str) -> bool:
    """GS1 mod-10 check digit over a GTIN (the last digit checks the others)."""
    body, check = digits[:-1], int(digits[-1])
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return (10 - total % 10) % 10 == check


def check_battery_id(value: str) -> str:
    """Return `value` if it is a GS1 Digital Link URI (valid GTIN check digit) or an
    ISO/IEC 15459 identifier; raise `InputError` saying why not."""
    value = value.strip()
    if value.startswith("https://"):
        match = _GS1_DL.match(value)
        if not match:
            raise InputError(
                f"battery id {value!r} is not a GS1 Digital Link URI (https://host/01/<GTIN-14>...)"
            )
        if not gs1_check_digit_ok(match.group(1)):
            raise InputError(f"battery id {value!r}: GTIN {match.group(1)} has a wrong check digit")
        return value
    if _ISO15459.match(value):
        return value
    raise InputError(
        f"battery id {value!r} is neither a GS1 Digital Link URI nor an ISO/IEC 15459 string "
        "(5-50 characters A-Z 0-9 . -)"
    )


def file_stem(battery_id: str) -> str:
    """A file-name stem for a battery id: the GS1 path without the resolver, '/' -> '-'."""
    if battery_id.startswith("https://"):
        path = battery_id.split("://", 1)[1].split("/", 1)[1]
        idx = path.find("01/")
        battery_id = path[idx:] if idx >= 0 else path
    stem = re.sub(r"[^A-Za-z0-9._-]", "-", battery_id.replace("/", "-"))
    return stem.strip(".-") or "battery"
