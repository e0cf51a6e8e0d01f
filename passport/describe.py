"""Records in human units, as JSON-ready dictionaries (for `passport show` and exports)."""

from __future__ import annotations

from enum import IntEnum
from typing import Any

from passport.image import Image
from passport.records import Birth, Checkpoint, Entry, SignedRecord, Values
from passport.units import human, iso_time

# value field -> (human name, scale from stored integer to the human unit)
_VALUE_UNITS: dict[str, tuple[str, int]] = {
    "fec_deci": ("full_equivalent_cycles", 10),
    "ah_deci": ("throughput_ah", 10),
    "wh": ("throughput_wh", 1),
    "soh_capacity_cpct": ("soh_capacity_pct", 100),
    "soh_power_cpct": ("soh_power_pct", 100),
    "resistance_uohm": ("resistance_mohm", 1000),
    "soh_sigma_cpct": ("soh_sigma_pct", 100),
    "minutes_hot": ("minutes_above_max_temperature", 1),
    "minutes_cold": ("minutes_below_min_temperature", 1),
    "minutes_charging_extreme": ("minutes_charging_outside_window", 1),
    "deep_discharges": ("deep_discharge_events", 1),
    "overcharges": ("overcharge_events", 1),
}


def code_name(member: IntEnum) -> str:
    """The name users type and read: lower case with hyphens (``thermal-event``)."""
    return member.name.lower().replace("_", "-")


def describe_values(values: Values) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, (label, scale) in _VALUE_UNITS.items():
        value = getattr(values, name)
        if value is not None:
            out[label] = human(value, scale)
    if values.soh_method is not None:
        out["soh_method"] = code_name(values.soh_method)
    if values.events:
        out["negative_events"] = [code_name(e) for e in values.events]
    if values.status is not None:
        out["status"] = code_name(values.status)
    if values.parents:
        out["parents"] = [str(p) for p in values.parents]
    return out


def describe_birth(birth: Birth) -> dict[str, Any]:
    return {
        "passport_id": str(birth.passport_id),
        "battery_id": birth.battery_id,
        "manufacturer": birth.manufacturer,
        "issued_at": iso_time(birth.issued_at),
        "model": birth.model,
        "chemistry": birth.chemistry.name,
        "rated_capacity_ah": human(birth.rated_capacity_mah, 1000),
        "nominal_voltage_v": human(birth.nominal_voltage_mv, 1000),
        "min_voltage_v": human(birth.min_voltage_mv, 1000),
        "max_voltage_v": human(birth.max_voltage_mv, 1000),
        "initial_capacity_ah": human(birth.initial_capacity_mah, 1000),
        "capacity_test": {
            "temperature_c": human(birth.capacity_test.temperature_dc, 10),
            "c_rate": human(birth.capacity_test.c_rate_centi, 100),
        },
        "initial_resistance_mohm": human(birth.initial_resistance_uohm, 1000),
        "resistance_test": {
            "temperature_c": human(birth.resistance_test.temperature_dc, 10),
            "soc_pct": birth.resistance_test.soc_pct,
            "pulse_ms": birth.resistance_test.pulse_ms,
        },
        "manufacture_date": birth.manufacture_date.isoformat(),
        "site": birth.site,
        "expected_cycle_life": birth.expected_cycle_life,
        "exhaustion_threshold_pct": human(birth.exhaustion_threshold_cpct, 100),
        "datasheet_sha256": birth.datasheet_sha256.hex(),
        "cell_public_key": birth.cell_public_key.hex(),
    }


def describe_record(record: SignedRecord) -> dict[str, Any]:
    body = record.body
    out: dict[str, Any] = {
        "kind": code_name(record.kind),
        "sha256": record.digest.hex(),
        "bytes": len(record.raw),
        "signer": "cell" if record.x5t is None else f"x5t:{record.x5t[1].hex()}",
    }
    if isinstance(body, Birth):
        out.update(describe_birth(body))
    elif isinstance(body, Entry):
        out.update(seq=body.seq, prev=body.prev.hex(), time=iso_time(body.time))
        out.update(describe_values(body.values))
    elif isinstance(body, Checkpoint):
        out.update(
            evicted_entries=body.count,
            head=body.head.hex(),
            time=iso_time(body.time),
            birth=body.birth.hex(),
        )
        out.update(describe_values(body.values))
    return out


def describe_image(image: Image) -> dict[str, Any]:
    return {
        "profile": image.profile.name,
        "memory_bytes": image.profile.size,
        "used_bytes": image.used_bytes,
        "free_bytes": image.free_bytes,
        "records": [describe_record(r) for r in image.records],
    }
