"""Appending history entries to an image file, as the cell (or an actor at the cell) does.

Records evicted from memory are appended to a journal file (a CBOR sequence) and synced
*before* the new image replaces the old one, so a crash can duplicate a journalled record but
never lose one. The registry ingests the journal; ingesting a record twice is a no-op.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import TypeVar

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from passport import units
from passport._fileio import append_bytes, read_bytes, write_atomic
from passport.cose import PrivateKey
from passport.describe import code_name
from passport.errors import DecodeError, InputError
from passport.image import Image
from passport.records import (
    Birth,
    Entry,
    Event,
    Kind,
    SignedRecord,
    SohMethod,
    Status,
    Values,
    X5t,
)

E = TypeVar("E", bound=IntEnum)

EVICTED_SUFFIX = ".evicted.cbor"

# option name -> (Values field, scale from the human unit, stored unit)
VALUE_OPTIONS: dict[str, tuple[str, int, str]] = {
    "cycles": ("fec_deci", 10, "0.1 cycle"),
    "ah": ("ah_deci", 10, "0.1 Ah"),
    "wh": ("wh", 1, "Wh"),
    "soh": ("soh_capacity_cpct", 100, "0.01 %"),
    "soh_power": ("soh_power_cpct", 100, "0.01 %"),
    "resistance_mohm": ("resistance_uohm", 1000, "micro-ohm"),
    "soh_sigma": ("soh_sigma_cpct", 100, "0.01 %"),
    "minutes_hot": ("minutes_hot", 1, "minute"),
    "minutes_cold": ("minutes_cold", 1, "minute"),
    "minutes_charging_extreme": ("minutes_charging_extreme", 1, "minute"),
    "deep_discharges": ("deep_discharges", 1, "event"),
    "overcharges": ("overcharges", 1, "event"),
}
_U16_FIELDS = frozenset({"soh_capacity_cpct", "soh_power_cpct", "soh_sigma_cpct"})


def _code(enum: type[E], text: str, what: str, allowed: Iterable[E] | None = None) -> E:
    members = list(allowed if allowed is not None else enum)
    name = text.strip().upper().replace("-", "_")
    for member in members:
        if member.name == name:
            return member
    choices = ", ".join(code_name(m) for m in members)
    raise InputError(f"{what}: {text!r} is not one of {choices}")


def parse_kind(text: str) -> Kind:
    return _code(Kind, text, "--kind", ENTRY_KINDS_ORDERED)


ENTRY_KINDS_ORDERED = tuple(k for k in Kind if k.is_entry)


def parse_values(
    numbers: Mapping[str, str | None],
    *,
    soh_method: str | None = None,
    events: Iterable[str] = (),
    status: str | None = None,
    parents: Iterable[str] = (),
) -> Values:
    """Human-unit option values -> `Values` in stored units (refusing excess precision)."""
    kwargs: dict[str, object] = {}
    for option, text in numbers.items():
        if text is None:
            continue
        if option not in VALUE_OPTIONS:
            raise InputError(f"unknown value {option!r}")
        name, scale, unit = VALUE_OPTIONS[option]
        maximum = 0xFFFF if name in _U16_FIELDS else 0xFFFF_FFFF
        kwargs[name] = units.fixed(
            text, scale, unit, what="--" + option.replace("_", "-"), maximum=maximum
        )
    if soh_method is not None:
        kwargs["soh_method"] = _code(SohMethod, soh_method, "--soh-method")
    event_codes = sorted({_code(Event, e, "--event") for e in events})
    if event_codes:
        kwargs["events"] = tuple(event_codes)
    if status is not None:
        kwargs["status"] = _code(Status, status, "--status")
    parent_ids = []
    for text in parents:
        try:
            parent_ids.append(uuid.UUID(text))
        except ValueError:
            raise InputError(f"--parent: {text!r} is not a passport id (UUID)") from None
    if parent_ids:
        kwargs["parents"] = tuple(parent_ids)
    return Values(**kwargs)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class AppendResult:
    image: Image
    record: SignedRecord
    evicted: tuple[SignedRecord, ...]
    journal: Path | None


def read_image(path: str | os.PathLike[str]) -> Image:
    """Read and strictly decode an image file; errors name the file."""
    data = read_bytes(path, limit=1 << 20)
    try:
        return Image.from_bytes(data)
    except DecodeError as exc:
        raise exc.at(str(path)) from None


def append_entry(
    image_path: str | os.PathLike[str],
    *,
    kind: Kind,
    time: int,
    values: Values,
    signer: PrivateKey,
    x5t: X5t | None = None,
    cell_key: PrivateKey | None = None,
    journal: str | os.PathLike[str] | None = None,
) -> AppendResult:
    """Sign a new entry, append it to the image file, journal whatever was evicted."""
    image = read_image(image_path)
    seq, prev = image.next_link()
    entry = Entry(kind=kind, seq=seq, prev=prev, time=time, values=values)
    if x5t is None:
        _check_cell_key(image, signer, "the signing key")
        cell_key = cell_key or signer
    if cell_key is not None:
        _check_cell_key(image, cell_key, "--cell-key")
    record = SignedRecord.sign(entry, signer, x5t=x5t)
    new_image, evicted = image.append(record, cell_key=cell_key)
    journal_path = None
    if evicted:
        journal_path = Path(journal) if journal else Path(str(image_path) + EVICTED_SUFFIX)
        append_bytes(journal_path, b"".join(r.raw for r in evicted))
    write_atomic(image_path, new_image.to_bytes(), overwrite=True)
    return AppendResult(new_image, record, evicted, journal_path)


def _check_cell_key(image: Image, key: PrivateKey, what: str) -> None:
    """Refuse to write with a key that is not the one the birth record certifies."""
    birth = image.birth.body
    assert isinstance(birth, Birth)
    if (
        not isinstance(key, ed25519.Ed25519PrivateKey)
        or key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        != birth.cell_public_key
    ):
        raise InputError(f"{what} is not the cell key this passport's birth record certifies")
