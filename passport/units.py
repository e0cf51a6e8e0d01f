"""Human units <-> the fixed-point integers stored on the cell.

Parsing goes through `Decimal`, so "4.9" Ah is exactly 4900 mAh; a value more precise than the
stored unit is refused rather than rounded, because a signed record must say what was measured.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation

from passport.errors import InputError


def fixed(
    value: str | int | Decimal,
    scale: int,
    unit: str,
    *,
    what: str,
    signed: bool = False,
    minimum: int | None = None,
    maximum: int = 0xFFFF_FFFF,
) -> int:
    """Parse `value` (in the human unit) into an integer count of 1/`scale` of it.

    `unit` names the stored unit for messages, e.g. "mAh".
    """
    text = str(value).strip()
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise InputError(f"{what}: {text!r} is not a number") from None
    if not number.is_finite():
        raise InputError(f"{what}: {text!r} is not a finite number")
    scaled = number * scale
    if scaled != scaled.to_integral_value():
        raise InputError(f"{what}: {text} is more precise than the stored unit ({unit})")
    result = int(scaled)
    lower = minimum if minimum is not None else (-maximum if signed else 0)
    if not lower <= result <= maximum:
        lo_h, hi_h = Decimal(lower) / scale, Decimal(maximum) / scale
        raise InputError(f"{what}: {text} is outside {lo_h}..{hi_h}")
    return result


def human(value: int | None, scale: int) -> float | int | None:
    """Fixed-point integer -> number in the human unit (int when exact)."""
    if value is None:
        return None
    if scale == 1:
        return value
    q, r = divmod(value, scale)
    return q if r == 0 else value / scale


def parse_date(text: str, *, what: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise InputError(f"{what}: {text!r} is not a date (YYYY-MM-DD)") from None


def parse_time(text: str, *, what: str) -> int:
    """ISO 8601 date-time (timezone required, or Z) or epoch seconds -> epoch seconds."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"{what}: {text!r} is not an ISO 8601 time or epoch seconds") from None
    if moment.tzinfo is None:
        raise InputError(f"{what}: {text!r} has no timezone (add Z or +hh:mm)")
    return int(moment.timestamp())


def iso_time(epoch: int) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat().replace("+00:00", "Z")
