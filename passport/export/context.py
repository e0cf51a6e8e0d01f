"""What an export reads: a verified passport (its birth record and the running values of its
history, each with the time of the record that last set it) and its model's data sheet.

Values stay in the on-cell fixed-point units here; each exported attribute converts its own
(see the attribute tables), so every conversion is one visible, tested line.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
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
    """Running values of the tag's history: a checkpoint stands for what it evicted."""
    birth = image.birth.body
    assert isinstance(birth, Birth)
    latest: dict[str, Stamped] = {}
    events: list[tuple[Event, int, str]] = []
    records: list[SignedRecord] = [image.checkpoint] if image.checkpoint is not None else []
    records.extend(image.entries)
    for record in records:
        body = record.body
        assert isinstance(body, Entry | Checkpoint)
        values: Values = body.values
        digest = record.digest.hex()
        for name, new in zip(values._fields, values, strict=True):
            if name in ("events", "parents"):
                continue
            if new is not None:
                latest[name] = Stamped(new, body.time, digest)
        if isinstance(body, Entry):
            events.extend((e, body.time, digest) for e in values.events)
        else:  # a checkpoint carries the events ever reported before it, without their times
            events.extend((e, body.time, digest) for e in values.events)
    return Context(
        birth=birth,
        birth_sha256=image.birth.digest.hex(),
        profile=image.profile.name,
        values=latest,
        events=tuple(events),
        sheet=dict(sheet or {}),
        sheet_sha256=sheet_sha256,
        verified=verified,
    )
