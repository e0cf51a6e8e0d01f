"""What a verified passport says that grading needs: the last signed SoH claim (with cycles and
time since), negative events and abuse counters, with the records that said them."""

from __future__ import annotations

from dataclasses import dataclass

from passport.image import Image
from passport.records import Birth, Checkpoint, Entry, Event, SignedRecord, Values


@dataclass(frozen=True, slots=True)
class Facts:
    battery_id: str
    passport_id: str
    model: str
    birth_sha256: str
    initial_resistance_uohm: int
    exhaustion_threshold: float  # fraction
    claimed_soh: float | None  # fraction
    claimed_sigma: float | None
    claim_record: str | None  # SHA-256 of the record that carried the claim
    days_since: float | None
    fec_since: float | None
    events: tuple[str, ...]
    event_records: tuple[str, ...]
    deep_discharges: int | None
    minutes_hot: int | None
    last_time: int  # time of the newest record


def passport_facts(image: Image, now: int) -> Facts:
    """Walk the records on the tag (a checkpoint stands for the entries it evicted)."""
    birth = image.birth.body
    assert isinstance(birth, Birth)
    running = Values()
    fec_now: float | None = None
    claim: tuple[SignedRecord, Values, int, float | None] | None = None
    event_records: list[str] = []
    last_time = birth.issued_at
    records: list[SignedRecord] = []
    if image.checkpoint is not None:
        records.append(image.checkpoint)
    records.extend(image.entries)
    for record in records:
        body = record.body
        assert isinstance(body, Entry | Checkpoint)
        values = body.values
        running = running.then(values)
        last_time = max(last_time, body.time)
        if values.fec_deci is not None:
            fec_now = values.fec_deci / 10
        if values.soh_capacity_cpct is not None:
            claim = (record, values, body.time, fec_now)
        if values.events:
            event_records.append(record.digest.hex())
    claimed = sigma = days = fec_since = None
    claim_record = None
    if claim is not None:
        record, values, at, fec_then = claim
        assert values.soh_capacity_cpct is not None
        claimed = values.soh_capacity_cpct / 10_000
        sigma = None if values.soh_sigma_cpct is None else values.soh_sigma_cpct / 10_000
        days = max(0.0, (now - at) / 86400)
        if fec_now is not None and fec_then is not None:
            fec_since = fec_now - fec_then
        claim_record = record.digest.hex()
    return Facts(
        battery_id=birth.battery_id,
        passport_id=str(birth.passport_id),
        model=birth.model,
        birth_sha256=image.birth.digest.hex(),
        initial_resistance_uohm=birth.initial_resistance_uohm,
        exhaustion_threshold=birth.exhaustion_threshold_cpct / 10_000,
        claimed_soh=claimed,
        claimed_sigma=sigma,
        claim_record=claim_record,
        days_since=days,
        fec_since=fec_since,
        events=tuple(Event(e).name.lower() for e in running.events),
        event_records=tuple(event_records),
        deep_discharges=running.deep_discharges,
        minutes_hot=running.minutes_hot,
        last_time=last_time,
    )
