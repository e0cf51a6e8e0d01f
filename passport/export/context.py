"""What an export reads: a verified passport (its birth record and the running values of its
history, each with the time of the record that last set it) and its model's data sheet.

Values stay in the on-cell fixed-point units here; each exported attribute converts its own
(see the attribute tables), so every conversion is one visible, tested line.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from passport.image import Image
from passport.records import Birth, Checkpoint, Entry, Event, SignedRecord, Status, Values


@dataclass(frozen=True, slots=True)
class Stamped:
    """A running value and when the record that set it was written (epoch seconds)."""

    value: Any
    time: int
    record: str  # SHA-256 hex of that record


@dataclass(frozen=True, slots=True)
class Context:
    birth: Birth
    birth_sha256: str
    profile: str  # the tag's memory profile
    values: dict[str, Stamped]  # Values field -> latest value
    events: tuple[tuple[Event, int, str], ...]  # (event, time, record) as reported
    sheet: Mapping[str, Any] = field(default_factory=dict)  # the data sheet's fields
    sheet_sha256: str = ""
    verified: bool = True

    def value(self, name: str) -> Stamped | None:
        return self.values.get(name)

    @property
    def status(self) -> Status:
        held = self.values.get("status")
        return Status(held.value) if held is not None else Status.ORIGINAL


def utc(epoch: int) -> str:
    """An xsd:dateTime in UTC, as the schemas want timestamps."""
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_context(
    image: Image,
    sheet: Mapping[str, Any] | None = None,
    *,
    sheet_sha256: str = "",
    verified: bool = True,
) -> Context:
    """The context of a tag: its records, in order (a checkpoint stands for what it evicted)."""
    return context_from_records(
        image.records, image.profile.name, sheet, sheet_sha256=sheet_sha256, verified=verified
    )


def context_from_records(
    records: Sequence[SignedRecord],
    profile: str,
    sheet: Mapping[str, Any] | None = None,
    *,
    sheet_sha256: str = "",
    verified: bool = True,
) -> Context:
    """Running values of a history: the birth record, then checkpoints and entries in order
    (a tag's, or the registry's full chain)."""
    first = records[0]
    birth = first.body
    assert isinstance(birth, Birth)
    latest: dict[str, Stamped] = {}
    events: list[tuple[Event, int, str]] = []
    for record in records[1:]:
        body = record.body
        assert isinstance(body, Entry | Checkpoint)
        values: Values = body.values
        digest = record.digest.hex()
        for name, new in zip(values._fields, values, strict=True):
            if name in ("events", "parents"):
                continue
            if new is not None:
                latest[name] = Stamped(new, body.time, digest)
        # a checkpoint carries every event reported before it, stamped with its own time
        events.extend((e, body.time, digest) for e in values.events)
    return Context(
        birth=birth,
        birth_sha256=first.digest.hex(),
        profile=profile,
        values=latest,
        events=tuple(events),
        sheet=dict(sheet or {}),
        sheet_sha256=sheet_sha256,
        verified=verified,
    )
